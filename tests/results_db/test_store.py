"""ResultStore and ResultReader: every column round trips, the search job's calls, lifecycle errors."""

from __future__ import annotations

import datetime
import json
import math
import os

import numpy as np
import pytest

from results_db import (
    AmbiguousKeyError,
    DatabaseNotFoundError,
    DuplicateSearchError,
    NewTrial,
    ResultReader,
    ResultStore,
)
from search_space import SPINENET_49, ArchSpec, SearchSpace
from tests.results_db.fixtures import make_db


@pytest.fixture
def url(tmp_path):
    return "sqlite:///" + str(tmp_path / "r.db")


@pytest.fixture
def store(url):
    s = ResultStore(url)
    yield s
    s.close()


def _space_archs(n, seed=0):
    space = SearchSpace("spinenet49")
    rng = np.random.default_rng(seed)
    ds = [space.random(rng) for _ in range(n)]
    return ds, [space.decode(d) for d in ds]


# --------------------------------------------------------------------------------------------------- round trips
def test_every_column_round_trips_through_store_and_reader(url):
    t0 = datetime.datetime(2024, 5, 1, 12, 0, 0, 123456)
    with ResultStore(url) as s:
        search = s.create_search("exp", config="a: 1\nb: [1, 2]\n", seed=7, controller="ppo", family="spinenet49")
        key = s.register_arch(SPINENET_49, family="spinenet49", flops=85_400_000_000, params=40_000_000)
        ids = s.add_trials("exp", [NewTrial(key, (3, 0, 12)), (key, [1, 2])], status="queued")
        s.start_trial(ids[0], host="gpu-3", started_at=t0, attempt=2)
        metrics = {"ap": 0.25, "ap50": 0.4, "steps": 6000.0, "nan_metric": math.nan}
        s.finish_trial(ids[0], status="completed", reward=0.2471, metrics=metrics, error=None, wall_s=812.5,
                       finished_at=t0 + datetime.timedelta(seconds=812))
        s.finish_trial(ids[1], status="cached", reward=0.2471, metrics={"ap": 0.25}, cached_from=ids[0])
        s.save_checkpoint("exp", 4, {"version": 1, "w": [0.5, -1.25], "nested": {"a": None}})
        store_view = (s.open_search("exp"), s.get_arch(key), s.trials("exp"), s.load_checkpoint("exp"))
    with ResultReader(url) as r:
        reader_view = (r.open_search("exp"), r.get_arch(key), r.trials("exp"))

    rec, arch, trials, ckpt = store_view
    assert (rec.name, rec.config, rec.seed, rec.controller, rec.family, rec.status) == (
        "exp", "a: 1\nb: [1, 2]\n", 7, "ppo", "spinenet49", "running")
    assert rec.id == search.id and rec.finished_at is None and rec.created_at <= rec.updated_at
    assert (arch.key, arch.family, arch.flops, arch.params) == (key, "spinenet49", 85_400_000_000, 40_000_000)
    assert ArchSpec.from_json(arch.spec_json) == SPINENET_49.canonical()
    assert arch.summary == SPINENET_49.summary()
    first, second = trials
    assert (first.index, first.arch_key, first.status, first.decisions) == (0, key, "completed", (3, 0, 12))
    assert (first.reward, first.error, first.attempt, first.host, first.wall_s) == (0.2471, None, 2, "gpu-3", 812.5)
    assert first.metrics["ap"] == 0.25 and first.metrics["steps"] == 6000.0 and math.isnan(first.metrics["nan_metric"])
    assert first.started_at == t0 and first.finished_at == t0 + datetime.timedelta(seconds=812)
    assert first.finish_order == 1 and first.cached_from is None and first.search == "exp"
    assert (second.status, second.cached_from, second.finish_order, second.attempt) == ("cached", ids[0], 2, 0)
    assert ckpt.step == 4 and ckpt.state == {"version": 1, "w": [0.5, -1.25], "nested": {"a": None}}
    # The stdlib reader (sqlite3, no SQLAlchemy) returns exactly the same records.
    assert reader_view[0] == rec and reader_view[1] == arch
    assert repr(reader_view[2]) == repr(trials)  # NaN != NaN, so compare the reprs


def test_stored_summary_is_arch_summary(store):
    _, archs = _space_archs(200, seed=3)
    keys = store.register_archs(archs)
    stored = store.archs(keys)
    for a, k in zip(archs, keys):
        assert stored[k].summary == a.summary()
        assert ArchSpec.from_json(stored[k].spec_json).key == k


# --------------------------------------------------------------------------------------------------- searches
def test_create_search_twice_fails_and_unknown_search_lists_known(store):
    store.create_search("a")
    with pytest.raises(DuplicateSearchError, match="'a' already exists"):
        store.create_search("a")
    with pytest.raises(LookupError, match="unknown search 'b'; expected one of: a"):
        store.open_search("b")
    with pytest.raises(LookupError, match="expected one of: a"):
        store.trials("b")
    with pytest.raises(ValueError, match="1..128 characters"):
        store.create_search("")


def test_set_search_status(store):
    store.create_search("a")
    store.set_search_status("a", "completed")
    rec = store.open_search("a")
    assert rec.status == "completed" and rec.finished_at is not None
    store.set_search_status("a", "running")
    assert store.open_search("a").finished_at is None
    with pytest.raises(ValueError, match=r"search status must be one of \['running', 'completed'"):
        store.set_search_status("a", "done")


