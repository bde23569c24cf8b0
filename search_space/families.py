"""The R[N]-SP[M] family of the SpineNet paper (Table 1) and SpineNet-49's search with block adjustments."""

from __future__ import annotations

import dataclasses

from search_space.registry import Registry
from search_space.spec import BLOCK_FNS, LEVELS, OUTPUT_LEVELS, STEM_LEVELS, stem_candidate_levels


@dataclasses.dataclass(frozen=True)
class Family:
    """A family of scale-permuted networks: which blocks exist and what the search may change about them.

    Attributes:
      name: registry name, e.g. 'r0-sp53'.
      stem: ResNet bottleneck blocks at L2..L5 before the scale-permuted network (paper Table 1).
      levels: blocks of the scale-permuted network at L2..L7 (paper Table 1). One block of each of L3..L7 is an
        output block; the rest are intermediate blocks.
      block_fn: the type of every block when block types are not searched (the R-SP models permute ResNet-50,
        whose blocks are all bottlenecks).
      level_shifts: the level adjustments an intermediate block may take (paper 3.3: {-1, 0, +1, +2}); empty
        when levels are not adjusted. A shifted level is clipped to L2..L7.
      search_block_fns: whether every block chooses between bottleneck and residual (paper 3.3).
      description: one line for `spinenas space`.
    """

    name: str
    stem: tuple[int, int, int, int]
    levels: tuple[int, int, int, int, int, int]
    block_fn: str = "bottleneck"
    level_shifts: tuple[int, ...] = ()
    search_block_fns: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if len(self.stem) != len(STEM_LEVELS) or len(self.levels) != len(LEVELS):
            raise ValueError(
                f"family {self.name!r}: expected {len(STEM_LEVELS)} stem counts and {len(LEVELS)} level counts, "
                f"got {self.stem} and {self.levels}"
            )
        for lvl in OUTPUT_LEVELS:
            if self.levels[LEVELS.index(lvl)] < 1:
                raise ValueError(f"family {self.name!r}: needs at least one block at L{lvl} for its output")
        if self.block_fn not in BLOCK_FNS:
            raise ValueError(f"family {self.name!r}: unknown block type {self.block_fn!r}")
        if len(stem_candidate_levels(self.stem)) < 2:
            raise ValueError(f"family {self.name!r}: the stem must offer at least 2 parent candidates")
        if len(set(self.level_shifts)) != len(self.level_shifts):
            raise ValueError(f"family {self.name!r}: repeated level shift in {self.level_shifts}")

    @property
    def num_blocks(self) -> int:
        """N: blocks in the scale-permuted network."""
        return sum(self.levels)

    @property
    def intermediate_levels(self) -> tuple[int, ...]:
        """Base levels of the intermediate blocks, ascending (a multiset)."""
        out: list[int] = []
        for lvl, n in zip(LEVELS, self.levels):
            out.extend([lvl] * (n - (1 if lvl in OUTPUT_LEVELS else 0)))
        return tuple(out)

    @property
    def stem_levels(self) -> tuple[int, ...]:
        """Levels of the stem's parent candidates; its length is the paper's m."""
        return stem_candidate_levels(self.stem)


_SHIFTS = (-1, 0, 1, 2)

# The families, by name. Stem {L2,L3,L4,L5} and scale-permuted {L2..L7} block counts from the paper's Table 1.
FAMILIES = Registry("family")


def register_family(family: Family) -> Family:
    """Registers a search-space family under its name (a plug-in's own family, say).

    Raises:
      KeyError: the name is taken.
    """
    FAMILIES.register(family.name, value=family)
    return family


for _family in (
    Family("r35-sp18", (2, 3, 5, 1), (1, 1, 1, 1, 1, 1), description="ResNet stem of 11 blocks, 6 permuted"),
    Family("r23-sp30", (2, 2, 2, 1), (1, 2, 4, 1, 1, 1), description="ResNet stem of 7 blocks, 10 permuted"),
    Family("r14-sp39", (1, 1, 1, 1), (2, 3, 5, 1, 1, 1), description="ResNet stem of 4 blocks, 13 permuted"),
    Family("r0-sp53", (2, 0, 0, 0), (1, 4, 6, 2, 1, 1), description="2 level-2 stem blocks, 15 permuted"),
    Family(
        "spinenet49",
        (2, 0, 0, 0),
        (1, 4, 6, 2, 1, 1),
        level_shifts=_SHIFTS,
        search_block_fns=True,
        description="R0-SP53 plus block adjustments (level shifts, block types): SpineNet-49's search",
    ),
):
    register_family(_family)


def get_family(name: str) -> Family:
    """Looks a family up by name ('spinenet-49' and case variants are accepted).

    Raises:
      LookupError: for an unknown name, listing the known ones.
    """
    if not isinstance(name, str):
        raise LookupError(f"unknown family {name!r}; expected one of {', '.join(FAMILIES)}")
    key = name.strip().lower().replace("_", "-")
    key = {"spinenet-49": "spinenet49"}.get(key, key)
    if key not in FAMILIES:
        raise LookupError(f"unknown family {name!r}; expected one of {', '.join(FAMILIES)}")
    return FAMILIES.load(key)
