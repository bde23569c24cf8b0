"""Proxy calibration: the statistics on hand-made tables, the study end to end on the surrogate (whose curves give
a known ranking at every step), a resume after `kill -9`, and bad input."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy import stats

from nas.calibration.study import (
    CalibrationError,
    StudySettings,
    build_study,
    poor_arch,
    scale_decreased_arch,
)
from nas.calibration.stats import pooled_std, rank_agreement, seed_noise
from nas.config.codec import to_yaml
from search_space import SPINENET_49
from tests.nas.helpers import cfg_of, finished, spinenas


# --------------------------------------------------------------------------------------------------- statistics
def _concordance_tau(x, y):
    """Kendall's tau-a by counting pairs (no ties in these tables)."""
    pairs = list(itertools.combinations(range(len(x)), 2))
    s = sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i, j in pairs)
    return s / len(pairs)


@pytest.mark.parametrize("x, y", [
    ([0.1, 0.2, 0.3, 0.4], [0.15, 0.1, 0.35, 0.3]),  # two swaps: tau 1/3
    ([0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]),  # reversed: -1
    ([3.0, 1.0, 2.0, 5.0, 4.0, 6.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
])
def test_tau_and_rho_are_scipys_and_the_pair_count(x, y):
    a = rank_agreement(x, y, samples=500)
    assert a.tau == pytest.approx(_concordance_tau(np.array(x), np.array(y)))
    assert a.tau == pytest.approx(stats.kendalltau(x, y).statistic)
    assert a.tau_p == pytest.approx(stats.kendalltau(x, y).pvalue)
    assert a.rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert a.rho_p == pytest.approx(stats.spearmanr(x, y).pvalue)
    assert a.tau_low <= a.tau_high and a.rho_low <= a.rho_high
    assert a.n == len(x) and a.level == 0.9


def test_the_bootstrap_interval_is_seeded_and_brackets_a_clear_ranking():
    rng = np.random.default_rng(1)
    x = np.arange(12.0)
    y = x + rng.normal(0, 1.5, 12)
    a, b = rank_agreement(x, y, seed=3), rank_agreement(x, y, seed=3)
    assert a == b
    assert a.tau_low < a.tau < a.tau_high <= 1.0
    assert a.tau_low > 0  # a clear positive ranking
    perfect = rank_agreement(x, x)
    assert perfect.tau == pytest.approx(1.0) and perfect.tau_low == 1.0 and perfect.tau_p < 1e-6


def test_rank_agreement_is_undefined_for_too_few_or_constant_values():
    assert rank_agreement([0.1, 0.2], [0.2, 0.1]).tau is None
    assert rank_agreement([0.1, 0.1, 0.1], [0.1, 0.2, 0.3]).tau is None
    with pytest.raises(ValueError, match="3 proxy values but 2"):
        rank_agreement([1, 2, 3], [1, 2])


def test_seed_noise_reports_the_cv_only_above_the_minimum_mean():
    n = seed_noise([0.30, 0.19, 0.25])
    assert n.mean == pytest.approx(0.2466667) and n.std == pytest.approx(np.std([0.30, 0.19, 0.25], ddof=1))
    assert n.cv == pytest.approx(n.std / n.mean)
    low = seed_noise([0.001, 0.004, 0.0])
    assert low.cv is None and low.std > 0
    assert seed_noise([0.2]).std is None
    assert pooled_std([n, seed_noise([0.1, 0.1, 0.1])]) == pytest.approx(np.sqrt(n.std**2 / 2))


# --------------------------------------------------------------------------------------------------- the study
def test_the_hand_made_candidates_are_valid_and_distinct():
    poor, dec = poor_arch(), scale_decreased_arch()
    assert {b.level for b in poor.blocks if not b.is_output} == {7}
    levels = [b.level for b in dec.blocks]
    assert levels == sorted(levels)  # resolution only falls along the chain
    assert len({SPINENET_49.canonical().key, poor.key, dec.key}) == 3


def _surrogate_cfg(**kw):
    return cfg_of(trials=1, workers=1, proxy={"train_steps": 400, "log_every": 50, "eval_at_steps": (100, 200)},
                  **kw)


@pytest.mark.parametrize("settings, message", [
    (dict(archs=1), "--archs must be at least 3"),
    (dict(rungs=(100, 900)), "step 900 is beyond the proxy's last step"),
    (dict(rungs=(200, 100)), "must be increasing"),
    (dict(reference_steps=400), "reference fidelity equals the proxy's"),
    (dict(variance_archs=20), "--variance-archs must be between 0 and --archs"),
    (dict(reference_set=("search.trials=3",)), "changes the proxy only"),
    (dict(reference_set=("proxy.nope=1",)), "unknown key 'proxy.nope'"),
])
def test_a_study_that_cannot_be_built_is_refused(settings, message):
    with pytest.raises(CalibrationError, match=message):
        build_study(StudySettings(preset="x", **settings), _surrogate_cfg())


def test_a_study_resolves_its_rungs_reference_and_plan():
    study = build_study(StudySettings(preset="x", archs=5, repeats=3, variance_archs=2),
                        _surrogate_cfg(trial_timeout_s=300.0))
    s = study.settings
    assert s.rungs == (100, 200, 400) and s.reference_steps == 1600
    # The preset's timeout fits its proxy; the reference, 4x as long, gets 4x as much.
    assert study.proxy.search.trial_timeout_s == 300.0 and study.reference.search.trial_timeout_s == 1200.0
    assert study.proxy.proxy.eval_at_steps == (100, 200) and study.reference.proxy.train_steps == 1600
    assert [c.kind for c in study.candidates] == ["spinenet-49", "poor", "scale-decreased", "random", "random"]
    plan = study.plan
    assert len(plan) == 5 * 2 + 2 * 2
    assert [(p.candidate, p.fidelity) for p in plan[:4]] == [(0, "proxy"), (0, "reference"), (1, "proxy"),
                                                            (1, "reference")]
    assert study.variance_candidates == (0, 3)  # SpineNet-49 and a random one, not the poor one
    assert len({p.seed for p in plan if p.fidelity == "proxy"}) == len([p for p in plan if p.fidelity == "proxy"])
    # Stored and read back, the same study; its trials' fingerprints are its own, not a search's.
    from nas.calibration.study import Study
    from nas.engine.fingerprint import fingerprint

    again = Study.from_yaml(study.to_yaml())
    assert again == study and again.plan == plan
    assert study.fingerprint("proxy") != fingerprint(study.proxy) == study.base_fingerprint
    assert study.fingerprint("reference") != study.fingerprint("proxy")


def test_top_in_a_database_of_studies_alone_ranks_the_newest_studys_proxy_trials(tmp_path):
    from nas.calibration.study import KIND, Study
    from nas.cli.commands.common import describe_fingerprint, open_reader, ranking_fingerprint
    from results_db import ResultStore

    study = build_study(StudySettings(preset="x", archs=3, repeats=1, variance_archs=0), _surrogate_cfg())
    url = str(tmp_path / "r.db")
    with ResultStore(url) as store:
        store.create_search("cal", config=study.to_yaml(), fingerprint=study.fingerprint("proxy"), kind=KIND)
    with open_reader(url) as reader:
        assert reader.newest_fingerprint() is None  # searches leave studies out ...
        fp = ranking_fingerprint(reader, None, False)  # ... but `top` with nothing else ranks the study's proxy
        assert fp == study.fingerprint("proxy") and ranking_fingerprint(reader, None, True) is None
        text = describe_fingerprint(reader, fp)
        assert "calibration study cal, its proxy trials: surrogate" in text and "400 steps" in text, text
        assert Study.from_yaml(reader.open_search("cal").config) == study
        ref = describe_fingerprint(reader, study.fingerprint("reference"))
        assert "fingerprint " + study.fingerprint("reference") in ref  # no trials of it: no description to find
        from nas.cli.commands.common import _describe_stored

        stored = reader.open_search("cal").config
        assert "its reference trials: surrogate" in _describe_stored("cal", stored, study.fingerprint("reference"))
        assert _describe_stored("cal", stored, "nope") == "calibration study cal"
        with ResultStore(url) as store:
            store.create_search("old", config="")  # a search of before fingerprints: mixing stays the default
        assert ranking_fingerprint(reader, None, False) is None
        with ResultStore(url) as store:
            store.create_search("s", config=to_yaml(_surrogate_cfg()), fingerprint="fp-search")
        assert ranking_fingerprint(reader, None, False) == "fp-search"  # a search there: its fingerprint


def _preset(tmp_path, **kw):
    path = tmp_path / "surrogate.yaml"
    path.write_text(to_yaml(_surrogate_cfg(**kw)))
    return str(path)


@pytest.mark.slow
def test_the_whole_study_on_the_surrogate_gives_the_known_tau(tmp_path):
    from nas.cli.commands.common import open_reader
    from proxy_task.config import ProxyConfig
    from proxy_task.evaluator import TrialContext, build_evaluator

    db = tmp_path / "r.db"
    proc = spinenas("calibrate", "--preset", _preset(tmp_path), "--name", "cal", "--archs", "8", "--repeats", "2",
                     "--variance-archs", "2", "--db", str(db), "--seed", "4", "--target-tau", "0.6", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "calibration 'cal' finished: 18 of 18 trainings" in proc.stdout  # 8 x 2 fidelities, 2 repeats
    assert "verdict:" in proc.stdout
    shown = spinenas("calibration", "show", "cal", "--db", str(db), "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    d = json.loads(shown.stdout)
    assert d["trainings"] == {"done": 18, "total": 18, "failed": 0}
    # The expected ranking: the surrogate's noiseless AP of each candidate at each rung and at the reference.
    with open_reader(str(db)) as reader:
        from nas.calibration.study import Study

        study = Study.from_yaml(reader.open_search("cal").config)
    ev = build_evaluator("surrogate", settings=study.proxy.evaluator.get(), proxy=ProxyConfig(),
                         context=TrialContext(family="spinenet49", window=5, search_seed=study.proxy.search.seed))
    ref = [ev.expected_ap(c.arch, 1600) for c in study.candidates]
    for row in d["rungs"]:
        expected = [ev.expected_ap(c.arch, row["step"]) for c in study.candidates]
        assert [c["proxy_ap"][str(row["step"])] for c in d["candidates"]] == pytest.approx(expected)
        assert row["all"]["tau"] == pytest.approx(stats.kendalltau(expected, ref).statistic)
        assert row["all"]["rho"] == pytest.approx(stats.spearmanr(expected, ref).statistic)
        randoms = [j for j, c in enumerate(study.candidates) if c.kind == "random"]
        assert row["random"]["n"] == len(randoms) == 5
        assert row["random"]["tau"] == pytest.approx(
            stats.kendalltau([expected[j] for j in randoms], [ref[j] for j in randoms]).statistic)
        assert row["seconds_per_trial"] is not None and row["seconds_per_trial"] >= 0
    assert [c["reference_ap"] for c in d["candidates"]] == pytest.approx(ref)
    taus = [r["all"]["tau"] for r in d["rungs"]]
    good = [r["step"] for r in d["rungs"] if r["all"]["tau"] >= 0.6]
    assert d["verdict"]["good_rung"] == (good[0] if good else None)
    assert taus[-1] > taus[0]  # later rungs rank more like the reference
    # Two seeds of two candidates; no noise, so every repeat gives the same AP.
    v = d["variance"]
    assert [len(c["aps"]) for c in v["candidates"]] == [2, 2] and v["pooled_std"] == 0.0
    # Its trials are not search results: no search reuses them, `top` leaves the study out by default.
    with open_reader(str(db)) as reader:
        assert reader.newest_fingerprint() is None
        assert [s.kind for s in reader.list_searches()] == ["calibration"]
    # A study is not a search: `search --resume` sends it to `calibrate --resume`.
    wrong = spinenas("search", "--resume", "cal", "--db", str(db), cwd=tmp_path)
    assert wrong.returncode == 2 and "calibrate --resume cal" in wrong.stderr
    # A search of the same proxy says what its calibration found.
    search = spinenas("search", "--preset", _preset(tmp_path), "--name", "s", "--db", str(db), "--trials", "2",
                       "--top", "0", cwd=tmp_path)
    assert search.returncode == 0, search.stderr[-2000:]
    assert "calibration 'cal' of this proxy" in search.stdout and "tau" in search.stdout
    other = spinenas("search", "--preset", _preset(tmp_path), "--name", "s2", "--db", str(db), "--trials", "1",
                      "--top", "0", "--set", "proxy.train_steps=300", cwd=tmp_path)
    assert "no calibration of this proxy" in other.stdout
    # The report of a study plots tau against the steps and the proxy AP against the reference AP.
    report = spinenas("report", "--search", "cal", "--db", str(db), "--out", str(tmp_path / "rep"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "rep" / "index.html").read_text()
    assert 'alt="Kendall tau of each rung against the reference"' in page
    assert 'alt="proxy AP against reference AP"' in page


@pytest.mark.slow
def test_a_study_killed_with_kill_9_resumes_without_repeating_a_finished_training(tmp_path):
    from results_db import ResultStore

    db = tmp_path / "r.db"
    preset = _preset(tmp_path, duration=0.6)
    args = ["calibrate", "--preset", preset, "--name", "k", "--archs", "4", "--repeats", "2", "--variance-archs",
            "1", "--db", str(db), "--runner", "local", "--plain"]
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.time() + 120
    while finished(db, "k") < 3 and time.time() < deadline:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = ResultStore(f"sqlite:///{db}")
    before = {t.index: t for t in store.trials("k")}
    store.close()
    done = [i for i, t in before.items() if t.status == "completed"]
    assert 3 <= len(done) < 9
    resumed = spinenas("calibrate", "--resume", "k", "--db", str(db), "--runner", "local", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"resuming calibration 'k': {len(done)} of 9 trainings done" in resumed.stdout
    store = ResultStore(f"sqlite:///{db}")
    after = {t.index: t for t in store.trials("k")}
    assert len(after) == 9 and all(t.status == "completed" for t in after.values())
    for i in done:  # not trained again
        assert after[i].finished_at == before[i].finished_at and after[i].attempt == before[i].attempt
    assert store.open_search("k").status == "completed"


@pytest.mark.slow
def test_a_study_runs_its_failed_trainings_again_with_retry_failed(tmp_path):
    from results_db import ResultStore

    db = tmp_path / "r.db"
    # A timeout shorter than a training (0.6 s), also the reference's (4x the proxy's, for 4x its steps): every
    # training fails, as after a fault that was not theirs.
    proc = spinenas("calibrate", "--preset", _preset(tmp_path, duration=0.6, in_process=False), "--name", "r",
                    "--archs", "3", "--repeats", "1", "--variance-archs", "1", "--db", str(db), "--runner", "local",
                    "--trial-timeout", "0.1", "--plain", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "6 trainings failed" in proc.stdout and "--resume r --retry-failed" in proc.stdout
    store = ResultStore(f"sqlite:///{db}")
    before = {t.index: t for t in store.trials("r")}
    store.close()
    assert len(before) == 6 and all(t.status == "failed" and "timeout" in t.error for t in before.values())
    # A plain resume has nothing to do, and says how to run them again.
    again = spinenas("calibrate", "--resume", "r", "--db", str(db), cwd=tmp_path)
    assert again.returncode == 0 and "6 failed" in again.stdout and "--retry-failed" in again.stdout
    retried = spinenas("calibrate", "--resume", "r", "--retry-failed", "--trial-timeout", "0", "--db", str(db),
                       "--runner", "local", "--plain", cwd=tmp_path)
    assert retried.returncode == 0, retried.stdout[-2000:] + retried.stderr[-2000:]
    assert "0 of 6 trainings done, 6 to run (6 failed ones again)" in retried.stdout
    store = ResultStore(f"sqlite:///{db}")
    after = {t.index: t for t in store.trials("r")}
    assert all(t.status == "completed" and t.error is None and t.reward is not None for t in after.values())
    assert all(after[i].attempt > before[i].attempt for i in after)
    assert all(store.reports([t.id])[t.id] for t in after.values())  # their curves are the new runs'
    store.close()
    wrong = spinenas("calibrate", "--preset", _preset(tmp_path), "--retry-failed", "--db", str(db), cwd=tmp_path)
    assert wrong.returncode == 2 and "--retry-failed applies to --resume" in wrong.stderr


@pytest.mark.slow
@pytest.mark.parametrize("argv, message", [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--archs", "1"], "--archs must be at least 3"),
    (["--rungs", "100,900"], "step 900 is beyond the proxy's last step (400)"),
    (["--reference-steps", "400"], "the reference fidelity equals the proxy's"),
    (["--resume", "ghost"], "no database at"),  # nothing to resume: no database is created for it
    (["--resume", "x", "--archs", "3"], "--archs does not apply to --resume"),
    (["--archs-from", "/nonexistent.json"], "--archs-from /nonexistent.json"),
    (["--archs-from", "deep.json"], "the JSON nested too deeply"),
    (["--archs-from", "many.json"], "1,001 specs; a study takes at most 1000"),
])
def test_bad_input_is_one_line_before_anything_is_stored(tmp_path, argv, message):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)  # json.load: RecursionError
    (tmp_path / "many.json").write_text("[" + ",".join(["{}"] * 1001) + "]")
    db = tmp_path / "r.db"
    preset = [] if "--preset" in argv or "--resume" in argv else ["--preset", _preset(tmp_path)]
    proc = spinenas("calibrate", *preset, *argv, "--db", str(db), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()
    if "--resume" not in argv:
        assert not db.exists()
