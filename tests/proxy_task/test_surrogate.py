"""The surrogate evaluator: deterministic, structural, interacting, with a known optimum."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from proxy_task.result import ProxyResult
from proxy_task.surrogate import SurrogateEvaluator, structural_features
from search_space import SPINENET_49, SearchSpace


@pytest.fixture(scope="module")
def ev():
    return SurrogateEvaluator(target_seed=0)


@pytest.fixture(scope="module")
def space():
    return SearchSpace("spinenet49")


def randoms(space, n, seed=0):
    rng = np.random.default_rng(seed)
    return [space.random(rng) for _ in range(n)]


def test_results_are_deterministic_and_well_formed(ev, space):
    d = randoms(space, 1)[0]
    a = ev.evaluate(space.decode(d))
    b = SurrogateEvaluator(target_seed=0).evaluate(space.decode(d))
    assert isinstance(a, ProxyResult) and a.ok and a.error is None
    assert a.metrics == b.metrics and a.params == b.params and a.flops == b.flops
    assert 0.0 <= a.metrics["ap"] <= 1.0
    assert a.metrics["ap"] == a.metrics["ap_noiseless"]
    json.dumps(a.to_dict())


def test_the_optimum_is_attained_by_the_target_and_nothing_beats_it(ev, space):
    assert ev.optimum_value == 0.40
    assert space.decode(ev.optimum_decisions) == ev.optimum_arch
    best = ev.evaluate(ev.optimum_arch)
    assert best.metrics["ap"] == pytest.approx(ev.optimum_value, abs=1e-12)
    assert best.metrics["distance"] == pytest.approx(0.0, abs=1e-9)
    aps = np.array([ev.ap(space.decode(d)) for d in randoms(space, 500)])
    assert aps.max() < ev.optimum_value and aps.min() >= 0.05
    # Not a flat landscape: random architectures spread out.
    assert aps.std() > 0.01


def test_the_target_seed_draws_the_optimum():
    a, b = SurrogateEvaluator(target_seed=0), SurrogateEvaluator(target_seed=1)
    assert a.optimum_decisions != b.optimum_decisions
    assert a.ap(b.optimum_arch) < a.optimum_value


def test_the_optimum_is_known_in_every_family():
    for family in ("r35-sp18", "r0-sp53"):
        ev = SurrogateEvaluator(target_seed=3, family=family)
        assert ev.ap(ev.optimum_arch) == pytest.approx(ev.optimum_value)
        space = SearchSpace(family)
        assert max(ev.ap(space.decode(d)) for d in randoms(space, 300)) < ev.optimum_value


def test_the_score_depends_on_the_network_built_not_its_spelling():
    ev = SurrogateEvaluator(target_seed=0, noise=0.05)
    assert SPINENET_49 != SPINENET_49.canonical() and SPINENET_49.key == SPINENET_49.canonical().key
    assert ev.evaluate(SPINENET_49).metrics == ev.evaluate(SPINENET_49.canonical()).metrics


def test_decisions_interact(ev, space):
    """Changing two decisions together does not add up the effects of changing each alone."""
    rng = np.random.default_rng(1)
    nc = space.num_choices
    interactions = []
    for d in randoms(space, 60, seed=2):
        i, j = rng.choice(len(nc), size=2, replace=False)
        di, dj, dij = list(d), list(d), list(d)
        di[i] = dij[i] = (d[i] + 1) % nc[i]
        dj[j] = dij[j] = (d[j] + 1) % nc[j]
        f = [ev.ap(space.decode(x)) for x in (d, di, dj, dij)]
        interactions.append(abs(f[3] - f[1] - f[2] + f[0]))
    interactions = np.array(interactions)
    assert (interactions > 1e-4).mean() > 0.3, interactions


def test_features_come_from_the_live_network():
    f = structural_features(SPINENET_49)
    assert f.shape == (64,)
    counts = f[:12].reshape(6, 2)
    live_intermediate = [b for b in SPINENET_49.canonical().blocks if not b.is_output]
    assert counts.sum() == len(live_intermediate)
    edges = f[12:48]
    assert edges.sum() >= 2 * len(SPINENET_49.canonical().blocks)  # two parents each, plus merged inputs


def test_noise_is_seeded_and_centred(space):
    ev = SurrogateEvaluator(target_seed=0, noise=0.02)
    arch = space.decode(randoms(space, 1)[0])
    clean = ev.ap(arch)
    assert ev.evaluate(arch).metrics == ev.evaluate(arch, seed=0).metrics
    values = np.array([ev.evaluate(arch, seed=s).metrics["ap"] for s in range(400)])
    assert len(set(values)) == 400
    assert abs(values.mean() - clean) < 0.005 and 0.015 < values.std() < 0.025
    assert SurrogateEvaluator(target_seed=0, noise=0.02, seed=5).evaluate(arch).metrics["ap"] == values[5]


def test_params_and_flops_are_structural(space):
    ev = SurrogateEvaluator(target_seed=0)
    results = [ev.evaluate(space.decode(d)) for d in randoms(space, 50)]
    params = [r.params for r in results]
    flops = [r.flops for r in results]
    assert all(isinstance(p, int) and p > 0 for p in params + flops)
    assert len(set(flops)) > 40
    big = SurrogateEvaluator(target_seed=0, image_size=1024).evaluate(SPINENET_49)
    small = ev.evaluate(SPINENET_49)
    assert big.params == small.params and 3.5 < big.flops / small.flops < 4.5


def test_simulated_failures():
    ev = SurrogateEvaluator(target_seed=0, failure_rate=0.5)
    space = ev.space
    results = [ev.evaluate(space.decode(d)) for d in randoms(space, 200)]
    failed = [r for r in results if not r.ok]
    assert 70 < len(failed) < 130
    assert all(r.error == "surrogate: simulated failure" and "ap" not in r.metrics for r in failed)
    again = [ev.evaluate(space.decode(d)).ok for d in randoms(space, 200)]
    assert again == [r.ok for r in results]


def test_config_round_trip_and_errors():
    ev = SurrogateEvaluator(target_seed=4, noise=0.01, family="r0-sp53", window=4)
    same = SurrogateEvaluator.from_dict(json.loads(json.dumps(ev.to_dict())))
    assert same.to_dict() == ev.to_dict() and same.optimum_arch == ev.optimum_arch
    with pytest.raises(KeyError, match=r"unknown SurrogateEvaluator option\(s\) \['nosie'\]"):
        SurrogateEvaluator.from_dict({"nosie": 0.1})
    with pytest.raises(ValueError, match="SurrogateEvaluator noise: expected a finite number >= 0, got -0.1"):
        SurrogateEvaluator(noise=-0.1)
    with pytest.raises(ValueError, match=r"floor: expected a number in \[0, peak=0.4\), got 0.5"):
        SurrogateEvaluator(floor=0.5)
    with pytest.raises(LookupError, match="unknown family"):
        SurrogateEvaluator(family="r99")
    with pytest.raises(TypeError, match="expected an ArchSpec, got tuple"):
        SurrogateEvaluator().evaluate((1, 2))


def test_the_surrogate_imports_no_tensorflow():
    code = (
        "import sys, proxy_task.surrogate\n"
        "print([m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'official')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
