"""ArchSpec: validation, formats, the network it builds, canonical form and key."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from search_space import SPINENET_49, ArchSpec, BlockSpec, InvalidArchError, spec
from search_space.seeds import SPINENET_49_TUPLES

B = BlockSpec


def _outputs(first_offset: int = 0) -> list[BlockSpec]:
    return [B(lvl, "bottleneck", (first_offset, first_offset + 1), True) for lvl in (3, 4, 5, 6, 7)]


def test_spinenet49_round_trips_through_model_garden_tuples_and_json():
    assert SPINENET_49.to_model_garden() == list(SPINENET_49_TUPLES)
    assert ArchSpec.from_model_garden(SPINENET_49.to_model_garden()) == SPINENET_49
    assert ArchSpec.from_json(SPINENET_49.to_json()) == SPINENET_49
    assert ArchSpec.from_dict(json.loads(SPINENET_49.to_json())) == SPINENET_49
    # A bare list of tuples (as JSON lists) is accepted too.
    assert ArchSpec.from_dict(json.loads(json.dumps(SPINENET_49_TUPLES))) == SPINENET_49


def test_canonical_json_is_sorted_and_compact():
    text = SPINENET_49.to_json()
    assert " " not in text
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


def test_trailing_level2_block_is_dead_and_dropped():
    assert SPINENET_49.dead_blocks() == (15,)
    canonical = SPINENET_49.canonical()
    assert len(canonical.blocks) == 15
    assert canonical.blocks == SPINENET_49.blocks[:15]
    assert canonical.key == SPINENET_49.key
    assert canonical.dead_blocks() == ()


def test_swapped_parent_order_gives_the_same_spec_and_key():
    swapped = [(lvl, fn, (b, a), out) for lvl, fn, (a, b), out in SPINENET_49_TUPLES]
    arch = ArchSpec.from_model_garden(swapped)
    assert arch == SPINENET_49
    assert arch.key == SPINENET_49.key
    assert hash(arch) == hash(SPINENET_49)


def test_different_networks_get_different_keys():
    tuples = [list(t) for t in SPINENET_49_TUPLES]
    tuples[1][1] = "bottleneck"  # block 1: residual -> bottleneck
    assert ArchSpec.from_model_garden([tuple(t) for t in tuples]).key != SPINENET_49.key
    tuples = [list(t) for t in SPINENET_49_TUPLES]
    tuples[2][2] = (1, 3)  # block 2 takes other parents
    assert ArchSpec.from_model_garden([tuple(t) for t in tuples]).key != SPINENET_49.key


def test_dead_chain_is_removed_together():
    # Block 1 consumes block 0 and nothing consumes block 1: both feed no endpoint. Removing block 1 alone would
    # leave block 0 unconsumed, so Model Garden would merge it into the L4 output: they must go together.
    arch = ArchSpec((B(4, "bottleneck", (0, 1), False), B(3, "residual", (1, 2), False), *_outputs()))
    assert arch.dead_blocks() == (0, 1)
    assert len(arch.canonical().blocks) == 5
    assert arch.canonical().key == arch.key == ArchSpec(tuple(_outputs())).key


def test_dead_block_that_prevents_a_merge_is_kept():
    # Block 0 (L4 bottleneck) is consumed by the dead block 1 before the L4 output is built, so Model Garden does
    # not merge it there; the L5 output consumes it later. Without block 1 it would be merged: another network.
    blocks = (
        B(4, "bottleneck", (0, 1), False),
        B(3, "residual", (1, 2), False),
        B(4, "bottleneck", (0, 1), True),
        B(3, "bottleneck", (0, 1), True),
        B(5, "bottleneck", (2, 4), True),
        B(6, "bottleneck", (0, 1), True),
        B(7, "bottleneck", (0, 1), True),
    )
    arch = ArchSpec(blocks)
    assert arch.dead_blocks() == (1,)
    assert arch.canonical() == arch
    without = ArchSpec(
        (blocks[0], *(B(b.level, b.block_fn, tuple(o - 1 if o > 3 else o for o in b.input_offsets), True)
                      for b in blocks[2:]))
    )
    assert without.network().blocks[1][3] == (2,)  # block 0 merged into the L4 output
    assert without.key != arch.key


def test_unconsumed_block_is_merged_into_its_output():
    # An intermediate L5 bottleneck that nothing consumes is summed into the L5 output (Model Garden's merge).
    arch = ArchSpec((B(5, "bottleneck", (0, 1), False), *_outputs()))
    net = arch.network()
    assert arch.dead_blocks() == ()
    l5 = [b for b in net.blocks if b[0] == 5 and b[4]][0]
    assert l5[3] == (2,)
    # Of another type it is not merged (channels differ) and is dead.
    arch = ArchSpec((B(5, "residual", (0, 1), False), *_outputs()))
    assert arch.dead_blocks() == (0,)


BAD_SPECS = [
    ([(2, "bottleneck", (0, 2), False)] + [(lvl, "bottleneck", (0, 1), True) for lvl in (3, 4, 5, 6, 7)],
     r"blocks\[0\]\.input_offsets: parent offset 2 points at the block itself"),
    ([(2, "bottleneck", (0, 5), False)] + [(lvl, "bottleneck", (0, 1), True) for lvl in (3, 4, 5, 6, 7)],
     r"blocks\[0\]\.input_offsets: .*later block"),
    ([(2, "bottleneck", (-1, 0), False)] + [(lvl, "bottleneck", (0, 1), True) for lvl in (3, 4, 5, 6, 7)],
     r"blocks\[0\]\.input_offsets: parent offsets must be >= 0"),
    ([(2, "bottleneck", (1, 1), False)] + [(lvl, "bottleneck", (0, 1), True) for lvl in (3, 4, 5, 6, 7)],
     r"blocks\[0\]\.input_offsets: the two parents must be distinct"),
    ([(lvl, "bottleneck", (0, 1), True) for lvl in (3, 4, 5, 6, 7, 4)],
     r"blocks\[5\]\.is_output: duplicate output level L4: blocks\[1\]"),
    ([(lvl, "bottleneck", (0, 1), True) for lvl in (3, 4, 5, 6)],
     r"no output block at level\(s\) L7"),
    ([(lvl, "bottleneck", (0, 1), True) for lvl in (3, 4, 5, 6)] + [(7, "mbconv", (0, 1), True)],
     r"blocks\[4\]\.block_fn: unknown block type 'mbconv'"),
    ([(lvl, "bottleneck", (0, 1), True) for lvl in (3, 4, 5, 6)] + [(8, "bottleneck", (0, 1), True)],
     r"blocks\[4\]\.level: level must be one of \[2, 3, 4, 5, 6, 7\], got 8"),
    ([(1, "bottleneck", (0, 1), False)] + [(lvl, "bottleneck", (0, 1), True) for lvl in (3, 4, 5, 6, 7)],
     r"blocks\[0\]\.level: .*got 1"),
    ([(lvl, "bottleneck", (0, 1, 2), True) for lvl in (3, 4, 5, 6, 7)],
     r"blocks\[0\]\.input_offsets: expected two integer parent offsets"),
    ([(3, "bottleneck", (0, 1), "yes")],
     r"blocks\[0\]\.is_output: is_output must be true or false"),
    ([(3, "bottleneck", (0, 1))],
     r"blocks\[0\]: expected a \(level, block_fn"),
]


@pytest.mark.parametrize("tuples, message", BAD_SPECS)
def test_invalid_specs_name_the_block_and_the_rule(tuples, message):
    with pytest.raises(InvalidArchError, match=message):
        ArchSpec.from_model_garden(tuples)


def test_error_carries_the_path():
    with pytest.raises(InvalidArchError) as info:
        ArchSpec.from_model_garden([(2, "bottleneck", (0, 2), False)] + [(lvl, "bottleneck", (0, 1), True)
                                                                          for lvl in (3, 4, 5, 6, 7)])
    assert info.value.path == "blocks[0].input_offsets"


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "malformed JSON"),
        ('{"blocks": [], "extra": 1}', r"unknown key\(s\) \['extra'\]"),
        ('{"stem": [2, 0, 0, 0]}', "missing key 'blocks'"),
        ('{"blocks": [{"level": 3}]}', r"blocks\[0\]: expected keys .*missing"),
        ('{"blocks": "abc"}', "expected a list of blocks"),
        ('"spinenet"', "expected an object"),
        ('{"blocks": [], "stem": [1, 0, 0, 0]}', "stem .* fewer than 2 parent candidates"),
        ('{"blocks": [], "stem": [1, 0]}', "stem: expected 4 non-negative block counts"),
    ],
)
def test_malformed_json_gets_clear_errors(text, message):
    with pytest.raises(InvalidArchError, match=message):
        ArchSpec.from_json(text)


def test_stem_candidates_follow_the_documented_rule():
    from search_space import stem_candidate_levels

    assert stem_candidate_levels((2, 0, 0, 0)) == (2, 2)
    assert stem_candidate_levels((2, 3, 5, 1)) == (2, 3, 4, 5)
    assert stem_candidate_levels((1, 1, 1, 1)) == (2, 3, 4, 5)
    assert stem_candidate_levels((0, 2, 0, 0)) == (3, 3)


def test_specs_are_frozen():
    with pytest.raises(AttributeError):
        SPINENET_49.blocks = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        SPINENET_49.blocks[0].level = 3  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------- bounded inputs
def _mg_list(n: int) -> list[list]:
    """SpineNet-49's 16 Model Garden tuples (as JSON lists), then n - 16 blocks that feed no endpoint."""
    dead = [[2, "residual", [2, 3], False]] * (n - len(SPINENET_49_TUPLES))
    return [[lvl, fn, list(o), out] for lvl, fn, o, out in SPINENET_49_TUPLES] + dead


