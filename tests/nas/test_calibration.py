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


# --------------------------------------------------------------------------------------------------- variants
DEMO_DB = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "bench", "results", "calibration-demo.db")
DEMO_SHOW = os.path.join(os.path.dirname(__file__), "fixtures", "calibration-demo-show.txt")
DEMO_JSON = os.path.join(os.path.dirname(DEMO_DB), "calibration-demo.json")


def _demo_copy(tmp_path):
    """The committed demo study's database, copied (it is never written)."""
    import shutil

    path = tmp_path / "demo.db"
    shutil.copyfile(DEMO_DB, path)
    return str(path)


def _stored_study(db, name):
    from nas.calibration.study import Study
    from nas.cli.commands.common import open_reader

    with open_reader(db) as reader:
        return Study.from_yaml(reader.open_search(name).config)


def _dump(db) -> str:
    """Every row of a database (what "no database change" compares)."""
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


@pytest.mark.parametrize("text, name, overrides", [
    ("steps400:proxy.train_steps=400", "steps400", ("proxy.train_steps=400",)),
    ("px96:proxy.image_size=96, proxy.data.image_size=96", "px96", ("proxy.image_size=96", "proxy.data.image_size=96")),
    ("short:proxy.eval_at_steps=[100,200],proxy.train_steps=400", "short",
     ("proxy.eval_at_steps=[100,200]", "proxy.train_steps=400")),  # a comma inside a value stays in it
    ("base", "base", ()),  # the proxy as stored
])
def test_a_variant_is_a_name_and_its_overrides(text, name, overrides):
    from nas.calibration.study import parse_variant

    assert parse_variant(text) == (name, overrides)


def test_a_variant_study_of_the_demo_study_takes_its_candidates_reference_and_stored_proxy(tmp_path):
    from nas.calibration.study import PROXY, REFERENCE, Study, build_variant_study, parse_variant
    from nas.engine.fingerprint import fingerprint

    source = _stored_study(_demo_copy(tmp_path), "demo-cal")
    study = build_variant_study(source, "demo-cal", [parse_variant("steps400:proxy.train_steps=400"),
                                                      parse_variant("eval100:proxy.eval_images=100")])
    steps400, eval100 = study.variants
    # A shorter variant keeps the stored evaluations before its last step; its timeout is the proxy's (not less).
    assert steps400.rungs == (100, 200, 400) and eval100.rungs == (100, 200, 400, 800)
    assert steps400.config.search.trial_timeout_s == eval100.config.search.trial_timeout_s == 900.0
    assert eval100.config.proxy.eval_images == 100 and eval100.config.proxy.train_steps == 800
    with pytest.raises(CalibrationError, match="--variant px96: proxy.image_size must be a multiple of 128"):
        build_variant_study(source, "demo-cal", [parse_variant("px96:proxy.image_size=96")])
    assert study.candidates == source.candidates and study.reference == source.reference
    # No reference in the plan: per variant the 10 candidates, then 2 more seeds of 3, with the stored proxy's seeds.
    plan = study.plan
    assert len(plan) == 2 * (10 + 2 * 3) and {p.fidelity for p in plan} == {PROXY}
    assert [p.index for p in plan] == list(range(len(plan)))
    stored_seeds = {(p.candidate, p.repeat): p.seed for p in source.plan if p.fidelity == PROXY}
    assert all(stored_seeds[(p.candidate, p.repeat)] == p.seed for p in plan)
    # Each variant's trials have a fingerprint of their own: not a search's, not the stored study's.
    fps = {p.variant: study.trial_fingerprint(p) for p in plan}
    assert len(set(fps.values())) == 2
    assert not set(fps.values()) & {source.fingerprint(PROXY), source.fingerprint(REFERENCE),
                                    fingerprint(steps400.config), fingerprint(eval100.config)}
    again = Study.from_yaml(study.to_yaml())
    assert again == study and again.reference_from == "demo-cal"
    assert "variants" not in source.to_yaml() and Study.from_yaml(source.to_yaml()) == source