# --------------------------------------------------------------------------------------------------- archs
def test_register_arch_is_idempotent_and_fills_costs_later(store):
    k1 = store.register_arch(SPINENET_49)
    assert store.register_arch(SPINENET_49.canonical()) == k1  # another spelling of the same network
    assert store.get_arch(k1).flops is None
    store.register_arch(SPINENET_49, family="spinenet49", flops=10, params=20)
    store.register_arch(SPINENET_49, flops=99)  # a known cost is not overwritten
    rec = store.get_arch(k1)
    assert (rec.family, rec.flops, rec.params) == ("spinenet49", 10, 20)
    assert len(store.archs()) == 1
    with pytest.raises(ValueError, match="flops must be a non-negative integer"):
        store.register_arch(SPINENET_49, flops=-1)


def test_find_arch_by_prefix(tmp_path):
    url = str(tmp_path / "r.db")
    facts = make_db(url)
    with ResultReader(url) as r:
        key = facts["key49"]
        assert r.find_arch(key[:6]).key == key
        assert r.find_arch(key.upper()).key == key
        with pytest.raises(AmbiguousKeyError, match="is ambiguous"):
            r.find_arch(_common_prefix(facts["keys"]))
        with pytest.raises(LookupError, match="no key starts with it"):
            r.find_arch("ffffffffffffffff0")
        with pytest.raises(LookupError, match="hex digits"):
            r.find_arch("zz")


def _common_prefix(keys):
    # A one-character prefix shared by at least two keys.
    firsts = [k[0] for k in keys]
    return next(c for c in firsts if firsts.count(c) > 1)


# --------------------------------------------------------------------------------------------------- trials
def test_add_trials_batch_ids_and_indices(store):
    store.create_search("a")
    ds, archs = _space_archs(5)
    keys = store.register_archs(archs)
    ids = store.add_trials("a", [NewTrial(k, d) for k, d in zip(keys[:3], ds)], status="running", host="h")
    more = store.add_trials("a", [NewTrial(k, d) for k, d in zip(keys[3:], ds[3:])])
    trials = store.trials("a")
    assert [t.id for t in trials] == ids + more and [t.index for t in trials] == [0, 1, 2, 3, 4]
    assert [t.status for t in trials] == ["running"] * 3 + ["queued"] * 2
    assert trials[0].attempt == 1 and trials[0].host == "h" and trials[0].started_at is not None
    assert trials[3].attempt == 0 and trials[3].host is None and trials[3].started_at is None
    assert [t.decisions for t in trials] == [tuple(d) for d in ds]


@pytest.mark.parametrize(
    "trial, status, error",
    [
        (("0123456789abcdef", [1]), "queued", "unknown arch key"),
        (("KEY", [1, "2"]), "queued", "decisions must be ints"),
        (("KEY", "12"), "queued", "decisions must be a sequence"),
        (("KEY", [1]), "completed", r"status of a new trial must be one of \['queued', 'running'\]"),
    ],
)
def test_add_trials_rejects_bad_input(store, trial, status, error):
    store.create_search("a")
    key = store.register_arch(SPINENET_49)
    trial = (key if trial[0] == "KEY" else trial[0], trial[1])
    with pytest.raises((LookupError, ValueError), match=error):
        store.add_trials("a", [trial], status=status)
    assert store.trials("a") == []


def test_trial_lifecycle_errors(store):
    store.create_search("a")
    key = store.register_arch(SPINENET_49)
    [tid] = store.add_trials("a", [(key, [1])])
    with pytest.raises(ValueError, match="reward must be a finite number"):
        store.finish_trial(tid, status="completed", reward=math.nan)
    with pytest.raises(ValueError, match="final status must be one of"):
        store.finish_trial(tid, status="running")
    store.finish_trial(tid, status="failed", error="boom")
    with pytest.raises(RuntimeError, match="already finished with status 'failed'"):
        store.finish_trial(tid, status="completed", reward=1.0)
    with pytest.raises(RuntimeError, match="cannot start"):
        store.start_trial(tid)
    with pytest.raises(LookupError, match="unknown trial id 999"):
        store.finish_trial(999, status="failed")
    with pytest.raises(LookupError, match="unknown trial id 999"):
        store.start_trial(999)
    assert store.get_trial(tid).error == "boom"


def test_history_is_in_completion_order(store):
    store.create_search("a")
    store.create_search("b")
    ds, archs = _space_archs(4)
    keys = store.register_archs(archs)
    ids = store.add_trials("a", [NewTrial(k, d) for k, d in zip(keys, ds)], status="running")
    [other] = store.add_trials("b", [NewTrial(keys[0], ds[0])], status="running")
    store.finish_trial(ids[2], status="completed", reward=0.3)
    store.finish_trial(other, status="completed", reward=0.9)  # another search: its own order
    store.finish_trial(ids[0], status="failed", error="x")
    store.finish_trial(ids[3], status="cached", reward=0.3, cached_from=ids[2])
    assert store.history("a") == [(tuple(ds[2]), 0.3), (tuple(ds[0]), None), (tuple(ds[3]), 0.3)]
    assert store.history("b") == [(tuple(ds[0]), 0.9)]
    assert [t.finish_order for t in store.trials("a")] == [2, None, 1, 3]


