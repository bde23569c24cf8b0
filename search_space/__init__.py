"""The SpineNet search space: architectures, their encoding as decisions, and the paper's size counts.

Imports only the standard library and numpy (a test enforces it); numpy only when `SearchSpace` is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from search_space.errors import InvalidArchError, InvalidDecisionError
from search_space.families import FAMILIES, Family, get_family, register_family
from search_space.seeds import SPINENET_49, get_named, load_arch
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

if TYPE_CHECKING:
    from search_space.space import DEFAULT_WINDOW, SearchSpace, Step

# Loaded on first use (PEP 562), as the only part that needs numpy: the specs, the families and the registries
# (`search_space.registry`, which every package's registrations import) stay light, so the CLI's read-only commands
# that look up a registry (`spinenas top` describing a fingerprint) load no numpy.
_LAZY = {"DEFAULT_WINDOW": "search_space.space", "SearchSpace": "search_space.space", "Step": "search_space.space"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
