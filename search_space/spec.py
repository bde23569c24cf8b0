"""What an architecture is: `BlockSpec`, `ArchSpec`, the network they build, and its key.

An `ArchSpec` is the list of scale-permuted blocks that Model Garden's SpineNet takes, plus the stem that feeds
them. Offsets index the list ``[stem candidate 0, ..., stem candidate m-1, block 0, block 1, ...]`` exactly as in
Model Garden's ``SPINENET_BLOCK_SPECS``, so converting to Model Garden is a field copy.

Two specs that build the same network share a `key`. The network is what Model Garden's
``SpineNet._build_scale_permuted_network`` actually computes: each block sums its two resampled parents; an output
block also sums, unresampled, every earlier feature of its level and block type that nothing has consumed yet; only
output blocks at levels 3..7 become endpoints, and Keras keeps only the layers those endpoints depend on. So parent
order does not matter, and blocks that feed no endpoint (such as the trailing level-2 output block of
``SPINENET_BLOCK_SPECS``) vanish from the model. The key hashes that network, not the spelling of the spec.
Block order is part of the network here: two orderings of independent blocks get different keys.

A spec has at most `MAX_BLOCKS` (256) blocks; spec JSON has at most `MAX_SPEC_BYTES` (1 MiB) and nests at most
`MAX_JSON_DEPTH` (32) deep. Each limit is checked before the work it bounds, and breaking one is an
`InvalidArchError` that names it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import Any

from search_space.errors import InvalidArchError

logger = logging.getLogger(__name__)

# Levels a scale-permuted block may take (feature stride 2**level). Model Garden's FILTER_SIZE_MAP also has level 1,
# which no SpineNet uses.
LEVELS: tuple[int, ...] = (2, 3, 4, 5, 6, 7)
# Levels that become endpoints P3..P7 (Model Garden's min_level..max_level); exactly one output block each.
OUTPUT_LEVELS: tuple[int, ...] = (3, 4, 5, 6, 7)
# Block types, in Model Garden's spelling.
BLOCK_FNS: tuple[str, ...] = ("bottleneck", "residual")
# A stem is given as the number of ResNet bottleneck blocks at each of these levels.
STEM_LEVELS: tuple[int, ...] = (2, 3, 4, 5)
# Model Garden's SpineNet stem: two level-2 bottleneck blocks (the stem of R0-SP53 and SpineNet-49).
R0_STEM: tuple[int, int, int, int] = (2, 0, 0, 0)
# Block type of every stem block (Model Garden's `_init_block_fn`).
STEM_BLOCK_FN = "bottleneck"

# Limits on a spec, far above any real one: SpineNet-49S, -49, -96, -143 and -190 all take Model Garden's 16 blocks
# (they differ in scaling only) and the largest family has 15. A spec JSON file in `to_dict` form, indented, takes
# about 150 bytes a block and nests 4 deep. The limits keep a bad input from costing minutes or memory (a 34 MB
# file of 400,000 blocks) or ending in a RecursionError (json.loads of deep enough nesting).
MAX_BLOCKS = 256
MAX_SPEC_BYTES = 1 << 20  # bytes of a spec file; characters of `ArchSpec.from_json`'s text
MAX_JSON_DEPTH = 32  # nested arrays and objects


def stem_candidate_levels(stem: Sequence[int]) -> tuple[int, ...]:
    """Levels of the stem blocks that scale-permuted blocks may take as parents, in offset order.

    The candidates are the last block of every stem level that has blocks: the stage outputs C2..C5 that a
    ResNet-FPN taps, i.e. the most processed feature at each scale; a block inside a stage is followed by another
    block of the same scale, so offering it too would add a strictly less processed copy of that scale. A stem of a
    single level (R0-SP53 and SpineNet-49: two level-2 blocks) offers its last two blocks instead, because every
    block needs two distinct parents; that is what Model Garden's SpineNet does (``_build_stem`` returns both
    level-2 blocks and ``SPINENET_BLOCK_SPECS`` starts with parents ``(0, 1)``).

    Args:
      stem: block counts at levels 2, 3, 4, 5.

    Returns:
      One level per candidate; its length is the paper's m.
    """
    levels = [lvl for lvl, n in zip(STEM_LEVELS, stem) if n > 0]
    if len(levels) == 1 and stem[STEM_LEVELS.index(levels[0])] >= 2:
        return (levels[0], levels[0])
    return tuple(levels)


def _check_block_count(n: int) -> None:
    if n > MAX_BLOCKS:
        raise InvalidArchError(f"too many blocks: a spec has at most {MAX_BLOCKS} (MAX_BLOCKS), got {n:,}", "blocks")


# The characters `_json_depth` looks at: brackets, and the quotes and backslashes that say whether one is in a string.
_JSON_SPECIAL = re.compile(r'[\[\]{}"\\]')


def _json_depth(text: str, limit: int) -> int:
    """How deep arrays and objects nest in `text`, counted up to `limit` + 1: one pass, no recursion, no parse.

    (A regular expression for whole strings would be shorter, but it rescans to the end from every quote of an
    unterminated string: quadratic.)
    """
    depth = deepest = 0
    in_string = False
    escaped = -1  # the position a backslash in a string escapes
    for match in _JSON_SPECIAL.finditer(text):
        c = match.group()
        if in_string:
            if match.start() == escaped:
                continue
            if c == "\\":
                escaped = match.start() + 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif c in "]}":
            depth -= 1
    return deepest


def parse_bounded_json(text: str, *, max_chars: int = MAX_SPEC_BYTES, max_depth: int = MAX_JSON_DEPTH,
                       what: str = "spec JSON") -> Any:
    """`json.loads` of `text` after its length and nesting are checked (so no parse of a huge text, and no
    RecursionError).

    Raises:
      InvalidArchError: too long, nested too deeply, or malformed.
    """
    if len(text) > max_chars:
        limit = " (MAX_SPEC_BYTES)" if max_chars == MAX_SPEC_BYTES else ""
        raise InvalidArchError(f"{what} too long: at most {max_chars:,} characters{limit}, got {len(text):,}")
    if _json_depth(text, max_depth) > max_depth:
        limit = " (MAX_JSON_DEPTH)" if max_depth == MAX_JSON_DEPTH else ""
        raise InvalidArchError(f"{what} nested too deeply: at most {max_depth} levels of arrays and objects{limit}, "
                               "got more")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidArchError(f"malformed JSON: {e}") from None


def _check_stem(stem: Any) -> tuple[int, int, int, int]:
    if (
        not isinstance(stem, (tuple, list))
        or len(stem) != len(STEM_LEVELS)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in stem)
    ):
        raise InvalidArchError(
            f"expected {len(STEM_LEVELS)} non-negative block counts for levels "
            f"{', '.join(f'L{lvl}' for lvl in STEM_LEVELS)}, got {stem!r}",
            "stem",
        )
    stem = tuple(stem)
    if len(stem_candidate_levels(stem)) < 2:
        raise InvalidArchError(
            f"stem {list(stem)} offers fewer than 2 parent candidates; every block needs 2 distinct parents",
            "stem",
        )
    return stem  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One block of the scale-permuted network, in Model Garden's spelling.

    Attributes:
      level: feature level L2..L7 (stride 2**level).
      block_fn: 'bottleneck' or 'residual'.
      input_offsets: the two parents, as indices into [stem candidates..., block 0, ...]. Stored ascending: the
        sum of two parents does not depend on their order.
      is_output: whether the block is an output block. Output blocks at levels 3..7 become endpoints P3..P7.
    """

    level: int
    block_fn: str
    input_offsets: tuple[int, int]
    is_output: bool

    def __post_init__(self) -> None:
        if not isinstance(self.level, int) or isinstance(self.level, bool) or self.level not in LEVELS:
            raise InvalidArchError(
                f"level must be one of {list(LEVELS)}, got {self.level!r}", "level"
            )
        if self.block_fn not in BLOCK_FNS:
            raise InvalidArchError(
                f"unknown block type {self.block_fn!r}; expected one of {list(BLOCK_FNS)}", "block_fn"
            )
        offsets = self.input_offsets
        if (
            not isinstance(offsets, (tuple, list))
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise InvalidArchError(
                f"expected two integer parent offsets, got {offsets!r}", "input_offsets"
            )
        if min(offsets) < 0:
            raise InvalidArchError(
                f"parent offsets must be >= 0, got {list(offsets)} (Model Garden would silently index from "
                "the end of the list)",
                "input_offsets",
            )
        if offsets[0] == offsets[1]:
            raise InvalidArchError(
                f"the two parents must be distinct blocks, got {list(offsets)}", "input_offsets"
            )
        if not isinstance(self.is_output, bool):
            raise InvalidArchError(f"is_output must be true or false, got {self.is_output!r}", "is_output")
        object.__setattr__(self, "input_offsets", (min(offsets), max(offsets)))

    def to_tuple(self) -> tuple[int, str, tuple[int, int], bool]:
        """Model Garden's tuple form ``(level, block_fn, (input0, input1), is_output)``."""
        return (self.level, self.block_fn, self.input_offsets, self.is_output)


@dataclasses.dataclass(frozen=True)
class Network:
    """What a spec computes: the blocks that reach an endpoint, with every input they sum.

    Attributes:
      stem: the stem's block counts at L2..L5.
      blocks: for each live block in build order, ``(level, block_fn, parents, merged, is_endpoint)``.
        ``parents`` are the two resampled inputs and ``merged`` the unconsumed same-shape features an output block
        sums without resampling; both index ``[stem candidates..., live block 0, ...]``.
      live: indices (into the spec's blocks) of the live blocks, in order.
    """

    stem: tuple[int, ...]
    blocks: tuple[tuple[int, str, tuple[int, int], tuple[int, ...], bool], ...]
    live: tuple[int, ...]

    def to_json(self) -> str:
        """Canonical JSON of the network (the input of `ArchSpec.key`)."""
        return json.dumps(
            {"stem": list(self.stem), "blocks": [[lv, fn, list(p), list(m), e] for lv, fn, p, m, e in self.blocks]},
            sort_keys=True,
            separators=(",", ":"),
        )


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """A scale-permuted architecture: its blocks and the stem feeding them. Immutable and validated.

    Attributes:
      blocks: the scale-permuted blocks in build order; at most `MAX_BLOCKS`.
      stem: block counts of the (ResNet bottleneck) stem at L2..L5; `R0_STEM` is Model Garden's SpineNet stem.

    Example::

      arch = ArchSpec.from_model_garden(SPINENET_BLOCK_SPECS)
      arch.key                      # '3f1c...': same for every spelling of the same network
      arch.canonical().blocks       # the 15 live blocks
      arch.to_model_garden()        # the 16 tuples back
    """

    blocks: tuple[BlockSpec, ...]
    stem: tuple[int, int, int, int] = R0_STEM

    def __post_init__(self) -> None:
        stem = _check_stem(self.stem)
        object.__setattr__(self, "stem", stem)
        if not isinstance(self.blocks, (tuple, list)) or not all(isinstance(b, BlockSpec) for b in self.blocks):
            raise InvalidArchError("expected a sequence of BlockSpec", "blocks")
        _check_block_count(len(self.blocks))
        blocks = tuple(self.blocks)
        object.__setattr__(self, "blocks", blocks)
        m = len(stem_candidate_levels(stem))
        for i, b in enumerate(blocks):
            limit = m + i
            bad = [o for o in b.input_offsets if o >= limit]
            if bad:
                raise InvalidArchError(
                    f"parent offset {bad[0]} points at the block itself or at a later block; block {i} may take "
                    f"offsets 0..{limit - 1} ({m} stem candidates, then blocks 0..{i - 1})"
                    if i
                    else f"parent offset {bad[0]} points at the block itself or at a later block; block 0 may "
                    f"take offsets 0..{m - 1} (the {m} stem candidates)",
                    f"blocks[{i}].input_offsets",
                )
        seen: dict[int, int] = {}
        for i, b in enumerate(blocks):
            if b.is_output and b.level in OUTPUT_LEVELS:
                if b.level in seen:
                    raise InvalidArchError(
                        f"duplicate output level L{b.level}: blocks[{seen[b.level]}] is already the L{b.level} "
                        f"output; each of L3..L7 needs exactly one output block",
                        f"blocks[{i}].is_output",
                    )
                seen[b.level] = i
        missing = [lvl for lvl in OUTPUT_LEVELS if lvl not in seen]
        if missing:
            raise InvalidArchError(
                f"no output block at level(s) {', '.join(f'L{lvl}' for lvl in missing)}; each of L3..L7 needs "
                "exactly one output block",
                "blocks",
            )

    # ----------------------------------------------------------------------------------------------- structure
    @property
    def stem_levels(self) -> tuple[int, ...]:
        """Levels of the stem's parent candidates (offsets 0..m-1)."""
        return stem_candidate_levels(self.stem)

    @property
    def num_stem_candidates(self) -> int:
        """The paper's m: how many stem blocks are parent candidates."""
        return len(self.stem_levels)

    def network(self) -> Network:
        """Simulates Model Garden's SpineNet build and returns the network this spec computes (cached)."""
        cached = self.__dict__.get("_network")
        if cached is None:
            cached = self._build_network()
            object.__setattr__(self, "_network", cached)  # a cache, not a field: equality and hash ignore it
        return cached

    def _build_network(self) -> Network:
        m = self.num_stem_candidates
        kinds = [(lvl, STEM_BLOCK_FN) for lvl in self.stem_levels] + [(b.level, b.block_fn) for b in self.blocks]
        # The features nothing has consumed yet (outdegree 0), per kind (level, block_fn), in build order (a dict
        # is an ordered set): an output block takes its kind's at once instead of scanning every earlier feature,
        # which keeps the build linear in the blocks.
        unconsumed: dict[tuple[int, str], dict[int, None]] = {}
        for j in range(m):
            unconsumed.setdefault(kinds[j], {})[j] = None
        merged: list[tuple[int, ...]] = []
        for i, b in enumerate(self.blocks):
            for o in b.input_offsets:
                unconsumed[kinds[o]].pop(o, None)
            found: tuple[int, ...] = ()
            if b.is_output:
                # Model Garden's "merge 0 outdegree blocks to the output block": same width and same channels,
                # i.e. (for inputs a multiple of 2**7) same level and same block type.
                pending = unconsumed.get(kinds[m + i])
                if pending:
                    found = tuple(pending)
                    pending.clear()
            merged.append(found)
            unconsumed.setdefault(kinds[m + i], {})[m + i] = None

        live: set[int] = set()
        stack = [m + i for i, b in enumerate(self.blocks) if b.is_output and b.level in OUTPUT_LEVELS]
        while stack:
            n = stack.pop()
            if n < m or n in live:
                continue
            live.add(n)
            i = n - m
            stack.extend(self.blocks[i].input_offsets)
            stack.extend(merged[i])
        order = sorted(live)
        remap = {j: j for j in range(m)}
        remap.update({n: m + k for k, n in enumerate(order)})
        out = []
        for n in order:
            b = self.blocks[n - m]
            out.append(
                (
                    b.level,
                    b.block_fn,
                    (remap[b.input_offsets[0]], remap[b.input_offsets[1]]),
                    tuple(remap[j] for j in merged[n - m]),
                    b.is_output and b.level in OUTPUT_LEVELS,
                )
            )
        return Network(stem=self.stem, blocks=tuple(out), live=tuple(n - m for n in order))

    @property
    def key(self) -> str:
        """Short hash of the network this spec builds: the dedup and database key."""
        key = self.__dict__.get("_key")
        if key is None:
            key = hashlib.sha256(self.network().to_json().encode()).hexdigest()[:16]
            object.__setattr__(self, "_key", key)
        return key

    def dead_blocks(self) -> tuple[int, ...]:
        """Indices of blocks that feed no endpoint (Model Garden builds no layer of theirs into the model)."""
        live = set(self.network().live)
        return tuple(i for i in range(len(self.blocks)) if i not in live)

    def canonical(self) -> ArchSpec:
        """The shortest spec found that builds the same network: dead blocks removed where that changes nothing.

        Each dead block is tried from the last one back, together with the dead blocks that consume it. A dead
        block stays only when removing it would change the network: it consumes a block that would otherwise be
        merged into a later output block. Cached; O(n log n) for n blocks (`_removable_blocks` has the one exception).
        """
        cached = self.__dict__.get("_canonical")
        if cached is None:
            drop = _removable_blocks(self)
            cached = self._without(drop) if drop else self
            object.__setattr__(self, "_canonical", cached)  # a cache, not a field, as `network` is
        return cached

    def _without(self, drop: Sequence[int]) -> ArchSpec:
        """This spec with the blocks `drop` removed and offsets renumbered; nothing left may consume them."""
        m = self.num_stem_candidates
        gone = set(drop)
        before = [0] * (m + len(self.blocks))  # how many removed blocks precede each offset
        count = 0
        for k in range(len(self.blocks)):
            before[m + k] = count
            count += k in gone
        blocks = []
        for k, b in enumerate(self.blocks):
            if k in gone:
                continue
            offsets = (b.input_offsets[0] - before[b.input_offsets[0]], b.input_offsets[1] - before[b.input_offsets[1]])
            # Blocks before the removed ones keep their offsets: reused as they are (they are immutable).
            blocks.append(b if offsets == b.input_offsets else dataclasses.replace(b, input_offsets=offsets))
        return ArchSpec(blocks=tuple(blocks), stem=self.stem)

    # ----------------------------------------------------------------------------------------------- formats
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; tuples become lists."""
        return {
            "stem": list(self.stem),
            "blocks": [
                {
                    "level": b.level,
                    "block_fn": b.block_fn,
                    "input_offsets": list(b.input_offsets),
                    "is_output": b.is_output,
                }
                for b in self.blocks
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | Sequence[Any]) -> ArchSpec:
        """Strict inverse of `to_dict`. Also takes a bare list of Model Garden tuples (as lists).

        Each block may be a dict with exactly the keys level, block_fn, input_offsets, is_output, or a list
        ``[level, block_fn, [input0, input1], is_output]``. More than `MAX_BLOCKS` blocks are refused before any
        is read.

        Raises:
          InvalidArchError: naming the offending field.
        """
        if isinstance(d, Sequence) and not isinstance(d, (str, bytes)):
            d = {"blocks": d}
        if not isinstance(d, Mapping):
            raise InvalidArchError(f"expected an object with 'blocks' (and optional 'stem'), got {type(d).__name__}")
        unknown = sorted(set(d) - {"blocks", "stem"})
        if unknown:
            raise InvalidArchError(f"unknown key(s) {unknown}; expected 'blocks' and optional 'stem'")
        if "blocks" not in d:
            raise InvalidArchError("missing key 'blocks'")
        raw = d["blocks"]
        if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
            raise InvalidArchError(f"expected a list of blocks, got {type(raw).__name__}", "blocks")
        _check_block_count(len(raw))
        blocks = []
        fields = ("level", "block_fn", "input_offsets", "is_output")
        for i, item in enumerate(raw):
            try:
                if isinstance(item, Mapping):
                    extra = sorted(set(item) - set(fields))
                    missing = [f for f in fields if f not in item]
                    if extra or missing:
                        raise InvalidArchError(
                            f"expected keys {list(fields)}"
                            + (f"; unknown {extra}" if extra else "")
                            + (f"; missing {missing}" if missing else "")
                        )
                    values = [item[f] for f in fields]
                elif isinstance(item, Sequence) and not isinstance(item, (str, bytes)) and len(item) == 4:
                    values = list(item)
                else:
                    raise InvalidArchError(
                        f"expected an object or a [level, block_fn, [input0, input1], is_output] list, got {item!r}"
                    )
                if isinstance(values[2], list):
                    values[2] = tuple(values[2])
                blocks.append(BlockSpec(*values))
            except InvalidArchError as e:
                raise e.with_prefix(f"blocks[{i}]") from None
        stem = d.get("stem", list(R0_STEM))
        return cls(blocks=tuple(blocks), stem=tuple(stem) if isinstance(stem, list) else stem)

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        """Parses `to_json` output (or any JSON `from_dict` accepts).

        Text longer than `MAX_SPEC_BYTES` characters, or nesting deeper than `MAX_JSON_DEPTH`, is refused before
        it is parsed; more than `MAX_BLOCKS` blocks before any block is read.

        Raises:
          InvalidArchError: for malformed JSON, a limit broken or an invalid spec.
        """
        return cls.from_dict(parse_bounded_json(text))

    def to_model_garden(self) -> list[tuple[int, str, tuple[int, int], bool]]:
        """The ``(level, block_fn, (input0, input1), is_output)`` tuples Model Garden's `build_block_specs` takes.

        Model Garden's own `SpineNet` builds only the `R0_STEM` stem; specs with a ResNet stem of several levels
        need this project's registered backbone (proxy_task).
        """
        return [b.to_tuple() for b in self.blocks]

    @classmethod
    def from_model_garden(
        cls, block_specs: Iterable[Sequence[Any]], stem: Sequence[int] = R0_STEM
    ) -> ArchSpec:
        """Builds a spec from Model Garden tuples (e.g. ``spinenet.SPINENET_BLOCK_SPECS``).

        Raises:
          InvalidArchError: naming the offending block and rule.
        """
        if isinstance(block_specs, Sized):
            _check_block_count(len(block_specs))
        blocks = []
        for i, t in enumerate(block_specs):
            try:
                if isinstance(t, BlockSpec):
                    blocks.append(t)
                    continue
                if not isinstance(t, Sequence) or len(t) != 4:
                    raise InvalidArchError(
                        f"expected a (level, block_fn, (input0, input1), is_output) tuple, got {t!r}"
                    )
                level, block_fn, offsets, is_output = t
                blocks.append(BlockSpec(level, block_fn, tuple(offsets), is_output))
            except InvalidArchError as e:
                raise e.with_prefix(f"blocks[{i}]") from None
            except TypeError:
                raise InvalidArchError(
                    f"expected a (level, block_fn, (input0, input1), is_output) tuple, got {t!r}", f"blocks[{i}]"
                ) from None
        return cls(blocks=tuple(blocks), stem=tuple(stem))

    def summary(self) -> str:
        """A compact one-line spelling, e.g. ``'2b 4r 3b ... | 4b* 3b* 5b* 7b* 6b*'`` (``*`` = output)."""
        parts = []
        for b in self.canonical().blocks:
            parts.append(f"{b.level}{b.block_fn[0]}{'*' if b.is_output else ''}")
        return " ".join(parts)


# --------------------------------------------------------------------------------------------------- canonical form
# Rebuilding and comparing the whole network for every dead block `ArchSpec.canonical` tries would be quadratic in
# the blocks. `_removable_blocks` makes the same decisions from the few features each removal can affect (see the
# README's Benchmarks, `scripts/bench/spec_scaling.py`); tests/search_space/test_keys.py holds it to the decisions
# of the whole-network rule, recorded in a fixture.

_NO_CONSUMER = 1 << 62  # the first consumer of a feature nothing consumes: later than any block


class _MaxTree:
    """Point updates and range maxima, with a slot holding the maximum, over a fixed number of slots."""

    def __init__(self, values: Sequence[int]) -> None:
        size = 1
        while size < len(values):
            size *= 2
        self._size = size
        tree = [(-1, -1)] * (2 * size)
        tree[size : size + len(values)] = [(v, k) for k, v in enumerate(values)]
        for p in range(size - 1, 0, -1):
            tree[p] = max(tree[2 * p], tree[2 * p + 1])
        self._tree = tree

    def __getitem__(self, k: int) -> int:
        return self._tree[self._size + k][0]

    def __setitem__(self, k: int, value: int) -> None:
        p = self._size + k
        self._tree[p] = (value, k)
        while p > 1:
            p //= 2
            self._tree[p] = max(self._tree[2 * p], self._tree[2 * p + 1])

    def max(self, lo: int, hi: int) -> tuple[int, int]:
        """(largest value, its slot) over the slots lo..hi-1; (-1, -1) when there is none."""
        best = (-1, -1)
        lo += self._size
        hi += self._size
        while lo < hi:
            if lo & 1:
                best = max(best, self._tree[lo])
                lo += 1
            if hi & 1:
                hi -= 1
                best = max(best, self._tree[hi])
            lo //= 2
            hi //= 2
        return best


def _find(parent: list[int], x: int) -> int:
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:
        parent[x], x = root, parent[x]
    return root


class _Present:
    """Which of k ordered slots are still present: the nearest present slot after or before one (union-find)."""

    def __init__(self, k: int) -> None:
        self._next = list(range(k + 1))  # slot k: none after
        self._prev = list(range(k + 1))  # index s + 1 stands for slot s; index 0: none before
        self.size = k

    def remove(self, s: int) -> None:
        self._next[s] = s + 1
        self._prev[s + 1] = s

    def at_or_after(self, s: int) -> int:
        """The first present slot >= s, or `size`."""
        return _find(self._next, s)

    def at_or_before(self, s: int) -> int:
        """The last present slot <= s, or -1."""
        return _find(self._prev, s + 1) - 1


def _removable_blocks(arch: ArchSpec) -> list[int]:
    """The blocks `ArchSpec.canonical` drops: its greedy over the dead blocks, in O(n log n) for n blocks.

    Nodes are offsets: stem candidates, then blocks. A feature j is merged into the first output block of its kind
    (level, block_fn) built after it, unless a block consumes j first (or that output block takes j as a parent).
    Removing dead blocks changes the network exactly when a remaining feature that no live output block merges
    today would then be merged into a live one. (A feature a live output merges stays merged: removing blocks
    only delays its first consumer, and a live output block is never removed.) Removing a group can only do that
    to a feature of two kinds, which is all this looks at:

    1. a parent of a removed block, whose first consumer may move after its kind's next output block;
    2. a feature whose next output block of its kind is removed (a dead level-2 output), if the next output
       after that one is live and the feature's first consumer comes after it: a range maximum over the
       feature's kind, of each feature's first consumer.

    A group that fails keeps a witness (the feature that would be merged). Every later group that contains it and
    not its witness fails as well (removing more blocks only delays consumers), so most failing groups are told
    at their first kept block. Groups of kept blocks whose witnesses are dead blocks they contain (chains that
    each stop the merge of the one before) are checked in full, so a long such chain costs its length squared.
    """
    dead = arch.dead_blocks()
    if not dead:
        return []
    greedy = _DeadBlockGreedy(arch)
    for i in reversed(dead):
        greedy.try_removing(arch.num_stem_candidates + i)
    return greedy.removed_blocks()


class _DeadBlockGreedy:
    """The state of `_removable_blocks`'s greedy: consumer lists, per-kind indexes, what is removed, the witnesses.

    Every index is kept up to date as groups are removed, so that each try looks only at the features the removal
    can affect. A node is an offset: stem candidates, then blocks.
    """

    def __init__(self, arch: ArchSpec) -> None:
        m = arch.num_stem_candidates
        self._m = m
        self._blocks = arch.blocks
        self._n = m + len(arch.blocks)
        self._kinds = [(lvl, STEM_BLOCK_FN) for lvl in arch.stem_levels] + [(b.level, b.block_fn) for b in arch.blocks]
        net = arch.network()
        self._live = bytearray(self._n)
        for i in net.live:
            self._live[m + i] = 1
        node_of = list(range(m)) + [m + i for i in net.live]  # network index -> node
        self._merged_live = {node_of[x] for *_, merged, _ in net.blocks for x in merged}
        self._link_consumers()
        self._index_kinds()
        self._removed = bytearray(self._n)
        self._witness: dict[int, int] = {}

    def _link_consumers(self) -> None:
        """The consumers of every node in build order, as linked lists of edges (edge 2i + s: parent s of block i),
        so that removing a block unlinks its two edges at once."""
        n, blocks = self._n, self._blocks
        head, tail = [-1] * n, [-1] * n
        nxt, prv = [-1] * (2 * len(blocks)), [-1] * (2 * len(blocks))
        for i, b in enumerate(blocks):
            for s, o in enumerate(b.input_offsets):
                e = 2 * i + s
                if tail[o] < 0:
                    head[o] = e
                else:
                    nxt[tail[o]], prv[e] = e, tail[o]
                tail[o] = e
        self._head, self._tail, self._nxt, self._prv = head, tail, nxt, prv

    def _first_consumer(self, x: int) -> int:
        head = self._head
        return self._m + head[x] // 2 if head[x] >= 0 else _NO_CONSUMER

    def _index_kinds(self) -> None:
        """Per kind: its nodes and its output blocks, in order; each node's slot among them; which of its output
        blocks are present; and the range maxima of its nodes' first consumers."""
        m, blocks, kinds = self._m, self._blocks, self._kinds
        members: dict[tuple[int, str], list[int]] = {}
        outs: dict[tuple[int, str], list[int]] = {}
        member_slot = [0] * self._n
        out_slot: dict[int, int] = {}
        next_out = [0] * self._n  # slot in outs[kind] of the first output block built after the node
        for x in range(self._n):
            k = kinds[x]
            member_slot[x] = len(members.setdefault(k, []))
            members[k].append(x)
            kind_outs = outs.setdefault(k, [])
            if x >= m and blocks[x - m].is_output:
                out_slot[x] = len(kind_outs)
                kind_outs.append(x)
            next_out[x] = len(kind_outs)
        self._members, self._outs = members, outs
        self._member_slot, self._out_slot, self._next_out = member_slot, out_slot, next_out
        self._present_outs = {k: _Present(len(v)) for k, v in outs.items()}
        self._consumers = {k: _MaxTree([self._first_consumer(x) for x in v]) for k, v in members.items()}

    def try_removing(self, u: int) -> None:
        """Removes dead block `u` (still present) with the present blocks that consume it, transitively, unless
        that changes the network; then `u` keeps a witness instead. Dead blocks are tried from the last one back,
        so a group holds its first block and later ones only."""
        group, blocked = self._group(u)
        if blocked < 0:
            blocked = self._witness_left_present(u, group)
        if blocked < 0:
            blocked = self._merged_after_removing(group)
        if blocked >= 0:
            self._witness[u] = blocked
            return
        self._remove(group)

    def removed_blocks(self) -> list[int]:
        """Indices (into the spec's blocks) of the blocks removed so far, in order."""
        m, removed = self._m, self._removed
        return [x - m for x in range(m, self._n) if removed[x]]

    def _group(self, u: int) -> tuple[set[int], int]:
        """u and the present blocks that consume it, transitively (all dead, all tried before and kept); with the
        witness of one of them that lies outside every group from u on (the group then fails; the walk stops
        there), or -1."""
        m, head, nxt = self._m, self._head, self._nxt
        witness, removed, live = self._witness, self._removed, self._live
        group = {u}
        stack = [u]
        blocked = -1
        while stack and blocked < 0:
            e = head[stack.pop()]
            while e >= 0:
                y = m + e // 2
                if y not in group:
                    w = witness[y]
                    if not removed[w] and (w < u or live[w]):  # w is outside every group from u on
                        blocked = w
                        break
                    group.add(y)
                    stack.append(y)
                e = nxt[e]
        return group, blocked

    def _witness_left_present(self, u: int, group: set[int]) -> int:
        """The witness of a kept block of `group` that removing the group leaves present, or -1."""
        witness, removed = self._witness, self._removed
        return next((witness[y] for y in group if y != u and not removed[witness[y]]
                     and witness[y] not in group), -1)

    def _next_output(self, x: int, group: set[int]) -> int:
        """The first output block of x's kind after x that is present and not in `group`, or -1."""
        kind_outs, present = self._outs[self._kinds[x]], self._present_outs[self._kinds[x]]
        s = present.at_or_after(self._next_out[x])
        while s < present.size and kind_outs[s] in group:
            s = present.at_or_after(s + 1)
        return kind_outs[s] if s < present.size else -1

    def _merged_after_removing(self, group: set[int]) -> int:
        """A feature that removing `group` would merge into a live output block, or -1."""
        found, parents = self._merged_parent(group)
        if found >= 0:
            return found
        return self._merged_past_removed_output(group, parents)

    def _merged_parent(self, group: set[int]) -> tuple[int, set[int]]:
        """Case 1: a parent of the group whose first remaining consumer would come after its kind's next live
        output block, or -1; and the parents looked at (all of them when there is none)."""
        m, blocks, head, nxt, live = self._m, self._blocks, self._head, self._nxt, self._live
        parents: set[int] = set()
        for y in group:
            for o in blocks[y - m].input_offsets:
                if o in group or o in parents or o in self._merged_live:
                    continue
                parents.add(o)
                t = self._next_output(o, group)
                if t < 0 or not live[t]:
                    continue
                e = head[o]
                while e >= 0 and m + e // 2 in group:
                    e = nxt[e]
                if e < 0 or m + e // 2 > t:
                    return o, parents
        return -1, parents

    def _merged_past_removed_output(self, group: set[int], parents: set[int]) -> int:
        """Case 2: a feature that an output block of the group would have merged, first consumed after the next
        live output block of its kind, or -1. The range maxima leave out the group and `parents` (case 1 has
        checked those) while this looks, and get them back after."""
        kinds, members, outs, live = self._kinds, self._members, self._outs, self._live
        consumers, member_slot = self._consumers, self._member_slot
        saved: list[tuple[_MaxTree, int, int]] = []
        try:
            for g in sorted(y for y in group if y in self._out_slot):
                t = self._next_output(g, group)
                if t < 0 or not live[t]:
                    continue
                if not saved:  # leave the group and the parents checked above out of the range maxima
                    for x in (*group, *parents):
                        tree, slot = consumers[kinds[x]], member_slot[x]
                        saved.append((tree, slot, tree[slot]))
                        tree[slot] = -1
                k = kinds[g]
                p = self._present_outs[k].at_or_before(self._out_slot[g] - 1)  # the features from there on merge into g
                lo = member_slot[outs[k][p]] if p >= 0 else 0
                value, slot = consumers[k].max(lo, member_slot[g])
                if value > t:
                    return members[k][slot]
            return -1
        finally:
            for tree, slot, value in reversed(saved):
                tree[slot] = value

    def _remove(self, group: set[int]) -> None:
        """Removes `group` from every index, then gives its remaining parents their new first consumers."""
        m, blocks, kinds, removed = self._m, self._blocks, self._kinds, self._removed
        consumers, member_slot, out_slot = self._consumers, self._member_slot, self._out_slot
        for y in group:
            removed[y] = 1
            consumers[kinds[y]][member_slot[y]] = -1
            if y in out_slot:
                self._present_outs[kinds[y]].remove(out_slot[y])
            self._unlink(y)
        for y in group:
            for o in blocks[y - m].input_offsets:
                if not removed[o]:
                    consumers[kinds[o]][member_slot[o]] = self._first_consumer(o)

    def _unlink(self, y: int) -> None:
        """Takes block node y's two edges out of its parents' consumer lists."""
        head, tail, nxt, prv = self._head, self._tail, self._nxt, self._prv
        for s, o in enumerate(self._blocks[y - self._m].input_offsets):
            e = 2 * (y - self._m) + s
            if prv[e] >= 0:
                nxt[prv[e]] = nxt[e]
            else:
                head[o] = nxt[e]
            if nxt[e] >= 0:
                prv[nxt[e]] = prv[e]
            else:
                tail[o] = prv[e]
