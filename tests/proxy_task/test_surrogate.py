"""The surrogate evaluator: deterministic, structural, interacting, with a known optimum; its trials' curves."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from proxy_task.config import DataConfig, ProxyConfig, SurrogateConfig
from proxy_task.evaluator import TrialContext, build_evaluator
from proxy_task.result import ProxyResult
from proxy_task.surrogate import SurrogateEvaluator, SurrogateTrialEvaluator, curve_shape, structural_features
from search_space import SPINENET_49, SearchSpace
from search_space.cost import Scaling, count_cost


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


def test_params_and_flops_are_the_paper_proxys_detector(space):
    ev = SurrogateEvaluator(target_seed=0)
    results = [ev.evaluate(space.decode(d)) for d in randoms(space, 50)]
    params = [r.params for r in results]
    flops = [r.flops for r in results]
    assert all(isinstance(p, int) and p > 0 for p in params + flops)
    assert len(set(flops)) > 40
    # The defaults are the paper's proxy (the paper preset's: ProxyConfig's scaling at 512 px) on COCO's 91 classes.
    small = ev.evaluate(SPINENET_49)
    paper = ProxyConfig(image_size=512).cost(SPINENET_49, 91)
    assert (small.params, small.flops) == (paper.params, paper.flops) == (1_989_655, 5_873_750_685)
    big = SurrogateEvaluator(target_seed=0, image_size=1024).evaluate(SPINENET_49)
    assert big.params == small.params and 3.9 < big.flops / small.flops < 4.1
    wide = SurrogateEvaluator(target_seed=0, filter_size_scale=0.5, resample_alpha=0.5, endpoints_num_filters=128)
    want = count_cost(SPINENET_49, image_size=512, num_classes=91, scaling=Scaling(0.5, 0.5, 1, 128, 4, 128))
    assert (wide.evaluate(SPINENET_49).params, wide.evaluate(SPINENET_49).flops) == (want.params, want.flops)


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
    with pytest.raises(ValueError, match="image_size: expected a positive multiple of 128, got 200"):
        SurrogateEvaluator(image_size=200)
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


# ---------------------------------------------------------------------------------------------- trial evaluator
def trial(settings=None, context=None, **proxy):
    proxy = {"train_steps": 800, "warmup_steps": 20, "log_every": 100, **proxy}
    return SurrogateTrialEvaluator(settings or SurrogateConfig(), ProxyConfig(**proxy), context or TrialContext())


class Recorder:
    """A `Reporter` that keeps every report and asks to stop at `stop_at` (None: never)."""

    def __init__(self, stop_at=None):
        self.stop_at, self.reports = stop_at, []

    def __call__(self, step, metrics):
        self.reports.append((step, dict(metrics)))
        return step == self.stop_at


def test_the_registry_builds_the_trial_evaluator_as_the_search_job_builds_the_landscape():
    ev = build_evaluator("surrogate", settings=SurrogateConfig(), proxy=ProxyConfig(), context=TrialContext())
    assert isinstance(ev, SurrogateTrialEvaluator) and not ev.uses_tensorflow
    context = TrialContext(family="r0-sp53", window=4, search_seed=7)
    ev = trial(SurrogateConfig(noise=0.03), context)
    assert ev.landscape.to_dict() == SurrogateEvaluator(target_seed=7, noise=0.03, family="r0-sp53",
                                                        window=4).to_dict()
    assert trial(SurrogateConfig(target_seed=2), context).landscape.to_dict()["target_seed"] == 2


def test_the_reports_follow_the_schedule():
    ev = trial(train_steps=450, log_every=50, eval_at_steps=(100, 225), warmup_steps=30, batch_size=4)
    rec = Recorder()
    result = ev.evaluate(SPINENET_49, seed=0, report=rec)
    assert [s for s, _ in rec.reports] == [50, 100, 150, 200, 225, 250, 300, 350, 400, 450]
    train_keys = {"loss", "learning_rate", "images_per_s"}
    for step, metrics in rec.reports:
        assert set(metrics) == (train_keys | {"ap", "ap_noiseless"} if step in (100, 225, 450) else train_keys)
        assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())
        assert metrics["images_per_s"] == 4 / 0.01  # duration_s 0: the nominal 0.01 s per step
    assert set(result.metrics) == {"ap", "ap_noiseless", "distance", "steps", "train_loss"}
    assert result.ok and result.stopped_at is None and result.metrics["steps"] == 450.0
    assert result.metrics["ap"] == rec.reports[-1][1]["ap"]
    assert result.metrics["train_loss"] == rec.reports[-1][1]["loss"]
    # What a real trial of this proxy config stores: tests/proxy_task/test_trial.py's SpineNet-49 at 128 px on the
    # synthetic set's 5 classes.
    assert (result.params, result.flops) == (1_543_057, 214_951_471)
    json.dumps(result.to_dict())
    # The log steps need not divide train_steps: the last step always reports.
    rec = Recorder()
    trial(train_steps=130, log_every=50).evaluate(SPINENET_49, seed=0, report=rec)
    assert [s for s, _ in rec.reports] == [50, 100, 130]


def test_a_trial_reports_the_cost_a_real_trial_of_its_proxy_stores(space, tmp_path):
    # Whatever the landscape's own scale: a search stores the proxy's params and FLOPs, surrogate or not.
    landscape = SurrogateEvaluator(target_seed=0, image_size=1024, filter_size_scale=1.0)
    folder = DataConfig(kind="dir", path=str(tmp_path / "not-made"))  # no manifest yet: COCO's 91 classes
    proxy = ProxyConfig(data=folder, image_size=256, filter_size_scale=0.5, head_num_convs=2, activation="relu",
                        train_steps=100, warmup_steps=5, log_every=50)
    ev = SurrogateTrialEvaluator(SurrogateConfig(), proxy, TrialContext(), landscape=landscape)
    assert ev.num_classes == 91
    for d in randoms(space, 5):
        arch = space.decode(d)
        result, want = ev.evaluate(arch, seed=0), proxy.cost(arch, 91)
        assert (result.params, result.flops) == (want.params, want.flops)
        assert result.flops != landscape.evaluate(arch).flops


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_the_learning_rate_follows_the_proxy_schedule(schedule):
    ev = trial(train_steps=400, log_every=10, warmup_steps=40, learning_rate=0.01, lr_schedule=schedule)
    rec = Recorder()
    ev.evaluate(SPINENET_49, seed=0, report=rec)
    lr = {s: m["learning_rate"] for s, m in rec.reports}
    peak = 0.01 if schedule == "constant" else 0.01 * 0.5 * (1 + np.cos(np.pi * 40 / 400))
    assert lr[10] == pytest.approx(peak / 4) and lr[20] == pytest.approx(peak / 2) and lr[40] == pytest.approx(peak)
    if schedule == "cosine":
        assert lr[200] == pytest.approx(0.005) and lr[400] == pytest.approx(0.0, abs=1e-12)
        assert all(lr[s] > lr[s + 10] for s in range(40, 400, 10))
    else:
        assert all(lr[s] == 0.01 for s in range(40, 401, 10))


def test_the_ap_at_full_steps_is_the_landscape_value_and_grows_with_steps(space):
    ev = trial(SurrogateConfig(full_steps=800), eval_at_steps=(100, 200, 300, 400, 500, 600, 700))
    for d in randoms(space, 10):
        arch = space.decode(d)
        rec = Recorder()
        result = ev.evaluate(arch, seed=0, report=rec)
        assert result.metrics["ap"] == pytest.approx(ev.landscape.ap(arch), abs=1e-12)
        assert result.metrics["ap"] == pytest.approx(ev.expected_ap(arch, 800), abs=1e-12)
        aps = [m["ap"] for _, m in rec.reports if "ap" in m]
        losses = [m["loss"] for _, m in rec.reports]
        assert len(aps) == 8 and all(a < b for a, b in zip(aps, aps[1:])), aps
        assert all(a > b for a, b in zip(losses, losses[1:])), losses
        assert ev.expected_ap(arch, 0) == 0.0 and ev.expected_ap(arch, 3200) > result.metrics["ap"]
    assert curve_shape(1.0, 4.75) == pytest.approx(1.0) and curve_shape(0.25, 4.75) == pytest.approx(0.70, abs=0.01)
    assert curve_shape(0.5, 1e-12) == 0.5  # the r -> 0 limit


def test_with_noise_the_final_ap_is_the_landscapes_noisy_ap_for_the_same_seed(space):
    ev = trial(SurrogateConfig(noise=0.02, target_seed=4))
    arch = space.decode(randoms(space, 1)[0])
    for seed in range(5):
        assert ev.evaluate(arch, seed=seed).metrics["ap"] == ev.landscape.evaluate(arch, seed=seed).metrics["ap"]
    aps = {ev.evaluate(arch, seed=s).metrics["ap"] for s in range(5)}
    assert len(aps) == 5


def test_the_same_arch_and_seed_give_the_same_curve(space):
    arch = space.decode(randoms(space, 1, seed=3)[0])
    runs = []
    for _ in range(2):
        rec = Recorder()
        ev = trial(SurrogateConfig(noise=0.02), eval_at_steps=(200, 400))
        runs.append((ev.evaluate(arch, seed=5, report=rec).metrics, rec.reports))
    assert runs[0] == runs[1]
    rec = Recorder()
    trial(SurrogateConfig(noise=0.02), eval_at_steps=(200, 400)).evaluate(arch, seed=6, report=rec)
    assert [m.get("ap") for _, m in rec.reports] != [m.get("ap") for _, m in runs[0][1]]


@pytest.mark.parametrize("stop_at, latest_ap_step", [(300, 200), (400, 400), (100, None), (800, 800)])
def test_a_stop_ends_the_trial_at_that_report_with_the_latest_ap(stop_at, latest_ap_step):
    ev = trial(SurrogateConfig(noise=0.02), eval_at_steps=(200, 400))
    rec = Recorder(stop_at=stop_at)
    result = ev.evaluate(SPINENET_49, seed=1, report=rec)
    assert result.stopped_at == stop_at and result.error is None
    assert rec.reports[-1][0] == stop_at  # nothing after the stop
    assert result.metrics["steps"] == stop_at and result.metrics["train_loss"] == rec.reports[-1][1]["loss"]
    if latest_ap_step is None:
        assert "ap" not in result.metrics and not result.ok
    else:
        assert result.metrics["ap"] == dict(rec.reports)[latest_ap_step]["ap"] and result.ok
        assert result.metrics["ap_noiseless"] == pytest.approx(ev.expected_ap(SPINENET_49, latest_ap_step))


def _ranking(ev, archs, steps):
    return list(np.argsort([ev.expected_ap(a, steps) for a in archs], kind="stable"))


def test_without_a_rate_spread_every_step_ranks_alike(space):
    archs = [space.decode(d) for d in randoms(space, 30, seed=4)]
    ev = trial(SurrogateConfig(rate_spread=0.0))
    assert len({ev.rate(a) for a in archs}) == 1
    full = _ranking(ev, archs, 800)
    for steps in (25, 100, 200, 400, 1600, 3200):
        assert _ranking(ev, archs, steps) == full
    # The noisy run of one seed ranks alike too: the noise scales with the curve.
    noisy = trial(SurrogateConfig(rate_spread=0.0, noise=0.02), eval_at_steps=(200,))
    curves = []
    for a in archs:
        rec = Recorder()
        noisy.evaluate(a, seed=0, report=rec)
        curves.append([m["ap"] for _, m in rec.reports if "ap" in m])
    assert list(np.argsort([c[0] for c in curves], kind="stable")) == list(
        np.argsort([c[1] for c in curves], kind="stable"))


def test_a_rate_spread_makes_early_rankings_differ_from_late_ones(space):
    archs = [space.decode(d) for d in randoms(space, 30, seed=4)]
    ev = trial(SurrogateConfig(rate_spread=0.5))
    rates = [ev.rate(a) for a in archs]
    assert len(set(rates)) == 30 and 0.2 < np.std(np.log(rates)) < 0.8
    assert _ranking(ev, archs, 200) != _ranking(ev, archs, 3200)
    # The landscape's value at full_steps does not depend on the spread; the rate is drawn apart from it.
    assert [ev.expected_ap(a, 800) for a in archs] == pytest.approx([ev.landscape.ap(a) for a in archs], abs=1e-12)
    assert ev.rate(archs[0]) == trial(SurrogateConfig(rate_spread=0.5, noise=0.05)).rate(archs[0])
    assert ev.rate(archs[0]) != trial(SurrogateConfig(rate_spread=0.5, target_seed=1)).rate(archs[0])


def test_the_duration_is_spent_in_proportion_to_the_steps():
    ev = trial(SurrogateConfig(duration_s=0.2), train_steps=100, log_every=10, warmup_steps=5, batch_size=8)
    rec = Recorder()
    full = ev.evaluate(SPINENET_49, seed=0, report=rec)
    assert full.wall_s >= 0.2  # sleeps never end early
    assert rec.reports[0][1]["images_per_s"] == pytest.approx(8 * 100 / 0.2)
    half = ev.evaluate(SPINENET_49, seed=0, report=Recorder(stop_at=50))
    assert half.stopped_at == 50 and 0.3 < half.wall_s / full.wall_s < 0.8, (half.wall_s, full.wall_s)


def test_simulated_failures_stay_as_the_landscapes(space):
    landscape = SurrogateEvaluator(target_seed=0, failure_rate=0.5)
    ev = SurrogateTrialEvaluator(SurrogateConfig(full_steps=100),
                                 ProxyConfig(train_steps=100, warmup_steps=5, log_every=50), TrialContext(),
                                 landscape=landscape)
    failed = 0
    for d in randoms(space, 20):
        arch = space.decode(d)
        rec = Recorder()
        got, want = ev.evaluate(arch, seed=2, report=rec), landscape.evaluate(arch, seed=2)
        assert got.error == want.error and got.ok == want.ok
        if want.error:
            failed += 1
            assert got.metrics == want.metrics == {"distance": want.metrics["distance"]}
            assert [s for s, _ in rec.reports] == [50]  # it failed in its last step
        else:
            assert got.metrics["ap"] == want.metrics["ap"]
    assert 4 < failed < 16


def test_trial_errors():
    ev = trial()
    with pytest.raises(TypeError, match="expected an ArchSpec, got tuple"):
        ev.evaluate((1, 2), seed=0)
    with pytest.raises(ValueError, match="seed: expected an integer >= 0"):
        ev.evaluate(SPINENET_49, seed=-1)
    with pytest.raises(ValueError, match="steps: expected a number >= 0, got -1"):
        ev.expected_ap(SPINENET_49, -1)
