"""The search space: a flat decision sequence <-> `ArchSpec`, with the paper's size counts.

Decision order (one entry per step; each step's number of choices is fixed, whatever came before):

1. ``output_order.t`` for t = 0..3: the output blocks' levels as a Lehmer code: pick index k among the levels of
   L3..L7 not yet placed, ascending (5, 4, 3, 2 choices; the last level is forced).
2. ``intermediate_positions.L<l>``: which of the still-free intermediate slots the blocks of base level l take, as
   an index into ``itertools.combinations(free_slots, count)``, one step per base level in ascending order (the
   last level takes the slots left). Blocks of one level are identical, so this counts each distinct ordering
   once: the paper's (N-5)! counts every relabelling of identical blocks as another permutation.
3. For every block, in build order:
   ``block<i>.level_shift`` (intermediate blocks, families with level adjustments): index into the shifts;
   ``block<i>.block_fn`` (families that search block types): 0 = bottleneck, 1 = residual;
   ``block<i>.input_offsets``: index into ``itertools.combinations(candidates, 2)``, where the candidates are the
   stem candidates and earlier blocks; an intermediate block sees only the last `window` of them, an output block
   sees all of them (paper 3.1).

Steps with a single choice are left out. Every in-range sequence decodes to a valid `ArchSpec`. For families
without level adjustments the encoding is a bijection: ``decode(encode(a)) == a`` and ``encode(decode(d)) == d``.
With level adjustments (SpineNet-49's search) it cannot be one: a base level-3 block shifted +1 and a base
level-4 block left in place give the same block, and a shift of -1 on L2 is clipped to L2. There `encode` returns
one canonical sequence (base levels matched to blocks in order, smallest feasible base first, the smallest
shift), ``decode(encode(a)) == a`` still holds, and ``encode(decode(d))`` is the canonical sequence of ``decode(d)``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from search_space.errors import InvalidArchError, InvalidDecisionError
from search_space.families import Family, get_family
from search_space.spec import BLOCK_FNS, LEVELS, OUTPUT_LEVELS, ArchSpec, BlockSpec

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = 5  # paper 3.1: intermediate blocks take parents among the last 5 blocks built


@dataclasses.dataclass(frozen=True)
class Step:
    """One decision: its label (for logs and errors) and how many choices it has."""

    label: str
    num_choices: int


def _rank_combination(n: int, subset: Sequence[int]) -> int:
    """Index of a sorted subset of range(n) in ``itertools.combinations(range(n), len(subset))`` order."""
    k = len(subset)
    rank, prev = 0, -1
    for i, s in enumerate(subset):
        for x in range(prev + 1, s):
            rank += math.comb(n - x - 1, k - i - 1)
        prev = s
    return rank


def _unrank_combination(n: int, k: int, rank: int) -> tuple[int, ...]:
    """Inverse of `_rank_combination`."""
    out: list[int] = []
    x = 0
    for i in range(k):
        while True:
            c = math.comb(n - x - 1, k - i - 1)
            if rank < c:
                out.append(x)
                x += 1
                break
            rank -= c
            x += 1
    return tuple(out)


def _clip_level(level: int) -> int:
    return min(max(level, LEVELS[0]), LEVELS[-1])


class SearchSpace:
    """The SpineNet search space of one family, as a flat sequence of categorical decisions.

    Args:
      family: a `Family` or its name ('r35-sp18', 'r23-sp30', 'r14-sp39', 'r0-sp53', 'spinenet49').
      window: how many of the most recent blocks (stem candidates included) an intermediate block may take as
        parents; None for no limit. The paper uses 5, Vertex AI's SpineNet space 4.

    Example::

      space = SearchSpace('spinenet49')
      d = space.random(np.random.default_rng(0))
      arch = space.decode(d)
      assert space.decode(space.encode(arch)) == arch
    """

    def __init__(self, family: Family | str, *, window: int | None = DEFAULT_WINDOW) -> None:
        self.family = get_family(family) if isinstance(family, str) else family
        if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 2):
            raise ValueError(f"window must be an integer >= 2 (each block needs 2 parents) or None, got {window!r}")
        self.window = window
        f = self.family
        self._m = len(f.stem_levels)
        self._n = f.num_blocks
        self._n_int = self._n - len(OUTPUT_LEVELS)
        base = f.intermediate_levels
        self._groups = [(lvl, base.count(lvl)) for lvl in sorted(set(base))]
        steps: list[Step] = []
        for t in range(len(OUTPUT_LEVELS) - 1):
            steps.append(Step(f"output_order.{t}", len(OUTPUT_LEVELS) - t))
        free = self._n_int
        for lvl, count in self._groups[:-1]:
            steps.append(Step(f"intermediate_positions.L{lvl}", math.comb(free, count)))
            free -= count
        for p in range(self._n):
            if p < self._n_int and f.level_shifts:
                steps.append(Step(f"block{p}.level_shift", len(f.level_shifts)))
            if f.search_block_fns:
                steps.append(Step(f"block{p}.block_fn", len(BLOCK_FNS)))
            lo, hi = self._candidates(p)
            steps.append(Step(f"block{p}.input_offsets", math.comb(hi - lo, 2)))
        self.steps: tuple[Step, ...] = tuple(s for s in steps if s.num_choices > 1)
        self._index = {s.label: i for i, s in enumerate(self.steps)}

    # ---------------------------------------------------------------------------------------------- shape
    def __repr__(self) -> str:
        return f"SearchSpace({self.family.name!r}, window={self.window})"

    @property
    def num_choices(self) -> tuple[int, ...]:
        """Choices per decision, in decision order."""
        return tuple(s.num_choices for s in self.steps)

    @property
    def max_choices(self) -> int:
        """The widest decision (for padding a policy's softmax)."""
        return max(self.num_choices)

    def choice_mask(self) -> np.ndarray:
        """Boolean [num_decisions, max_choices] table: True where a choice exists (mask the rest)."""
        n = np.asarray(self.num_choices)
        return np.arange(self.max_choices)[None, :] < n[:, None]

    def label(self, step: int) -> str:
        """The name of decision `step`, e.g. 'block3.input_offsets'."""
        return self.steps[step].label

    def _candidates(self, p: int) -> tuple[int, int]:
        """Offsets [lo, hi) that block p may take as parents."""
        hi = self._m + p
        if p < self._n_int and self.window is not None:
            return max(0, hi - self.window), hi
        return 0, hi

    # ---------------------------------------------------------------------------------------------- decode
    def _check(self, decisions: Sequence[Any]) -> tuple[int, ...]:
        try:
            values = list(decisions)
        except TypeError:
            raise InvalidDecisionError(f"expected a sequence of integers, got {type(decisions).__name__}") from None
        n = len(self.steps)
        if len(values) != n:
            word = "too short" if len(values) < n else "too long"
            raise InvalidDecisionError(
                f"decision sequence {word}: expected {n} decisions for {self!r}, got {len(values)}"
            )
        out = []
        for i, (v, step) in enumerate(zip(values, self.steps)):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise InvalidDecisionError(
                    f"expected an integer for {step.label!r}, got {v!r}", f"decisions[{i}]"
                )
            if not 0 <= int(v) < step.num_choices:
                raise InvalidDecisionError(
                    f"choice out of range at {step.label!r}: expected 0..{step.num_choices - 1}, got {int(v)}",
                    f"decisions[{i}]",
                )
            out.append(int(v))
        return tuple(out)

    def decode(self, decisions: Sequence[int]) -> ArchSpec:
        """Decision sequence -> architecture.

        Raises:
          InvalidDecisionError: wrong length, a non-integer, or a choice out of range.
        """
        d = self._check(decisions)
        f = self.family

        def take(label: str) -> int:
            i = self._index.get(label)
            return 0 if i is None else d[i]

        remaining = list(OUTPUT_LEVELS)
        out_levels = [remaining.pop(take(f"output_order.{t}")) for t in range(len(OUTPUT_LEVELS) - 1)]
        out_levels.append(remaining[0])

        base = [0] * self._n_int
        free = list(range(self._n_int))
        for lvl, count in self._groups[:-1]:
            picked = _unrank_combination(len(free), count, take(f"intermediate_positions.L{lvl}"))
            for k in picked:
                base[free[k]] = lvl
            free = [s for k, s in enumerate(free) if k not in picked]
        for s in free:
            base[s] = self._groups[-1][0]

        blocks = []
        for p in range(self._n):
            intermediate = p < self._n_int
            if intermediate:
                level = base[p]
                if f.level_shifts:
                    level = _clip_level(level + f.level_shifts[take(f"block{p}.level_shift")])
            else:
                level = out_levels[p - self._n_int]
            block_fn = BLOCK_FNS[take(f"block{p}.block_fn")] if f.search_block_fns else f.block_fn
            lo, hi = self._candidates(p)
            a, b = _unrank_combination(hi - lo, 2, take(f"block{p}.input_offsets"))
            blocks.append(BlockSpec(level, block_fn, (lo + a, lo + b), not intermediate))
        return ArchSpec(blocks=tuple(blocks), stem=f.stem)

    def random(self, rng: np.random.Generator) -> tuple[int, ...]:
        """A uniformly random decision sequence."""
        return tuple(int(rng.integers(0, n)) for n in self.num_choices)

    # ---------------------------------------------------------------------------------------------- encode
    def encode(self, arch: ArchSpec) -> tuple[int, ...]:
        """Architecture -> decision sequence.

        An architecture with removable dead blocks (such as Model Garden's SpineNet-49 with its trailing level-2
        block) is encoded through `ArchSpec.canonical`, so it decodes to a spec with the same key.

        Raises:
          InvalidArchError: naming the block and the rule when the architecture is not in this space.
        """
        try:
            return self._encode(arch)
        except InvalidArchError as first:
            canonical = arch.canonical()
            if canonical == arch:
                raise
            try:
                return self._encode(canonical)
            except InvalidArchError:
                raise first from None

    def validate(self, arch: ArchSpec) -> None:
        """Raises `InvalidArchError` unless `arch` (or its canonical form) lies in this space."""
        self.encode(arch)

    def contains(self, arch: ArchSpec) -> bool:
        """Whether `arch` (or its canonical form) lies in this space."""
        try:
            self.encode(arch)
        except InvalidArchError:
            return False
        return True

    def _encode(self, arch: ArchSpec) -> tuple[int, ...]:
        f = self.family
        where = f"the {f.name} space"
        if arch.stem != f.stem:
            raise InvalidArchError(f"stem {list(arch.stem)} differs from {where}'s stem {list(f.stem)}", "stem")
        if len(arch.blocks) != self._n:
            raise InvalidArchError(
                f"{where} has {self._n} blocks ({self._n_int} intermediate, then {len(OUTPUT_LEVELS)} outputs), "
                f"got {len(arch.blocks)}",
                "blocks",
            )
        values: dict[str, int] = {}
        for p, b in enumerate(arch.blocks):
            if b.is_output != (p >= self._n_int):
                kind = "an output" if p >= self._n_int else "an intermediate"
                raise InvalidArchError(
                    f"{where} puts its {self._n_int} intermediate blocks first, then the outputs: block {p} must "
                    f"be {kind} block",
                    f"blocks[{p}].is_output",
                )
            if not f.search_block_fns and b.block_fn != f.block_fn:
                raise InvalidArchError(
                    f"{where} does not search block types: every block is a {f.block_fn}, got {b.block_fn!r}",
                    f"blocks[{p}].block_fn",
                )
            lo, hi = self._candidates(p)
            a, c = b.input_offsets
            if a < lo:
                raise InvalidArchError(
                    f"parent {a} lies outside the window of the last {self.window} blocks an intermediate block "
                    f"may use (offsets {lo}..{hi - 1})",
                    f"blocks[{p}].input_offsets",
                )
            values[f"block{p}.input_offsets"] = _rank_combination(hi - lo, (a - lo, c - lo))
            if f.search_block_fns:
                values[f"block{p}.block_fn"] = BLOCK_FNS.index(b.block_fn)

        remaining = list(OUTPUT_LEVELS)
        out_levels = [b.level for b in arch.blocks[self._n_int :]]
        for t, lvl in enumerate(out_levels[:-1]):
            values[f"output_order.{t}"] = remaining.index(lvl)
            remaining.remove(lvl)

        levels = [b.level for b in arch.blocks[: self._n_int]]
        base, shifts = self._match_base_levels(levels)
        free = list(range(self._n_int))
        for lvl, _count in self._groups[:-1]:
            chosen = [k for k, s in enumerate(free) if base[s] == lvl]
            values[f"intermediate_positions.L{lvl}"] = _rank_combination(len(free), chosen)
            free = [s for s in free if base[s] != lvl]
        if f.level_shifts:
            for p, s in enumerate(shifts):
                values[f"block{p}.level_shift"] = f.level_shifts.index(s)
        return tuple(values.get(s.label, 0) for s in self.steps)

    def _reachable(self, base: int, level: int) -> list[int]:
        """Shifts that take a block of base level `base` to `level` (smallest magnitude first)."""
        shifts = self.family.level_shifts or (0,)
        return sorted((s for s in shifts if _clip_level(base + s) == level), key=lambda s: (abs(s), s))

    def _match_base_levels(self, levels: list[int]) -> tuple[list[int], list[int]]:
        """Assigns a base level (and shift) to every intermediate block, or raises if no assignment exists."""
        counts = dict(self._groups)
        if not self.family.level_shifts:
            if sorted(levels) != list(self.family.intermediate_levels):
                raise InvalidArchError(
                    f"intermediate levels {levels} are not in the {self.family.name} space: expected the levels "
                    f"{list(self.family.intermediate_levels)} in some order",
                    "blocks",
                )
            return list(levels), [0] * len(levels)
        if not self._feasible(tuple(sorted(levels)), tuple(sorted(counts.items()))):
            raise InvalidArchError(
                f"intermediate levels {levels} are not in the {self.family.name} space: no assignment of the base "
                f"levels {list(self.family.intermediate_levels)} with shifts {list(self.family.level_shifts)} "
                "gives these levels",
                "blocks",
            )
        base: list[int] = []
        shifts: list[int] = []
        for p, lvl in enumerate(levels):
            for b in sorted(counts):
                if counts[b] == 0 or not self._reachable(b, lvl):
                    continue
                counts[b] -= 1
                if self._feasible(tuple(sorted(levels[p + 1 :])), tuple(sorted(counts.items()))):
                    base.append(b)
                    shifts.append(self._reachable(b, lvl)[0])
                    break
                counts[b] += 1
        return base, shifts

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - a space lives as long as its users; keys are tiny
    def _feasible(self, rest: tuple[int, ...], avail: tuple[tuple[int, int], ...]) -> bool:
        """Whether blocks at levels `rest` can each get a distinct base level from `avail` (bipartite matching)."""
        items = [lvl for lvl, n in avail for _ in range(n)]
        owner: dict[int, int] = {}

        def augment(p: int, seen: set[int]) -> bool:
            for k, lvl in enumerate(items):
                if k in seen or not self._reachable(lvl, rest[p]):
                    continue
                seen.add(k)
                if k not in owner or augment(owner[k], seen):
                    owner[k] = p
                    return True
            return False

        return all(augment(p, set()) for p in range(len(rest)))

    # ---------------------------------------------------------------------------------------------- sizes
    def sizes(self) -> dict[str, Any]:
        """The search space's size as the paper counts it (section 3), plus exact counts of this encoding.

        Returns:
          N, m, window; permutations = (N-5)! * 5!; connections = prod_{i=m}^{N+m-1} C(i, 2);
          connections_windowed (intermediate blocks limited to the window); level_adjustments = 4^(N-5) and
          block_types = 2^N where searched (1 otherwise); log10_total (the paper's product, unwindowed) and
          log10_total_windowed; distinct_permutations (orderings that differ in some block's level);
          decisions and decision_sequences (the size of this encoding).
        """
        n, m, n_int = self._n, self._m, self._n_int
        f = self.family
        permutations = math.factorial(n_int) * math.factorial(len(OUTPUT_LEVELS))
        distinct = math.factorial(n_int)
        for _lvl, count in self._groups:
            distinct //= math.factorial(count)
        distinct *= math.factorial(len(OUTPUT_LEVELS))
        connections = math.prod(math.comb(i, 2) for i in range(m, n + m))
        windowed = math.prod(math.comb(hi - lo, 2) for lo, hi in map(self._candidates, range(n)))
        adjustments = len(f.level_shifts) ** n_int if f.level_shifts else 1
        block_types = len(BLOCK_FNS) ** n if f.search_block_fns else 1
        return {
            "family": f.name,
            "N": n,
            "m": m,
            "window": self.window,
            "permutations": permutations,
            "connections": connections,
            "connections_windowed": windowed,
            "level_adjustments": adjustments,
            "block_types": block_types,
            "log10_total": math.log10(permutations * connections * adjustments * block_types),
            "log10_total_windowed": math.log10(permutations * windowed * adjustments * block_types),
            "distinct_permutations": distinct,
            "decisions": len(self.steps),
            "decision_sequences": math.prod(self.num_choices),
        }