@pytest.mark.parametrize("variants, kw, message", [
    ([], {}, "needs at least one --variant"),
    (["a:proxy.nope=1"], {}, "--variant a: proxy.nope=1: unknown key 'proxy.nope'"),
    (["a:proxy.train_steps=abc"], {}, "--variant a: proxy.train_steps: expected an integer"),
    (["a:proxy.train_steps=200", "a:proxy.train_steps=300"], {}, "'a' is given 2 times"),
    (["a:proxy.train_steps=1600"], {}, "trains as the reference does"),
    (["a:proxy.train_steps=200"], {"repeats": 0}, "--repeats must be at least 1"),
    (["a:proxy.train_steps=200"], {"variance_archs": 9}, "--variance-archs must be between 0 and --archs"),
])
def test_a_variant_study_that_cannot_be_built_is_refused(variants, kw, message):
    from nas.calibration.study import build_variant_study, parse_variant

    source = build_study(StudySettings(preset="x", archs=4), _surrogate_cfg())
    with pytest.raises(CalibrationError, match=message):
        build_variant_study(source, "ref", [parse_variant(v) for v in variants], **kw)


@pytest.mark.parametrize("text, message", [
    ("a b:proxy.train_steps=3", "--variant expects NAME:KEY=VALUE"),
    ("reference:proxy.train_steps=3", "not 'proxy' or 'reference'"),
    ("a:train_steps", "expected KEY=VALUE"),
    ("a:runner.type=local", "runner.type is how the study runs"),
    ("a:search.workers=4", "search.workers is how the study runs"),
])
def test_a_bad_variant_is_refused(text, message):
    from nas.calibration.study import parse_variant

    with pytest.raises(CalibrationError, match=message):
        parse_variant(text)


def _rung(step, seconds, tau, cv=0.1):
    return {"step": step, "seconds_per_trial": seconds, "all": {"tau": tau, "tau_low": tau - 0.2, "tau_high": 1.0},
            "cv_max": cv}


def test_the_verdict_names_the_cheapest_variant_and_rung_whose_tau_reaches_the_target():
    from nas.calibration.study import _variants_verdict

    done = {"done": 4, "total": 4, "failed": 0}
    variants = [{"name": "cheap", "rungs": [_rung(100, 10.0, 0.2), _rung(200, 20.0, 0.5)]},
                {"name": "px96", "rungs": [_rung(100, 15.0, 0.3), _rung(400, 40.0, 0.7)]},
                {"name": "steps400", "rungs": [_rung(200, 30.0, 0.65), _rung(400, 45.0, 0.8)]}]
    v = _variants_verdict(variants, 0.6, done, (10, 10))
    assert (v["variant"], v["good_rung"], v["partial"]) == ("steps400", 200, False)
    assert v["text"].startswith("variant steps400 at rung 200 is the cheapest proxy") and "30 s per trial" in v["text"]
    none = _variants_verdict(variants, 0.9, done, (10, 10))
    assert none["variant"] is None and "no variant reaches tau 0.9" in none["text"]
    assert "best is variant steps400 at rung 400 with tau 0.80" in none["text"]
    partial = _variants_verdict(variants, 0.6, {"done": 3, "total": 4, "failed": 0}, (9, 10))
    assert partial["partial"] and partial["text"].startswith("partial (3 of 4 trainings, 9 of 10 reference trainings)")


def test_a_rung_whose_seed_noise_is_unmeasured_or_too_large_is_not_admitted():
    """A tau over near-zero APs (no measurable seed CV) or over noisy ones (CV above the target) ranks by chance."""
    from nas.calibration.study import _variants_verdict

    done = {"done": 4, "total": 4, "failed": 0}
    variants = [{"name": "tiny", "rungs": [_rung(100, 10.0, 0.7, cv=None)]},
                {"name": "noisy", "rungs": [_rung(100, 12.0, 0.7, cv=0.9)]},
                {"name": "steps400", "rungs": [_rung(400, 45.0, 0.8)]}]
    v = _variants_verdict(variants, 0.6, done, (10, 10))
    assert (v["variant"], v["good_rung"]) == ("steps400", 400)
    assert "seed CV 0.10" in v["text"] and "not admitted: tiny at 100" in v["text"]
    alone = _variants_verdict(variants[:2], 0.6, done, (10, 10))
    assert alone["variant"] is None and alone["text"].startswith("no variant is admitted: variant tiny at rung 100")
    assert "seed noise is not measured" in alone["text"]
    noisy = _variants_verdict(variants[1:2], 0.6, done, (10, 10))
    assert "its seed CV 0.90 is above 0.4" in noisy["text"]


