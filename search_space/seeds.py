"""Known architectures, for tests, baselines and `spinenas spec show spinenet-49`."""

from __future__ import annotations

from search_space.errors import InvalidArchError
from search_space.spec import MAX_SPEC_BYTES, ArchSpec

# A copy of Model Garden's `spinenet.SPINENET_BLOCK_SPECS` (official/vision/modeling/backbones/spinenet.py):
# SpineNet-49 as found by the paper's search, 16 tuples (level, block_fn, (input_offset0, input_offset1),
# is_output). The last block (level 2, flagged as output) feeds no endpoint, so `canonical()` drops it.
# A `tf` test checks this copy against the installed Model Garden.
SPINENET_49_TUPLES = (
    (2, "bottleneck", (0, 1), False),
    (4, "residual", (0, 1), False),
    (3, "bottleneck", (2, 3), False),
    (4, "bottleneck", (2, 4), False),
    (6, "residual", (3, 5), False),
    (4, "bottleneck", (3, 5), False),
    (5, "residual", (6, 7), False),
    (7, "residual", (6, 8), False),
    (5, "bottleneck", (8, 9), False),
    (5, "bottleneck", (8, 10), False),
    (4, "bottleneck", (5, 10), True),
    (3, "bottleneck", (4, 10), True),
    (5, "bottleneck", (7, 12), True),
    (7, "bottleneck", (5, 14), True),
    (6, "bottleneck", (12, 14), True),
    (2, "bottleneck", (2, 13), True),
)

SPINENET_49 = ArchSpec.from_model_garden(SPINENET_49_TUPLES)

# Built-in names accepted wherever the CLI takes an architecture.
NAMED: dict[str, ArchSpec] = {"spinenet-49": SPINENET_49}


def get_named(name: str) -> ArchSpec:
    """Looks up a built-in architecture ('spinenet-49'; 'spinenet49' also works).

    Raises:
      LookupError: for an unknown name, listing the known ones.
    """
    key = name.strip().lower()
    key = {"spinenet49": "spinenet-49", "spinenet_49": "spinenet-49"}.get(key, key)
    if key not in NAMED:
        raise LookupError(f"unknown architecture {name!r}; expected one of {', '.join(NAMED)} or a .json file")
    return NAMED[key]


def load_arch(ref: str) -> ArchSpec:
    """A built-in name or the path of a JSON spec file (`ArchSpec.to_json`, or a list of Model Garden tuples).

    A spec file has at most `MAX_SPEC_BYTES` (1 MiB), checked before it is read; its JSON then nests at most
    `MAX_JSON_DEPTH` deep and holds at most `MAX_BLOCKS` blocks, checked before it is parsed and before its blocks
    are read (see `ArchSpec.from_json`).

    Raises:
      LookupError: unknown name. FileNotFoundError: missing file. InvalidArchError: malformed or invalid spec,
        or a limit broken.
    """
    import os

    if ref.lower().endswith(".json") or os.sep in ref or os.path.exists(ref):
        if not os.path.isfile(ref):
            raise FileNotFoundError(f"spec file not found: {ref}")
        too_big = f"{ref}: spec file too large: at most {MAX_SPEC_BYTES:,} bytes (MAX_SPEC_BYTES), got "
        try:
            size = os.path.getsize(ref)
            if size > MAX_SPEC_BYTES:
                raise InvalidArchError(too_big + f"{size:,}")
            with open(ref, "rb") as fh:
                data = fh.read(MAX_SPEC_BYTES + 1)  # a file that grew, or reports no size (/proc), stops here
            if len(data) > MAX_SPEC_BYTES:
                raise InvalidArchError(too_big + "more")
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidArchError(f"cannot read spec file {ref}: {e}") from None
        try:
            return ArchSpec.from_json(text)
        except InvalidArchError as e:
            raise InvalidArchError(f"{ref}: {e}") from None
    return get_named(ref)