def test_find_result_best_across_searches(store):
    store.create_search("a")
    store.create_search("b")
    k = store.register_arch(SPINENET_49, flops=5, params=6)
    assert store.find_result(k, fingerprint="fp") is None and store.find_result("0" * 16, fingerprint="fp") is None
    [t1] = store.add_trials("a", [(k, [1])], status="running", fingerprint="fp")
    store.finish_trial(t1, status="failed", error="OOM")
    assert store.find_result(k, fingerprint="fp") is None
    assert store.find_result(k, fingerprint="fp", include_failed=True).error == "OOM"
    [t2, t3] = store.add_trials("b", [(k, [1]), (k, [1])], status="running", fingerprint="fp")
    store.finish_trial(t2, status="completed", reward=0.2, metrics={"ap": 0.2}, wall_s=3.0)
    store.finish_trial(t3, status="completed", reward=0.4, metrics={"ap": 0.4})
    best = store.find_result(k, fingerprint="fp")
    assert (best.trial_id, best.search, best.status, best.reward, best.metrics) == (t3, "b", "completed", 0.4,
                                                                                    {"ap": 0.4})
    assert (best.flops, best.params) == (5, 6)
    # A fresh store (another process, later) finds it too.
    with ResultReader(store.url) as r:
        assert r.find_result(k, fingerprint="fp") == best