def test_a_spec_of_max_blocks_is_taken_and_one_more_is_refused():
    assert spec.MAX_BLOCKS >= 10 * len(SPINENET_49_TUPLES)
    arch = ArchSpec.from_json(json.dumps(_mg_list(spec.MAX_BLOCKS)))
    assert arch.canonical() == SPINENET_49.canonical()
    message = rf"blocks: too many blocks: a spec has at most {spec.MAX_BLOCKS} \(MAX_BLOCKS\), got 257"
    with pytest.raises(InvalidArchError, match=message):
        ArchSpec.from_json(json.dumps(_mg_list(spec.MAX_BLOCKS + 1)))
    with pytest.raises(InvalidArchError, match=message):
        ArchSpec.from_model_garden([tuple(t) for t in _mg_list(spec.MAX_BLOCKS + 1)])
    with pytest.raises(InvalidArchError, match=message):
        ArchSpec((SPINENET_49.blocks[-1],) * (spec.MAX_BLOCKS + 1 - 15) + SPINENET_49.blocks[:15])


def test_twenty_thousand_blocks_are_refused_before_any_block_is_read(monkeypatch):
    text = json.dumps({"stem": [2, 0, 0, 0], "blocks": _mg_list(20_000)})
    assert len(text) < spec.MAX_SPEC_BYTES  # the block count, not the size, refuses it
    built = []
    monkeypatch.setattr(spec, "BlockSpec", lambda *a: built.append(a))
    with pytest.raises(InvalidArchError, match="too many blocks: .* got 20,000"):
        ArchSpec.from_json(text)
    assert built == []


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"blocks": ' + "[" * 100_000 + "]" * 100_000 + "}", r"nested too deeply: at most 32 .*\(MAX_JSON_DEPTH\)"),
        ("[" * (spec.MAX_JSON_DEPTH + 1) + "]" * (spec.MAX_JSON_DEPTH + 1), "nested too deeply"),
        ("[" * spec.MAX_JSON_DEPTH + "]" * spec.MAX_JSON_DEPTH, "expected an object or a"),  # deep enough to parse
        ('{"blocks": "' + "[" * 1000 + '\\"[{"}', "expected a list of blocks"),  # brackets in a string don't nest
        ('"' + '\\"' * 100_000, "malformed JSON"),  # an unterminated string of escaped quotes: one pass, not n^2
        (" " * (spec.MAX_SPEC_BYTES + 1), r"too long: at most 1,048,576 characters \(MAX_SPEC_BYTES\), got 1,048,577"),
    ],
    ids=["deep", "one-too-deep", "deepest-parsed", "brackets-in-string", "escaped-quotes", "too-long"],
)
def test_json_beyond_a_limit_is_refused_before_it_is_parsed(text, message):
    with pytest.raises(InvalidArchError, match=message):
        ArchSpec.from_json(text)


