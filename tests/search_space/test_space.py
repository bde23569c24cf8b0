"""SearchSpace: the decision encoding, its invariants, and the paper's size counts."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from search_space import (
    FAMILIES,
    SPINENET_49,
    ArchSpec,
    BlockSpec,
    Family,
    InvalidArchError,
    InvalidDecisionError,
    SearchSpace,
    get_family,
)

FIXED = ["r35-sp18", "r23-sp30", "r14-sp39", "r0-sp53"]


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("window", [5, 4, None])
def test_random_sequences_decode_to_valid_archs_and_round_trip(family, window):
    space = SearchSpace(family, window=window)
    rng = np.random.default_rng(1234)
    f = space.family
    for _ in range(1000 if window == 5 else 200):
        d = space.random(rng)
        arch = space.decode(d)
        assert isinstance(arch, ArchSpec)  # validated on construction
        assert len(arch.blocks) == f.num_blocks
        assert [b.level for b in arch.blocks if b.is_output] != []
        e = space.encode(arch)
        assert space.decode(e) == arch
        if not f.level_shifts:
            assert e == d  # a bijection without level adjustments
        else:
            assert space.encode(space.decode(e)) == e  # the canonical sequence is a fixed point


@pytest.mark.parametrize("family", FIXED)
def test_fixed_families_keep_their_levels_and_block_types(family):
    space = SearchSpace(family)
    f = space.family
    rng = np.random.default_rng(0)
    for _ in range(200):
        arch = space.decode(space.random(rng))
        levels = sorted(b.level for b in arch.blocks)
        expected = sorted(lvl for lvl, n in zip((2, 3, 4, 5, 6, 7), f.levels) for _ in range(n))
        assert levels == expected
        assert {b.block_fn for b in arch.blocks} == {"bottleneck"}
        assert arch.stem == f.stem


def test_spinenet49_lies_in_the_spinenet49_space():
    for window in (5, 4):
        space = SearchSpace("spinenet49", window=window)
        d = space.encode(SPINENET_49)
        back = space.decode(d)
        assert back.key == SPINENET_49.key
        assert back == SPINENET_49.canonical()
        assert space.encode(back) == d
    assert not SearchSpace("r0-sp53").contains(SPINENET_49)  # it uses residual blocks and shifted levels


def test_a_spec_is_in_a_family_only_if_its_canonical_form_has_the_familys_blocks(monkeypatch):
    from search_space import spec
    from search_space.seeds import SPINENET_49_TUPLES

    space = SearchSpace("spinenet49")
    # Model Garden's SpineNet-49: 16 blocks, the 16th dead, so its canonical form has the family's 15.
    assert len(SPINENET_49.blocks) == 16 and len(SPINENET_49.canonical().blocks) == 15
    assert space.contains(SPINENET_49)
    # With 8,001 more dead blocks (the limit lifted) its canonical form is the same 15 blocks.
    monkeypatch.setattr(spec, "MAX_BLOCKS", 10_000)
    long = ArchSpec(SPINENET_49.blocks + (BlockSpec(2, "residual", (2, 3), False),) * 8_001)
    assert long.canonical() == SPINENET_49.canonical() and long.key == SPINENET_49.key
    assert space.contains(long) and space.encode(long) == space.encode(SPINENET_49)
    # A dead L6 block put in before the L5 output consumes block 9, which that output merged: another network,
    # whose canonical form drops both and has 14 blocks. In no family.
    shift = [(lvl, fn, tuple(o + (o >= 12) for o in offsets), out) for lvl, fn, offsets, out in SPINENET_49_TUPLES]
    arch = ArchSpec.from_model_garden(shift[:10] + [(6, "residual", (10, 11), False)] + shift[10:])
    assert arch.key != SPINENET_49.key and len(arch.canonical().blocks) == 14
    assert not any(SearchSpace(name).contains(arch) for name in FAMILIES)


def test_spinenet49_shifts_stay_within_the_paper_set():
    space = SearchSpace("spinenet49")
    d = space.encode(SPINENET_49)
    shifts = [space.family.level_shifts[d[i]] for i, s in enumerate(space.steps) if s.label.endswith("level_shift")]
    assert len(shifts) == 10 and set(shifts) <= {-1, 0, 1, 2}


def test_windowed_intermediates_only_take_recent_parents():
    space = SearchSpace("r0-sp53", window=4)
    rng = np.random.default_rng(3)
    m = 2
    for _ in range(200):
        arch = space.decode(space.random(rng))
        for p, b in enumerate(arch.blocks):
            if not b.is_output:
                assert min(b.input_offsets) >= m + p - 4


def test_decision_errors():
    space = SearchSpace("r0-sp53")
    d = list(space.encode(space.decode([0] * len(space.steps))))
    with pytest.raises(InvalidDecisionError, match="too short"):
        space.decode(d[:-1])
    with pytest.raises(InvalidDecisionError, match="too long"):
        space.decode(d + [0])
    bad = list(d)
    bad[0] = 5
    with pytest.raises(InvalidDecisionError, match=r"out of range at 'output_order.0': expected 0..4, got 5"):
        space.decode(bad)
    bad[0] = -1
    with pytest.raises(InvalidDecisionError, match="out of range"):
        space.decode(bad)
    bad[0] = 1.5
    with pytest.raises(InvalidDecisionError, match="expected an integer"):
        space.decode(bad)
    with pytest.raises(InvalidDecisionError) as info:
        space.decode(d[:3] + [99] + d[4:])
    assert info.value.path == "decisions[3]"
    # numpy integers are fine
    assert space.decode(np.asarray(d)) == space.decode(d)


def _arch_with(tuples):
    return ArchSpec.from_model_garden(tuples)


def test_archs_outside_the_space_are_named():
    space = SearchSpace("r0-sp53")
    with pytest.raises(InvalidArchError, match="has 15 blocks .* got 16"):
        space.encode(SPINENET_49)  # 16 blocks; its 15-block canonical form uses residual blocks
    with pytest.raises(InvalidArchError, match="stem .* differs"):
        space.encode(SearchSpace("r35-sp18").decode([0] * len(SearchSpace("r35-sp18").steps)))
    base = space.decode([0] * len(space.steps))
    blocks = list(base.blocks)
    blocks[0] = BlockSpec(blocks[0].level, "residual", blocks[0].input_offsets, False)
    with pytest.raises(InvalidArchError, match=r"blocks\[0\]\.block_fn: the r0-sp53 space does not search"):
        space.encode(ArchSpec(tuple(blocks)))
    # Levels reachable only with shifts.
    blocks = list(base.blocks)
    blocks[0] = BlockSpec(7, "bottleneck", blocks[0].input_offsets, False)
    with pytest.raises(InvalidArchError, match="intermediate levels .* not in the r0-sp53 space"):
        space.encode(ArchSpec(tuple(blocks)))
    # ... and not even with them: ten L7 intermediate blocks.
    blocks = [BlockSpec(7, "bottleneck", b.input_offsets, False) for b in base.blocks[:10]] + list(base.blocks[10:])
    with pytest.raises(InvalidArchError, match="no assignment of the base levels"):
        SearchSpace("spinenet49").encode(ArchSpec(tuple(blocks)))
    # A parent outside the window.
    blocks = list(base.blocks)
    blocks[7] = BlockSpec(blocks[7].level, blocks[7].block_fn, (0, 1), False)
    with pytest.raises(InvalidArchError, match=r"blocks\[7\]\.input_offsets: parent 0 lies outside the window"):
        space.encode(ArchSpec(tuple(blocks)))
    # An output among the intermediates.
    blocks = list(base.blocks)
    blocks[0], blocks[10] = (
        BlockSpec(blocks[10].level, "bottleneck", (0, 1), True),
        BlockSpec(blocks[0].level, "bottleneck", (0, 1), False),
    )
    with pytest.raises(InvalidArchError, match=r"blocks\[0\]\.is_output: .* must be an intermediate block"):
        space.encode(ArchSpec(tuple(blocks)))


def test_unknown_family_and_bad_window():
    with pytest.raises(LookupError, match="unknown family 'r50'; expected one of r35-sp18"):
        get_family("r50")
    with pytest.raises(ValueError, match="window must be an integer >= 2"):
        SearchSpace("r0-sp53", window=1)
    assert get_family("SpineNet-49").name == "spinenet49"


def test_choice_mask_matches_num_choices():
    space = SearchSpace("spinenet49")
    mask = space.choice_mask()
    assert mask.shape == (len(space.steps), space.max_choices)
    assert mask.sum(axis=1).tolist() == list(space.num_choices)
    assert space.label(0) == "output_order.0"
    assert all(n > 1 for n in space.num_choices)


# --------------------------------------------------------------------------------------------------- sizes
def test_sizes_of_every_family_match_the_paper_formulas():
    for name, f in ((n, FAMILIES.load(n)) for n in FAMILIES):
        s = SearchSpace(name).sizes()
        n = f.num_blocks
        m = len(f.stem_levels)
        assert (s["N"], s["m"]) == (n, m)
        assert s["permutations"] == math.factorial(n - 5) * math.factorial(5)
        assert s["connections"] == math.prod(math.comb(i, 2) for i in range(m, n + m))
        assert s["level_adjustments"] == (4 ** (n - 5) if f.level_shifts else 1)
        assert s["block_types"] == (2**n if f.search_block_fns else 1)
        total = s["permutations"] * s["connections"] * s["level_adjustments"] * s["block_types"]
        assert s["log10_total"] == pytest.approx(math.log10(total))
        if not f.level_shifts:
            # The encoding is a bijection: its size is the exact number of distinct specs.
            assert s["decision_sequences"] == s["distinct_permutations"] * s["connections_windowed"]
    assert (SearchSpace("r35-sp18").sizes()["N"], SearchSpace("r35-sp18").sizes()["m"]) == (6, 4)
    assert SearchSpace("spinenet49").sizes()["N"] == 15


TINY = Family("tiny", stem=(2, 0, 0, 0), levels=(1, 1, 1, 1, 1, 1))  # N = 6: one L2 intermediate, 5 outputs
TINY2 = Family("tiny2", stem=(2, 0, 0, 0), levels=(2, 2, 1, 1, 1, 1))  # N = 8: intermediates L2, L2, L3


def _brute_permutations(f: Family) -> tuple[int, int]:
    """Orderings of labelled blocks with the intermediate ones first, and the distinct level sequences."""
    inter = list(f.intermediate_levels)
    outs = [3, 4, 5, 6, 7]
    labelled = 0
    distinct = set()
    for p in itertools.permutations(range(len(inter))):
        for q in itertools.permutations(range(5)):
            labelled += 1
            distinct.add(tuple(inter[i] for i in p) + tuple(outs[j] for j in q))
    return labelled, len(distinct)


def _brute_connections(f: Family, window: int | None) -> int:
    """Counts every assignment of two distinct earlier parents to every block, by enumeration."""
    m, n, n_int = len(f.stem_levels), f.num_blocks, f.num_blocks - 5
    per_block = []
    for p in range(n):
        pairs = [
            (a, b)
            for a in range(m + p)
            for b in range(a + 1, m + p)
            if p >= n_int or window is None or a >= m + p - window
        ]
        per_block.append(pairs)
    return sum(1 for _ in itertools.product(*per_block))


@pytest.mark.parametrize("family, window", [(TINY, None), (TINY, 2), (TINY2, 3)])
def test_size_formulas_against_brute_force(family, window):
    space = SearchSpace(family, window=window)
    s = space.sizes()
    labelled, distinct = _brute_permutations(family)
    assert s["permutations"] == labelled
    assert s["distinct_permutations"] == distinct
    if window is None or family is TINY:
        assert s["connections"] == _brute_connections(family, None)
    assert s["connections_windowed"] == _brute_connections(family, window)


def test_tiny_space_decodes_every_sequence_to_a_distinct_arch():
    # Exhaustive over the permutation decisions and the first connection decisions of a tiny space.
    space = SearchSpace(TINY2, window=3)
    rng = np.random.default_rng(7)
    seen = {}
    steps = [i for i, s in enumerate(space.steps) if not s.label.endswith("input_offsets")]
    rest = space.random(rng)
    for values in itertools.product(*(range(space.num_choices[i]) for i in steps)):
        d = list(rest)
        for i, v in zip(steps, values):
            d[i] = v
        arch = space.decode(d)
        assert arch not in seen
        seen[arch] = tuple(d)
        assert space.encode(arch) == tuple(d)
    assert len(seen) == space.sizes()["distinct_permutations"]