@pytest.fixture(scope="module")
def reference_db(tmp_path_factory):
    """A finished surrogate study 'ref' (5 candidates, 2 seeds of 2) in a database; tests copy it."""
    import contextlib
    import io

    from nas import cli

    tmp = tmp_path_factory.mktemp("ref")
    preset = tmp / "surrogate.yaml"
    preset.write_text(to_yaml(_surrogate_cfg()))
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["calibrate", "--preset", str(preset), "--name", "ref", "--archs", "5", "--repeats", "2",
                         "--variance-archs", "2", "--db", str(tmp / "r.db"), "--runner", "local", "--plain",
                         "--run-dir", str(tmp / "runs" / "ref")])
    assert code == 0
    return tmp / "r.db"


def _reference_copy(reference_db, tmp_path):
    import shutil

    path = tmp_path / "r.db"
    shutil.copyfile(reference_db, path)
    return str(path)


VARIANTS = ["--variant", "short:proxy.train_steps=200",
            "--variant", "long:proxy.eval_at_steps=[100,300],proxy.train_steps=600"]


def test_a_variant_study_scores_each_variant_against_the_stored_reference_trainings(reference_db, tmp_path,
                                                                                   capsys, monkeypatch):
    from nas.calibration.study import find_calibrations, proxy_figures
    from nas.cli.commands.common import open_reader
    from nas.engine.fingerprint import fingerprint
    from proxy_task.config import ProxyConfig
    from proxy_task.evaluator import TrialContext, build_evaluator
    from results_db import ResultStore
    from tests.nas.helpers import run_cli

    monkeypatch.chdir(tmp_path)
    db = _reference_copy(reference_db, tmp_path)
    with ResultStore(db) as store:
        before = store.trials("ref")
    code, out, err = run_cli(capsys, "calibrate", "--reference-from", "ref", *VARIANTS, "--name", "var",
                             "--db", db, "--runner", "local", "--plain")
    assert code == 0, out + err
    assert "2 variants of the" in out and "calibration 'var' finished: 14 of 14 trainings" in out
    with ResultStore(db) as store:
        assert store.trials("ref") == before  # no reference trained again, nothing of the stored study changed
        trials = store.trials("var")
    study = _stored_study(db, "var")
    assert len(trials) == 2 * (5 + 2) and all(t.status == "completed" for t in trials)
    assert {t.fingerprint for t in trials} == {study.trial_fingerprint(p) for p in study.plan}
    assert not {t.fingerprint for t in trials} & {t.fingerprint for t in before}
    code, shown, _ = run_cli(capsys, "calibration", "show", "var", "--db", db, "--json")
    assert code == 0
    d = json.loads(shown)
    assert d["trainings"] == {"done": 14, "total": 14, "failed": 0}
    assert d["reference"]["study"] == "ref" and d["reference"]["done"] == 5
    # Each variant's tau at each rung is that of the surrogate's noiseless curves against the stored references.
    ev = build_evaluator("surrogate", settings=study.proxy.evaluator.get(), proxy=ProxyConfig(),
                         context=TrialContext(family="spinenet49", window=5, search_seed=study.proxy.search.seed))
    ref = [ev.expected_ap(c.arch, 1600) for c in study.candidates]
    assert [v["name"] for v in d["variants"]] == ["short", "long"]
    assert [[r["step"] for r in v["rungs"]] for v in d["variants"]] == [[100, 200], [100, 300, 600]]
    for v in d["variants"]:
        for row in v["rungs"]:
            expected = [ev.expected_ap(c.arch, row["step"]) for c in study.candidates]
            assert row["all"]["tau"] == pytest.approx(stats.kendalltau(expected, ref).statistic)
            assert row["seconds_per_trial"] is not None and row["cv_max"] == pytest.approx(0.0)  # no seed noise
        assert [len(c["aps"]) for c in v["variance"]["candidates"]] == [2, 2]
    # The verdict: the cheapest (variant, rung) whose tau reaches the target.
    good = [(r["seconds_per_trial"], v["name"], r["step"]) for v in d["variants"] for r in v["rungs"]
            if r["all"]["tau"] >= d["settings"]["target_tau"]]
    assert good and (d["verdict"]["variant"], d["verdict"]["good_rung"]) == min(good)[1:]
    code, text, _ = run_cli(capsys, "calibration", "show", "var", "--db", db)
    assert code == 0 and f"verdict: variant {d['verdict']['variant']} at rung {d['verdict']['good_rung']}" in text
    assert "short    200    7 of 7     proxy.train_steps=200" in text
    # A search of a variant's proxy finds the study, and the variant's figures.
    long_fp = fingerprint(study.variant("long").config)
    with open_reader(db) as reader:
        assert [n for n, _ in find_calibrations(reader, long_fp)] == ["var"]
        assert [n for n, _ in find_calibrations(reader, fingerprint(study.proxy))] == ["ref"]
        assert [r["step"] for r in proxy_figures(reader, "var", long_fp)["rungs"]] == [100, 300, 600]


