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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
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
      blocks: the scale-permuted blocks in build order.
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
        merged into a later output block.
        """
        net = self.network()
        target = (net.stem, net.blocks)  # what `Network.to_json` spells, compared without spelling it
        arch = self
        ids = list(range(len(self.blocks)))  # original index of each block of `arch`
        for i in reversed(self.dead_blocks()):
            if i not in ids:
                continue
            group = {ids.index(i)}
            m = arch.num_stem_candidates
            for k in range(ids.index(i) + 1, len(arch.blocks)):
                if any(o - m in group for o in arch.blocks[k].input_offsets):
                    group.add(k)
            candidate = arch._without(group)
            if candidate is not None and (candidate.network().stem, candidate.network().blocks) == target:
                arch = candidate
                ids = [x for k, x in enumerate(ids) if k not in group]
        return arch

    def _without(self, group: set[int]) -> ArchSpec | None:
        """This spec with the blocks in `group` removed and offsets renumbered (None if something still uses them)."""
        m = self.num_stem_candidates
        removed = sorted(m + k for k in group)
        blocks = []
        for k, b in enumerate(self.blocks):
            if k in group:
                continue
            if any(o in removed for o in b.input_offsets):
                return None
            offsets = tuple(o - sum(1 for r in removed if r < o) for o in b.input_offsets)
            # Blocks before the removed ones keep their offsets: reused as they are (they are immutable).
            blocks.append(b if offsets == b.input_offsets else dataclasses.replace(b, input_offsets=offsets))
        try:
            return ArchSpec(blocks=tuple(blocks), stem=self.stem)
        except InvalidArchError:
            return None

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
        ``[level, block_fn, [input0, input1], is_output]``.

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

        Raises:
          InvalidArchError: for malformed JSON or an invalid spec.
        """
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidArchError(f"malformed JSON: {e}") from None
        return cls.from_dict(d)

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