def test_spec_files_beyond_a_limit_are_refused(tmp_path):
    from search_space import load_arch

    path = tmp_path / "big.json"
    path.write_text(SPINENET_49.to_json() + " " * spec.MAX_SPEC_BYTES)
    with pytest.raises(InvalidArchError, match=r"big.json: spec file too large: at most 1,048,576 bytes .*got 1,0"):
        load_arch(str(path))
    path.write_text(json.dumps(_mg_list(spec.MAX_BLOCKS)), encoding="utf-8")
    assert load_arch(str(path)).key == SPINENET_49.key


def _random_spec(n: int, shape: str, seed: int = 0) -> ArchSpec:
    """SpineNet-49's blocks, then ("appended") or among ("interleaved") random blocks; or ("free") n random blocks
    with one output per L3..L7. Random blocks take random earlier parents, mostly recent ones."""
    rng = np.random.default_rng(seed)
    fns = ("bottleneck", "residual")
    if shape == "free":
        outputs = dict(zip(sorted(rng.choice(n, 5, replace=False).tolist()), rng.permutation([3, 4, 5, 6, 7])))
        places: dict[int, int] = {}
    else:
        spread = range(16) if shape == "appended" else sorted(rng.choice(n, 16, replace=False).tolist())
        places, outputs = {p: k for k, p in enumerate(spread)}, {}
    offset = {0: 0, 1: 1}  # offset in SPINENET_49_TUPLES -> offset here
    blocks = []
    for i in range(n):
        if i in places:
            lvl, fn, (a, c), out = SPINENET_49_TUPLES[places[i]]
            blocks.append(B(lvl, fn, (offset[a], offset[c]), out))
            offset[2 + places[i]] = 2 + i
            continue
        hi = 2 + i
        a = int(rng.integers(max(0, hi - 4), hi)) if rng.random() < 0.6 else int(rng.integers(0, hi))
        c = int(rng.integers(0, hi - 1))
        level = int(outputs.get(i, rng.integers(2, 8)))
        out = i in outputs or (level == 2 and rng.random() < 0.3)
        blocks.append(B(level, fns[int(rng.integers(0, 2))], (a, c + (c >= a)), bool(out)))
    return ArchSpec(tuple(blocks))