@pytest.mark.slow
def test_the_report_and_image_of_a_variant_study_plot_seconds_per_trial_against_tau(reference_db, tmp_path, capsys,
                                                                          monkeypatch):
    from tests.nas.helpers import run_cli

    monkeypatch.chdir(tmp_path)
    db = _reference_copy(reference_db, tmp_path)
    code, out, err = run_cli(capsys, "calibrate", "--reference-from", "ref", *VARIANTS, "--name", "var",
                             "--db", db, "--runner", "local", "--plain")
    assert code == 0, out + err
    code, _, err = run_cli(capsys, "report", "--search", "var", "--search", "ref", "--db", db, "--out",
                           str(tmp_path / "rep"))
    assert code == 0, err
    page = (tmp_path / "rep" / "index.html").read_text()
    assert page.count('alt="seconds per trial against Kendall tau of each variant"') == 1
    assert page.count('alt="Kendall tau of each rung against the reference"') == 1  # the study 'ref' as before
    code, _, err = run_cli(capsys, "calibration", "show", "var", "--db", db, "--image", str(tmp_path / "v.svg"))
    assert code == 0 and "<svg" in (tmp_path / "v.svg").read_text(), err
    code, _, err = run_cli(capsys, "calibration", "show", "var", "--db", db, "--image", str(tmp_path / "v.gif"))
    assert code == 2 and "--image must end in .png or .svg" in err


def test_an_interrupted_variant_study_resumes_without_repeating_a_training(reference_db, tmp_path, capsys,
                                                                          monkeypatch):
    from nas.calibration.study import CalibrationStudy, build_variant_study, parse_variant
    from nas.cli.console import PlainView
    from results_db import ResultStore
    from tests.nas.helpers import run_cli

    monkeypatch.chdir(tmp_path)
    db = _reference_copy(reference_db, tmp_path)
    study = build_variant_study(_stored_study(db, "ref"), "ref", [parse_variant(VARIANTS[1]),
                                                                  parse_variant(VARIANTS[3])])
    raised = []

    def ctrl_c_at_the_fourth(text):  # Ctrl-C once, as the fourth training is stored
        if text.startswith("[4/") and not raised:
            raised.append(text)
            raise KeyboardInterrupt

    store = ResultStore(db)
    job = CalibrationStudy(study, name="var", store=store, run_dir=str(tmp_path / "runs" / "var"),
                           view=PlainView(out=ctrl_c_at_the_fourth), tensorboard=False)
    job.prepare()
    job.start_runner()
    outcome = job.run()
    before = {t.index: t for t in store.trials("var")}
    store.close()
    assert outcome.interrupted and outcome.done == 4
    done = [i for i, t in before.items() if t.status == "completed"]
    assert len(done) == 4
    code, out, err = run_cli(capsys, "calibrate", "--resume", "var", "--db", db, "--runner", "local", "--plain")
    assert code == 0, out + err
    assert "resuming calibration 'var': 4 of 14 trainings done, 10 to run" in out
    with ResultStore(db) as store:
        after = {t.index: t for t in store.trials("var")}
        assert store.open_search("var").status == "completed"
    assert len(after) == 14 and all(t.status == "completed" for t in after.values())
    for i in done:  # not trained again
        assert after[i].finished_at == before[i].finished_at and after[i].attempt == before[i].attempt
    assert "verdict: variant" in out