def test_find_result_skips_the_query_for_a_key_without_any_trial(store):
    # The driver's order: register the proposal's arch, look its key up, add the trial.
    from sqlalchemy import event

    statements = []
    event.listen(store._engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    store.create_search("a")
    statements.clear()
    k = store.register_arch(SPINENET_49)
    assert [s.split()[0] for s in statements] == ["INSERT"]  # no lookup first: the insert says if it is new
    statements.clear()
    assert store.find_result(k, fingerprint="fp") is None and statements == []  # just inserted: no trial, no result
    [t] = store.add_trials("a", [(k, [1])], status="running", fingerprint="fp")
    store.finish_trial(t, status="completed", reward=0.5)
    statements.clear()
    assert store.find_result(k, fingerprint="fp").trial_id == t and statements  # it has a trial now: asked, found
    assert store.register_arch(SPINENET_49) == k and store.find_result(k, fingerprint="fp").reward == 0.5


def test_trials_by_status_and_resume_after_a_crash(url):
    ds, archs = _space_archs(6)
    s = ResultStore(url)
    s.create_search("job", controller="ppo")
    keys = s.register_archs(archs)
    ids = s.add_trials("job", [NewTrial(k, d) for k, d in zip(keys, ds)], status="queued")
    for tid in ids[:4]:
        s.start_trial(tid, host="a")
    s.finish_trial(ids[0], status="completed", reward=0.1)
    s.save_checkpoint("job", 1, {"version": 1, "step": 1})
    del s  # the driver dies: no close, no status change

    s = ResultStore(url)
    assert s.open_search("job").status == "running"
    again = s.trials("job", status=("queued", "running"))
    assert [t.id for t in again] == ids[1:]
    assert s.load_checkpoint("job").state == {"version": 1, "step": 1}
    assert s.history("job") == [(tuple(ds[0]), 0.1)]
    s.start_trial(ids[1], host="b")
    assert s.get_trial(ids[1]).attempt == 2 and s.get_trial(ids[1]).host == "b"
    # New trials continue the index sequence after a reopen.
    [new] = s.add_trials("job", [NewTrial(keys[0], ds[0])])
    assert s.get_trial(new).index == 6
    with pytest.raises(ValueError, match="trial status must be one of"):
        s.trials("job", status="done")
    s.close()


def test_checkpoints_latest_replace_and_keep(store):
    store.create_search("a")
    assert store.load_checkpoint("a") is None
    for step in range(1, 6):
        store.save_checkpoint("a", step, {"step": step}, keep=2)
    store.save_checkpoint("a", 5, {"step": 5, "again": True}, keep=2)
    assert store.load_checkpoint("a").state == {"step": 5, "again": True}
    store.save_checkpoint("a", 4, {"step": 4}, keep=None)
    with ResultReader(store.url) as r, r._executor() as ex:
        steps = sorted(s for (s,) in ex("SELECT step FROM controller_checkpoints", {}))
    assert steps == [4, 5]
    with pytest.raises(ValueError, match="JSON-able"):
        store.save_checkpoint("a", 6, {"w": math.inf})
    with pytest.raises(ValueError, match="JSON-able"):
        store.save_checkpoint("a", 6, {"w": object()})


# --------------------------------------------------------------------------------------------------- reads
def test_top_ranks_archs_not_trials(tmp_path):
    url = str(tmp_path / "r.db")
    facts = make_db(url)
    with ResultReader(url) as r:
        top = r.top(k=3)
        assert [t.rank for t in top] == [1, 2, 3]
        assert top[0].arch_key == facts["key49"] and top[0].reward == 0.9 and top[0].search == "random-1"
        ranked = sorted(facts["rewards"].items(), key=lambda kv: -kv[1])
        assert [t.arch_key for t in top[1:]] == [k for k, _ in ranked[:2]]
        only = r.top(searches=["ppo-1"], k=50)
        assert len({t.arch_key for t in only}) == len(only) == len(facts["rewards"])
        assert all(t.search == "ppo-1" for t in only)
        cheap = r.top(k=50, max_flops=1.5e9)
        assert cheap and all(t.flops <= 1.5e9 for t in cheap)
        key5 = facts["keys"][5]
        assert next(t for t in only if t.arch_key == key5).evaluations == 1  # the cached trial is not counted
        with pytest.raises(LookupError, match="unknown search 'x'; expected one of: ppo-1, random-1"):
            r.top(searches=["x"])


def test_search_summaries(tmp_path):
    url = str(tmp_path / "r.db")
    facts = make_db(url)
    with ResultReader(url) as r:
        ppo, rnd = r.search_summaries()
    n = facts["n"]
    assert ppo.trials == n + 1
    assert dict(ppo.counts) == {"completed": n - 2, "failed": 1, "running": 1, "cached": 1}
    assert ppo.best_reward == max(facts["rewards"].values())
    assert (rnd.search.status, rnd.trials, rnd.best_reward) == ("completed", 1, 0.9)
    assert json.loads(rnd.search.config) == {"controller": "random"}


def test_search_summaries_count_the_compute_of_trained_trials_only(tmp_path):
    url = str(tmp_path / "r.db")
    facts = make_db(url)
    # make_db's ppo-1: a failed trial of 12 s, completed ones of 600 + i s (i = 0..22 but 3), none with steps.
    expected_s = 12.0 + sum(600.0 + i for i in range(facts["n"] - 1) if i != 3)
    space = SearchSpace("spinenet49")
    with ResultStore(url) as s:
        s.create_search("asha", config={}, seed=0, controller="ppo", family="spinenet49")
        decisions = [space.random(np.random.default_rng(i)) for i in range(5)]
        keys = s.register_archs([space.decode(d) for d in decisions], family="spinenet49")
        done, lost, pruned, cached, rejected = s.add_trials("asha", [NewTrial(k, d) for k, d in
                                                                      zip(keys, decisions)], status="running")
        s.finish_trial(done, status="completed", reward=0.2, metrics={"ap": 0.2, "steps": 800.0}, wall_s=240.0)
        # Lost its worker after reporting step 200: its steps are its last report's.
        s.add_reports(lost, [(100, {"loss": 1.0}), (200, {"loss": 0.9})])
        s.finish_trial(lost, status="failed", error="the worker died", wall_s=70.0)
        s.finish_trial(pruned, status="pruned", reward=0.05, metrics={"ap": 0.05, "steps": 400.0}, wall_s=120.0,
                       reports=[(400, {"ap": 0.05})])
        s.finish_trial(cached, status="cached", reward=0.2, metrics={"ap": 0.2, "steps": 800.0}, cached_from=done,
                       wall_s=0.0)
        s.finish_trial(rejected, status="rejected", reward=0.0, metrics={"flops": 9e12}, wall_s=0.0)
    for opener in (ResultReader, lambda u: ResultStore(u, readonly=True)):  # sqlite3 and SQLAlchemy
        with opener(url) as r:
            ppo, rnd, asha = r.search_summaries()
        assert (ppo.trial_s, ppo.steps) == (pytest.approx(expected_s), 0)
        assert (rnd.trial_s, rnd.steps) == (pytest.approx(1234.5), 0)
        assert (asha.trial_s, asha.steps) == (pytest.approx(240.0 + 70.0 + 120.0), 800 + 200 + 400)


# --------------------------------------------------------------------------------------------------- opening
def test_readonly_open_of_a_missing_file_creates_nothing(tmp_path):
    path = tmp_path / "sub" / "missing.db"
    for opener in (ResultReader, lambda u: ResultStore(u, readonly=True)):
        with pytest.raises(DatabaseNotFoundError, match="no database at"):
            opener(str(path))
    assert not (tmp_path / "sub").exists()


def test_readonly_store_refuses_writes(tmp_path):
    url = str(tmp_path / "r.db")
    make_db(url)
    with ResultStore(url, readonly=True) as s:
        assert s.top(k=1)
        with pytest.raises(RuntimeError, match="read-only"):
            s.create_search("x")
        with pytest.raises(RuntimeError, match="read-only"):
            s.register_arch(SPINENET_49)


def test_writer_creates_directory_and_plain_paths_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPINENAS_DB", raising=False)
    with ResultStore() as s:  # the default: sqlite:///runs/spinenas.db relative to the current directory
        s.create_search("a")
    assert os.path.isfile(tmp_path / "runs" / "spinenas.db")
    monkeypatch.setenv("SPINENAS_DB", str(tmp_path / "elsewhere.db"))
    with ResultStore() as s:
        assert s.url == "sqlite:///" + str(tmp_path / "elsewhere.db")
    with ResultReader("runs/spinenas.db") as r:
        assert [x.name for x in r.list_searches()] == ["a"]


def test_wal_mode_and_pragmas(store):
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_in_memory_store(tmp_path):
    with ResultStore("sqlite://") as s:
        s.create_search("m")
        k = s.register_arch(SPINENET_49)
        [t] = s.add_trials("m", [(k, [0])], status="running")
        s.finish_trial(t, status="completed", reward=0.5)
        assert s.top(k=1)[0].arch_key == k


def test_two_writers_register_the_same_arch(url):
    """Another process (another store) may register a key this store has not seen: no IntegrityError."""
    a, b = ResultStore(url), ResultStore(url)
    a.create_search("a")
    b.create_search("b")
    k = a.register_arch(SPINENET_49, flops=1)
    assert b.register_archs([SPINENET_49]) == [k]
    assert b.register_arch(SPINENET_49, params=2) == k
    [t] = b.add_trials("b", [(k, [0])])
    assert b.get_trial(t).arch_key == k and b.get_arch(k).flops == 1 and b.get_arch(k).params == 2
    a.close()
    b.close()


def test_a_key_another_writer_stored_is_looked_up_not_taken_for_new(url):
    # The insert finds the row already there, so this store did not create it and must ask for its trials.
    a, b = ResultStore(url), ResultStore(url)
    a.create_search("a")
    k = a.register_arch(SPINENET_49)
    [t] = a.add_trials("a", [(k, [0])], status="running", fingerprint="fp")
    a.finish_trial(t, status="completed", reward=0.4)
    assert b.register_arch(SPINENET_49) == k
    assert b.find_result(k, fingerprint="fp").trial_id == t and b.find_result(k, fingerprint="fp").reward == 0.4
    a.close()
    b.close()


def test_a_batch_or_a_cost_for_keys_another_writer_stored(url):
    _, archs = _space_archs(3)
    a, b, c = ResultStore(url), ResultStore(url), ResultStore(url)
    a.create_search("a")
    k1 = a.register_arch(archs[1], flops=5)
    [t] = a.add_trials("a", [(k1, [0])], status="running", fingerprint="fp")
    a.finish_trial(t, status="completed", reward=0.3)
    # A batch that holds it: the others are inserted, it is left as it is and its result is found.
    keys = b.register_archs(archs)
    assert keys[1] == k1 and all(b.get_arch(k) is not None for k in keys)
    assert b.get_arch(k1).flops == 5 and b.find_result(k1, fingerprint="fp").reward == 0.3
    assert b.find_result(keys[0], fingerprint="fp") is None
    # One arch with a cost, from a store that has not seen it: the row is there, so the cost is filled in.
    assert c.register_arch(archs[2], params=7) == keys[2] and c.get_arch(keys[2]).params == 7
    a.close()
    b.close()
    c.close()


# --------------------------------------------------------------------------------------------------- reports
def _one_trial(store, fingerprint="fp"):
    store.create_search("a", fingerprint=fingerprint)
    key = store.register_arch(SPINENET_49)
    [t] = store.add_trials("a", [(key, [1])], status="running", fingerprint=fingerprint)
    return key, t


def test_reports_replace_by_step_and_come_back_in_step_order(url):
    with ResultStore(url) as s:
        _, t = _one_trial(s)
        [other] = s.add_trials("a", [(s.get_trial(t).arch_key, [2])], status="running")
        assert s.add_reports(t, [(200, {"train_loss": 1.5}), (100, {"train_loss": 2.0, "learning_rate": 0.08})]) == 2
        # A re-run reports step 200 again (twice in one batch: the later wins) and a new step.
        assert s.add_reports(t, [(200, {"train_loss": 9.0}), (300, {"ap": 0.1}), (200, {"train_loss": 1.4})]) == 2
        # Non-finite values are stored as None, the rest of the report kept; ints and numpy floats as floats.
        s.add_reports(t, [(400, {"train_loss": math.nan, "grad_norm": -math.inf, "images_per_s": np.float32(40.5),
                                 "steps": 400, "ap": None})])
        assert s.add_reports(t, []) == 0
        store_view = s.reports([t, other, 12345])
    with ResultReader(url) as r:
        reader_view = r.reports([t, other, 12345])
    assert reader_view == store_view  # the stdlib reader returns the same records
    assert list(store_view) == [t, other, 12345] and store_view[other] == [] and store_view[12345] == []
    curve = store_view[t]
    assert [(p.trial_id, p.step) for p in curve] == [(t, 100), (t, 200), (t, 300), (t, 400)]
    assert [p.metrics for p in curve] == [
        {"train_loss": 2.0, "learning_rate": 0.08}, {"train_loss": 1.4}, {"ap": 0.1},
        {"train_loss": None, "grad_norm": None, "images_per_s": 40.5, "steps": 400.0, "ap": None},
    ]
    assert all(isinstance(v, float) for v in curve[3].metrics.values() if v is not None)
    assert curve[0].created_at <= curve[1].created_at and isinstance(curve[0].created_at, datetime.datetime)


@pytest.mark.parametrize(
    "reports, error",
    [
        ([(-1, {"train_loss": 1.0})], "step must be a non-negative integer, got -1"),
        ([(True, {"train_loss": 1.0})], "step must be a non-negative integer, got True"),
        ([(1.5, {"train_loss": 1.0})], "step must be a non-negative integer, got 1.5"),
        ([(1, {"train_loss": "1.0"})], "'train_loss' at step 1 must be a number or None, got '1.0'"),
        ([(1, {"train_loss": [1.0]})], "must be a number or None"),
        ([(1, {"ok": True})], "'ok' at step 1 must be a number or None, got True"),
        ([(1, {3: 1.0})], "metric names must be strings"),
        ([(1, [("train_loss", 1.0)])], "metrics of the report at step 1 must be a mapping"),
        ([(1, {"a": 1.0}, "extra")], r"each report must be a \(step, metrics\) pair"),
        ([1, 2], r"each report must be a \(step, metrics\) pair"),
        ({1: {"a": 1.0}}, "reports must be a sequence of"),
    ],
)
def test_add_reports_rejects_malformed_reports_and_writes_none(store, reports, error):
    _, t = _one_trial(store)
    if isinstance(reports, list):
        reports = [(0, {"train_loss": 3.0})] + reports  # a good report first: it is not written either
    with pytest.raises(ValueError, match=error):
        store.add_reports(t, reports)
    assert store.reports([t])[t] == []


def test_add_reports_for_an_unknown_trial(store):
    _, t = _one_trial(store)
    with pytest.raises(LookupError, match="unknown trial id 999"):
        store.add_reports(999, [(1, {"train_loss": 1.0})])
    # The failed transaction left the writer's connection usable.
    assert store.add_reports(t, [(1, {"train_loss": 1.0})]) == 1


def test_finish_trial_writes_its_reports_in_the_same_transaction(store):
    from sqlalchemy import event

    _, t = _one_trial(store)
    store.add_reports(t, [(100, {"train_loss": 2.0})])
    commits = []
    event.listen(store._engine, "commit", lambda conn: commits.append(1))
    store.finish_trial(t, status="completed", reward=0.3, metrics={"ap": 0.3},
                       reports=[(100, {"train_loss": 1.9}), (200, {"train_loss": 1.2, "ap": 0.3})])
    assert len(commits) == 1
    assert [(p.step, p.metrics) for p in store.reports([t])[t]] == [
        (100, {"train_loss": 1.9}), (200, {"train_loss": 1.2, "ap": 0.3})]
    # A finish that fails writes none of its reports; so does a malformed report (and the trial stays open).
    with pytest.raises(RuntimeError, match="already finished"):
        store.finish_trial(t, status="completed", reward=0.5, reports=[(300, {"train_loss": 1.0})])
    [u] = store.add_trials("a", [(store.get_trial(t).arch_key, [2])], status="running", fingerprint="fp")
    with pytest.raises(ValueError, match="step must be a non-negative integer"):
        store.finish_trial(u, status="failed", error="NaN loss", reports=[(-5, {"train_loss": math.nan})])
    assert store.get_trial(u).status == "running"
    assert max(p.step for p in store.reports([t])[t]) == 200 and store.reports([u])[u] == []
    store.finish_trial(u, status="failed", error="NaN loss", reports=[(50, {"train_loss": math.nan})])
    assert store.reports([u])[u][0].metrics == {"train_loss": None}


def test_reports_of_many_trials_are_read_in_chunks(store, monkeypatch):
    from sqlalchemy import event

    import results_db.queries

    monkeypatch.setattr(results_db.queries, "_CHUNK", 4)
    key, _ = _one_trial(store)
    ids = store.add_trials("a", [(key, [i]) for i in range(9)], status="running", fingerprint="fp")
    for i, t in enumerate(ids):
        store.add_reports(t, [(s, {"train_loss": 1.0 / (s + i)}) for s in (1, 2, 3)])
    statements = []
    event.listen(store._engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    got = store.reports(reversed(ids))
    assert len([s for s in statements if "trial_reports" in s]) == 3  # 9 trials, 4 per query
    assert list(got) == list(reversed(ids))
    assert all([p.step for p in got[t]] == [1, 2, 3] and {p.trial_id for p in got[t]} == {t} for t in ids)


def test_a_trials_reports_go_with_it(store):
    _, t = _one_trial(store)
    store.add_reports(t, [(1, {"train_loss": 1.0})])
    with store._write_conn() as conn:  # ON DELETE CASCADE from the search, through its trials
        conn.exec_driver_sql("DELETE FROM searches")
    with ResultReader(store.url) as r, r._executor() as ex:
        assert list(ex("SELECT COUNT(*) FROM trial_reports", {})) == [(0,)]


# --------------------------------------------------------------------------------------------------- fingerprints
def test_fingerprints_round_trip_and_are_checked(url):
    with ResultStore(url) as s:
        assert s.create_search("a", fingerprint="0123456789abcdef").fingerprint == "0123456789abcdef"
        assert s.create_search("b").fingerprint is None
        key = s.register_arch(SPINENET_49)
        [t1] = s.add_trials("a", [(key, [1])], fingerprint="0123456789abcdef")
        [t2] = s.add_trials("b", [(key, [1])])
        view = (s.open_search("a"), s.get_trial(t1), s.get_trial(t2))
        for bad in ("", "0123456789abcdef0", 7, b"fp"):
            with pytest.raises(ValueError, match=r"fingerprint must be a string of 1..16 characters"):
                s.create_search("c", fingerprint=bad)
            with pytest.raises(ValueError, match=r"fingerprint must be a string of 1..16 characters"):
                s.add_trials("a", [(key, [1])], fingerprint=bad)
            with pytest.raises(ValueError, match=r"fingerprint must be a string of 1..16 characters"):
                s.find_result(key, fingerprint=bad)
            with pytest.raises(ValueError, match=r"fingerprint must be a string of 1..16 characters"):
                s.top(fingerprint=bad)
        with pytest.raises(ValueError, match=r"1..16 characters, got None"):
            s.set_search_fingerprint("a", None)
        assert [x.name for x in s.list_searches()] == ["a", "b"] and len(s.trials("a")) == 1
    with ResultReader(url) as r:
        assert (r.open_search("a"), r.get_trial(t1), r.get_trial(t2)) == view
    assert (view[0].fingerprint, view[1].fingerprint, view[2].fingerprint) == ("0123456789abcdef",) * 2 + (None,)


def _set_fingerprints(fingerprint, ids):
    # Trials of one search with different fingerprints, as a backfill or an older driver could leave them.
    from sqlalchemy import update

    from results_db.models import TrialModel

    return update(TrialModel).where(TrialModel.id.in_(ids)).values(fingerprint=fingerprint)


def test_find_result_counts_only_trials_of_its_fingerprint(url):
    s = ResultStore(url)
    s.create_search("a")
    k = s.register_arch(SPINENET_49, flops=5)
    # The same arch scored under two settings, and once before fingerprints existed (NULL).
    [ta, tb, tnull, tfail] = s.add_trials("a", [(k, [1])] * 4, status="running")
    with s._write_conn() as conn:
        conn.execute(_set_fingerprints("fp-a", [ta]))
        conn.execute(_set_fingerprints("fp-b", [tb, tfail]))
    s.finish_trial(ta, status="completed", reward=0.3, metrics={"ap": 0.3})
    s.finish_trial(tb, status="completed", reward=0.9)
    s.finish_trial(tnull, status="completed", reward=1.0)
    s.finish_trial(tfail, status="failed", error="OOM")
    [tc] = s.add_trials("a", [(k, [1])], status="running", fingerprint="fp-c")
    s.finish_trial(tc, status="failed", error="timeout")
    s.close()
    for opener in (ResultStore, ResultReader, lambda u: ResultStore(u, readonly=True)):
        with opener(url) as r:
            a, b = r.find_result(k, fingerprint="fp-a"), r.find_result(k, fingerprint="fp-b")
            assert (a.trial_id, a.reward, a.metrics, a.flops) == (ta, 0.3, {"ap": 0.3}, 5)
            assert (b.trial_id, b.reward) == (tb, 0.9)  # not the NULL trial's 1.0, not fp-a's
            assert r.find_result(k, fingerprint="fp-x") is None
            assert r.find_result(k, fingerprint=None) is None  # None matches nothing, not the NULL trial
            assert r.find_result(k, fingerprint="fp-c") is None
            assert r.find_result(k, fingerprint="fp-c", include_failed=True).error == "timeout"
            assert r.find_result(k, fingerprint="fp-b", include_failed=True).trial_id == tb  # a completion wins


def test_find_result_skips_the_query_for_a_new_key_under_any_fingerprint(store):
    from sqlalchemy import event

    statements = []
    event.listen(store._engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    store.create_search("a")
    k = store.register_arch(SPINENET_49)
    statements.clear()
    assert store.find_result(k, fingerprint="fp-a") is None and store.find_result(k, fingerprint="fp-b") is None
    assert store.find_result("f" * 16, fingerprint="fp-a") is None
    assert statements == []
    [t] = store.add_trials("a", [(k, [1])], status="running", fingerprint="fp-a")
    store.finish_trial(t, status="completed", reward=0.5)
    statements.clear()
    assert store.find_result(k, fingerprint="fp-b") is None and statements  # it has a trial: asked
    assert store.find_result(k, fingerprint="fp-a").trial_id == t


def test_top_within_one_fingerprint(tmp_path):
    from tests.results_db.fixtures import FINGERPRINT

    url = str(tmp_path / "r.db")
    facts = make_db(url)  # 'ppo-1' under FINGERPRINT, 'random-1' (the best arch, 0.9) without one
    key0 = facts["keys"][0]
    with ResultStore(url) as s:
        s.create_search("other", fingerprint="fp-other")
        [t] = s.add_trials("other", [(key0, [0])], status="running", fingerprint="fp-other")
        s.finish_trial(t, status="completed", reward=0.95)
        [t2] = s.add_trials("ppo-1", [(key0, [0])], status="running", fingerprint=FINGERPRINT)
        s.finish_trial(t2, status="completed", reward=0.05)
    with ResultReader(url) as r:
        mixed = r.top(k=3)
        assert [(x.arch_key, x.fingerprint, x.evaluations) for x in mixed[:2]] == [
            (key0, "fp-other", 3), (facts["key49"], None, 1)]
        ranked = r.top(k=50, fingerprint=FINGERPRINT)
        assert len(ranked) == len(facts["rewards"]) and {x.fingerprint for x in ranked} == {FINGERPRINT}
        assert [x.rank for x in ranked] == list(range(1, len(ranked) + 1))
        assert facts["key49"] not in {x.arch_key for x in ranked}
        best = sorted(facts["rewards"].items(), key=lambda kv: -kv[1])
        assert [(x.arch_key, x.reward) for x in ranked] == best
        assert next(x for x in ranked if x.arch_key == key0).evaluations == 2  # its 'other' trial not counted
        assert [x.trial_id for x in r.top(k=5, fingerprint="fp-other")] == [t]
        assert r.top(fingerprint="fp-other", searches=["ppo-1"]) == [] and r.top(fingerprint="nope") == []
        assert r.top(k=50, searches=["ppo-1"], fingerprint=FINGERPRINT) == ranked


def test_lookups_within_a_fingerprint_use_their_indexes(tmp_path):
    """find_result walks the arch's trials (not every trial of the fingerprint); top the fingerprint's rewards."""
    import sqlite3

    from sqlalchemy import event

    from tests.results_db.fixtures import FINGERPRINT

    url = str(tmp_path / "r.db")
    facts = make_db(url)
    statements = []
    with ResultStore(url, readonly=True) as s:
        event.listen(s._engine, "before_cursor_execute", lambda *a: statements.append((a[2], a[3])))
        assert s.find_result(facts["keys"][0], fingerprint=FINGERPRINT, include_failed=True) is not None
        assert s.find_result(facts["keys"][3], fingerprint=FINGERPRINT, include_failed=True).status == "failed"
        assert s.top(k=3, fingerprint=FINGERPRINT)
    with sqlite3.connect(url) as c:
        plans = {sql: " ".join(r[-1] for r in c.execute("EXPLAIN QUERY PLAN " + sql, params))
                 for sql, params in statements if "FROM trials" in sql}  # fmt: skip
    lookups = [p for sql, p in plans.items() if "t.arch_key = ?" in sql]
    ranking = [p for sql, p in plans.items() if "ORDER BY t.reward DESC" in sql]
    assert len(lookups) == 2 and all("USING INDEX ix_trials_arch_status_fingerprint (arch_key=? AND status=? AND "
                                     "fingerprint=?)" in p for p in lookups), lookups
    # Sorted only among equal rewards (the t.id tie-break), as without a fingerprint: the walk stops after k.
    assert len(ranking) == 1 and "USING INDEX ix_trials_fingerprint_status_reward" in ranking[0], ranking
    assert "TEMP B-TREE FOR ORDER BY" not in ranking[0], ranking


def test_newest_fingerprint(store):
    for name, fp in (("a", "fp-1"), ("b", None), ("c", "fp-2"), ("d", None)):
        store.create_search(name, fingerprint=fp)
    assert store.newest_fingerprint() == "fp-2"
    assert store.newest_fingerprint(["a", "b"]) == "fp-1"
    assert store.newest_fingerprint(["c", "a"]) == "fp-2"
    assert store.newest_fingerprint(["b", "d"]) is None and store.newest_fingerprint([]) is None
    with pytest.raises(LookupError, match="unknown search 'x'; expected one of: a, b, c, d"):
        store.newest_fingerprint(["a", "x"])
    with ResultReader(store.url) as r:
        assert r.newest_fingerprint() == "fp-2" and r.newest_fingerprint(["b"]) is None
    with ResultStore("sqlite://") as empty:
        assert empty.newest_fingerprint() is None and empty.fingerprint_summary() == []


def test_fingerprint_summary_and_the_backfill(tmp_path):
    from results_db import FingerprintSummary
    from tests.results_db.fixtures import FINGERPRINT

    url = str(tmp_path / "r.db")
    facts = make_db(url)
    n = facts["n"]
    with ResultReader(url) as r:
        # Newest search first: 'random-1' (no fingerprint, one completed trial), then 'ppo-1'.
        assert r.fingerprint_summary() == [
            FingerprintSummary(fingerprint=None, searches=1, completed=1, newest_search="random-1"),
            FingerprintSummary(fingerprint=FINGERPRINT, searches=1, completed=n - 2, newest_search="ppo-1"),
        ]
    with ResultStore(url) as s:
        before = s.open_search("random-1")
        assert s.set_search_fingerprint("random-1", "fp-rnd") == 1
        after = s.open_search("random-1")
        assert after.fingerprint == "fp-rnd" and after.updated_at == before.updated_at
        assert s.find_result(facts["key49"], fingerprint="fp-rnd").reward == 0.9
        assert s.set_search_fingerprint("random-1", "fp-rnd") == 0  # nothing left to fill
        s.create_search("empty", fingerprint=FINGERPRINT)
        summary = s.fingerprint_summary()
    assert summary == [
        FingerprintSummary(fingerprint=FINGERPRINT, searches=2, completed=n - 2, newest_search="empty"),
        FingerprintSummary(fingerprint="fp-rnd", searches=1, completed=1, newest_search="random-1"),
    ]


def test_set_search_fingerprint_fills_only_trials_without_one(store):
    store.create_search("a")
    store.create_search("b")
    k = store.register_arch(SPINENET_49)
    old = store.add_trials("a", [(k, [1]), (k, [2])])
    [kept] = store.add_trials("a", [(k, [3])], fingerprint="fp-x")
    [elsewhere] = store.add_trials("b", [(k, [1])])
    assert store.set_search_fingerprint("a", "fp-y") == 2
    assert [t.fingerprint for t in store.trials("a")] == ["fp-y", "fp-y", "fp-x"]
    assert store.get_trial(elsewhere).fingerprint is None and store.open_search("b").fingerprint is None
    assert store.set_search_fingerprint("a", "fp-z") == 0 and store.open_search("a").fingerprint == "fp-z"
    assert [t.id for t in store.trials("a")] == old + [kept]
    with pytest.raises(LookupError, match="unknown search 'c'"):
        store.set_search_fingerprint("c", "fp")