def _lines_run(fn) -> int:
    """How many lines of search_space/spec.py `fn()` executes: its work, whatever the machine's load."""
    count = 0

    def local(frame, event, arg):
        nonlocal count
        count += event == "line"
        return local

    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: local if frame.f_code.co_filename == spec.__file__ else None)
    try:
        fn()
    finally:
        sys.settrace(previous)
    return count


@pytest.mark.parametrize(
    "shape, n",
    [("appended", 500), ("interleaved", 500), ("free", 500),
     pytest.param("interleaved", 2000, marks=pytest.mark.slow), pytest.param("free", 2000, marks=pytest.mark.slow)],
)
def test_canonical_form_work_grows_about_linearly(monkeypatch, shape, n):
    # The old canonicalisation rebuilt the network for every dead block it tried: 4x the blocks cost 16x the work
    # (2,000 blocks 19 s, 8,000 blocks 349 s). n log n gives a little over 4x.
    monkeypatch.setattr(spec, "MAX_BLOCKS", 8 * n)
    small, large = _random_spec(n, shape), _random_spec(4 * n, shape)  # fresh: nothing cached, network included
    ratio = _lines_run(large.canonical) / _lines_run(small.canonical)
    assert ratio < 6, ratio
    assert len(small.dead_blocks()) > n // 4 and len(large.dead_blocks()) > n
    assert small.canonical().key == small.key and large.canonical().key == large.key