@pytest.mark.parametrize("argv, message", [
    (["--reference-from", "ref", "--variant", "a:proxy.nope=1"], "--variant a: proxy.nope=1: unknown key"),
    (["--reference-from", "ref", "--variant", "a:proxy.train_steps=abc"], "expected an integer, got 'abc'"),
    (["--reference-from", "ref", "--variant", "a:proxy.train_steps=100", "--variant", "a:proxy.train_steps=300"],
     "--variant names must differ"),
    (["--reference-from", "ghost", "--variant", "a:proxy.train_steps=100"], "unknown search 'ghost'"),
    (["--reference-from", "s", "--variant", "a:proxy.train_steps=100"], "'s' is a search, not a calibration study"),
    (["--reference-from", "var0", "--variant", "a:proxy.train_steps=100"], "--reference-from ref"),
    (["--reference-from", "ref"], "needs at least one --variant"),
    (["--variant", "a:proxy.train_steps=100"], "--variant needs --reference-from"),
    (["--reference-from", "ref", "--variant", "a:proxy.train_steps=100", "--archs", "4"],
     "--archs does not apply to --reference-from"),
    (["--resume", "var0", "--variant", "a:proxy.train_steps=100"], "--variant does not apply to --resume"),
])
def test_bad_variant_input_is_one_line_and_changes_no_database(reference_db, tmp_path, capsys, monkeypatch, argv,
                                                               message):
    from nas.calibration.study import CalibrationStudy, build_variant_study, parse_variant
    from results_db import ResultStore
    from tests.nas.helpers import run_cli

    monkeypatch.chdir(tmp_path)
    db = _reference_copy(reference_db, tmp_path)
    with ResultStore(db) as store:  # a search, and a study of variants (made, not run)
        store.create_search("s", config=to_yaml(_surrogate_cfg()), fingerprint="fp-search")
        study = build_variant_study(_stored_study(db, "ref"), "ref", [parse_variant("a:proxy.train_steps=100")])
        CalibrationStudy(study, name="var0", store=store, run_dir=str(tmp_path / "x"), tensorboard=False).prepare()
    rows = _dump(db)
    code, out, err = run_cli(capsys, "calibrate", *argv, "--db", db, "--runner", "local")
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert _dump(db) == rows
    assert not (tmp_path / "runs").exists()


def test_a_study_without_variants_shows_as_before(tmp_path, capsys):
    from tests.nas.helpers import run_cli

    db = _demo_copy(tmp_path)
    code, text, _ = run_cli(capsys, "calibration", "show", "demo-cal", "--db", db)
    assert code == 0
    with open(DEMO_SHOW, encoding="utf-8") as fh:
        assert text == fh.read()  # as `calibration show` printed it before studies of variants
    code, shown, _ = run_cli(capsys, "calibration", "show", "demo-cal", "--db", db, "--json")
    with open(DEMO_JSON, encoding="utf-8") as fh:
        recorded = json.load(fh)
    recorded.pop("command")
    assert json.loads(shown) == recorded  # the figures the benchmark recorded


def test_every_calibration_training_is_an_hparams_session(reference_db):
    """TensorBoard's HParams tab lists a study's trainings: candidate, fidelity, repeat, seed and steps, its AP."""
    from results_db.reader import ResultReader
    from tests.nas.test_tensorboard import _session

    runs = reference_db.parent / "runs" / "ref" / "tensorboard" / "trials"
    with ResultReader(str(reference_db)) as reader:
        trials = reader.trials("ref")
    assert sorted(os.listdir(runs)) == sorted(f"trial_{t.index:05d}_{t.arch_key}" for t in trials)
    fidelities = set()
    for t in trials:
        hparams, metrics, status = _session(runs / f"trial_{t.index:05d}_{t.arch_key}")
        assert hparams["key"] == t.arch_key and hparams["status"] == t.status == "completed"
        assert {"candidate", "fidelity", "repeat", "seed", "steps"} <= set(hparams)
        assert metrics["hparams/ap"][1] == pytest.approx(t.metrics["ap"]) and status == "STATUS_SUCCESS"
        fidelities.add(hparams["fidelity"])
    assert fidelities == {"proxy", "reference"}
