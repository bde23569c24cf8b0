"""The SpineNet search space: architectures, their encoding as decisions, and the paper's size counts.

Imports only the standard library and numpy (a test enforces it).
"""

from __future__ import annotations

from search_space.errors import InvalidArchError, InvalidDecisionError
from search_space.families import FAMILIES, Family, get_family, register_family
from search_space.seeds import SPINENET_49, get_named, load_arch
from search_space.space import DEFAULT_WINDOW, SearchSpace, Step
from search_space.spec import (
    BLOCK_FNS,
    LEVELS,
    MAX_BLOCKS,
    MAX_JSON_DEPTH,
    MAX_SPEC_BYTES,
    OUTPUT_LEVELS,
    R0_STEM,
    ArchSpec,
    BlockSpec,
    Network,
    stem_candidate_levels,
)

__all__ = [
    "ArchSpec",
    "BLOCK_FNS",
    "BlockSpec",
    "DEFAULT_WINDOW",
    "FAMILIES",
    "Family",
    "InvalidArchError",
    "InvalidDecisionError",
    "LEVELS",
    "MAX_BLOCKS",
    "MAX_JSON_DEPTH",
    "MAX_SPEC_BYTES",
    "Network",
    "OUTPUT_LEVELS",
    "R0_STEM",
    "SPINENET_49",
    "SearchSpace",
    "Step",
    "get_family",
    "get_named",
    "load_arch",
    "register_family",
    "stem_candidate_levels",
]
