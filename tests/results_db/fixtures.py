"""A small results database with two searches, shared by the results_db and CLI tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from results_db import NewTrial, ResultStore
from results_db.version import SCHEMA_VERSION
from search_space import SPINENET_49, SearchSpace

# The result fingerprint of 'ppo-1' and its trials; 'random-1' has none (a search from before schema 0002).
FINGERPRINT = "fp-ppo"


def make_db(url: str, *, n: int = 24, seed: int = 0) -> dict:
    """Writes searches 'ppo-1' (n trials: completed, one failed, one cached, one still running) and 'random-1'.

    'ppo-1' and its trials have the fingerprint `FINGERPRINT`, 'random-1' and its one trial none.

    Returns:
      Facts the tests check against: keys by reward, the best key, trial ids.
    """
    space = SearchSpace("spinenet49")
    rng = np.random.default_rng(seed)
    store = ResultStore(url)
    store.create_search("ppo-1", config="controller: ppo\nseed: 0\n", seed=0, controller="ppo", family="spinenet49",
                        fingerprint=FINGERPRINT)
    store.create_search("random-1", config={"controller": "random"}, seed=1, controller="random", family="spinenet49")
    facts: dict = {"rewards": {}, "ids": []}
    decisions = [space.random(rng) for _ in range(n)]
    archs = [space.decode(d) for d in decisions]
    keys = store.register_archs(archs, family="spinenet49")
    ids = store.add_trials("ppo-1", [NewTrial(k, d) for k, d in zip(keys, decisions)], status="queued",
                           fingerprint=FINGERPRINT)
    for i, (tid, key) in enumerate(zip(ids, keys)):
        if i == n - 1:
            store.start_trial(tid, host="node-2")  # still running when the "driver" stops
            continue
        store.start_trial(tid, host=f"node-{i % 2}")
        if i == 3:
            store.finish_trial(tid, status="failed", error="OOM when allocating tensor\ntraceback...", wall_s=12.0)
            continue
        reward = round(0.1 + 0.01 * i, 4)
        store.finish_trial(
            tid, status="completed", reward=reward, metrics={"ap": reward, "ap50": reward * 1.5}, wall_s=600.0 + i,
            flops=int(1e9 * (1 + i % 5)), params=int(3e6 + i),
        )
        facts["rewards"][key] = max(reward, facts["rewards"].get(key, 0.0))
    # A proposal of an arch that already has a result: stored as cached, reusing it.
    known = store.find_result(keys[5], fingerprint=FINGERPRINT)
    [cached] = store.add_trials("ppo-1", [NewTrial(keys[5], decisions[5])], status="running", fingerprint=FINGERPRINT)
    store.finish_trial(cached, status="cached", reward=known.reward, metrics=known.metrics, cached_from=known.trial_id)
    key49 = store.register_arch(SPINENET_49, family="spinenet49", flops=int(2.5e9), params=int(4e6))
    [t49] = store.add_trials("random-1", [(key49, (0, 1, 2))], status="running", host="node-9")
    store.finish_trial(t49, status="completed", reward=0.9, metrics={"ap": 0.9}, wall_s=1234.5)
    store.save_checkpoint("ppo-1", 1, {"version": 1, "step": 1, "weights": [0.5, -0.25]})
    store.set_search_status("random-1", "completed")
    store.close()
    facts.update(ids=ids, keys=keys, cached_id=cached, key49=key49, best_key=key49, n=n)
    return facts


# --------------------------------------------------------------------------------------------------- schema 0001
# The columns of each table at revision 0001, in order: what a database written before schema 0002 holds.
COLUMNS_0001 = {
    "archs": ("key", "spec_json", "summary", "family", "flops", "params", "created_at"),
    "searches": ("id", "name", "config", "seed", "controller", "family", "status", "created_at", "updated_at",
                 "finished_at"),
    "trials": ("id", "search_id", "index", "arch_key", "status", "decisions", "reward", "metrics", "error", "attempt",
               "host", "cached_from", "created_at", "started_at", "finished_at", "wall_s", "finish_order"),
    "controller_checkpoints": ("id", "search_id", "step", "state", "created_at"),
}  # fmt: skip


def table_rows(url: str, table: str, columns: tuple[str, ...]) -> list[tuple]:
    """Every row of `table` (the given columns), in primary-key order, through plain SQL."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    quoted = ", ".join(f'"{c}"' for c in columns)
    order = '"key"' if table == "archs" else "id"
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text(f"SELECT {quoted} FROM {table} ORDER BY {order}"))]
    engine.dispose()
    return rows


def make_0001_db(url: str) -> dict:
    """Writes a database at schema revision 0001 with plain SQL, as that revision's code wrote it.

    Two searches, two archs (one with a cost), four trials (completed, failed, cached from the completed one,
    queued) and a controller checkpoint. The database must be empty.

    Returns:
      The arch keys and the names of the searches.
    """
    import datetime

    from sqlalchemy import create_engine, text

    from results_db.migrate import upgrade

    assert upgrade(url, revision="0001") == (None, "0001")
    space = SearchSpace("spinenet49")
    other = space.decode(space.random(np.random.default_rng(1)))
    t0 = datetime.datetime(2024, 5, 1, 12, 0, 0, 123456)
    engine = create_engine(url)
    sqlite = engine.dialect.name == "sqlite"

    def ts(seconds: float) -> object:
        t = t0 + datetime.timedelta(seconds=seconds)
        return t.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else t  # how SQLAlchemy's DateTime stores it there

    with engine.begin() as conn:
        for arch, flops, params in ((SPINENET_49, 2_500_000_000, 4_000_000), (other, None, None)):
            conn.execute(
                text('INSERT INTO archs ("key", spec_json, summary, family, flops, params, created_at) '
                     "VALUES (:key, :spec, :summary, 'spinenet49', :flops, :params, :t)"),
                {"key": arch.key, "spec": arch.canonical().to_json(), "summary": arch.summary(), "flops": flops,
                 "params": params, "t": ts(0)},
            )  # fmt: skip
        for name, status, finished in (("old-ppo", "completed", ts(900)), ("old-random", "running", None)):
            conn.execute(
                text("INSERT INTO searches (name, config, seed, controller, family, status, created_at, updated_at, "
                     "finished_at) VALUES (:name, :config, 3, 'ppo', 'spinenet49', :status, :t, :u, :f)"),
                {"name": name, "config": f"search:\n  name: {name}\n", "status": status, "t": ts(1), "u": ts(800),
                 "f": finished},
            )  # fmt: skip
        sid = dict(conn.execute(text("SELECT name, id FROM searches")).all())
        insert_trial = text(
            'INSERT INTO trials (search_id, "index", arch_key, status, decisions, reward, metrics, error, attempt, '
            "host, cached_from, created_at, started_at, finished_at, wall_s, finish_order) VALUES (:s, :i, :k, :st, "
            ":d, :r, :m, :e, :a, :h, :c, :t, :start, :end, :w, :o)"
        )
        base = {"r": None, "m": None, "e": None, "a": 1, "h": "node-1", "c": None, "t": ts(2), "start": ts(3),
                "end": ts(600), "w": 597.5}  # fmt: skip
        conn.execute(insert_trial, {**base, "s": sid["old-ppo"], "i": 0, "k": SPINENET_49.key, "st": "completed",
                                    "d": "[0,1,2]", "r": 0.31, "m": '{"ap":0.31,"ap50":0.47}', "o": 1})
        conn.execute(insert_trial, {**base, "s": sid["old-ppo"], "i": 1, "k": other.key, "st": "failed",
                                    "d": "[3,4]", "e": "OOM when allocating tensor", "w": 12.0, "o": 2})
        completed = conn.execute(text('SELECT id FROM trials WHERE search_id = :s AND "index" = 0'),
                                 {"s": sid["old-ppo"]}).scalar()
        conn.execute(insert_trial, {**base, "s": sid["old-random"], "i": 0, "k": SPINENET_49.key, "st": "cached",
                                    "d": "[0,1,2]", "r": 0.31, "m": '{"ap":0.31}', "a": 0, "h": None,
                                    "c": completed, "start": None, "w": 0.0, "o": 1})
        conn.execute(insert_trial, {**base, "s": sid["old-random"], "i": 1, "k": other.key, "st": "queued",
                                    "d": "[3,4]", "a": 0, "h": None, "start": None, "end": None, "w": None,
                                    "o": None})
        conn.execute(
            text("INSERT INTO controller_checkpoints (search_id, step, state, created_at) VALUES (:s, 1, :state, :t)"),
            {"s": sid["old-ppo"], "state": '{"version":1,"w":[0.5]}', "t": ts(700)},
        )
    engine.dispose()
    return {"keys": [SPINENET_49.key, other.key], "searches": ["old-ppo", "old-random"], "completed": completed}


def assert_0001_upgrades(url: str) -> None:
    """`make_0001_db`, `upgrade`, then every row is there unchanged, the new columns NULL, and the store works."""
    facts = make_0001_db(url)
    before = {t: table_rows(url, t, cols) for t, cols in COLUMNS_0001.items()}
    assert [len(rows) for rows in before.values()] == [2, 2, 4, 1]

    from results_db.migrate import upgrade

    assert upgrade(url) == ("0001", SCHEMA_VERSION)
    assert {t: table_rows(url, t, cols) for t, cols in COLUMNS_0001.items()} == before
    assert table_rows(url, "searches", ("fingerprint", "kind")) == [(None, "search")] * 2
    assert table_rows(url, "trials", ("fingerprint",)) == [(None,)] * 4
    assert table_rows(url, "trial_reports", ("id",)) == []

    completed = facts["completed"]
    key49, other = facts["keys"]
    with ResultStore(url) as store:
        old = store.open_search("old-ppo")
        assert (old.status, old.fingerprint, old.config) == ("completed", None, "search:\n  name: old-ppo\n")
        trials = store.trials("old-ppo") + store.trials("old-random")
        assert [(t.status, t.fingerprint) for t in trials] == [
            ("completed", None), ("failed", None), ("cached", None), ("queued", None)]
        assert trials[0].metrics == {"ap": 0.31, "ap50": 0.47} and trials[2].cached_from == completed
        assert store.history("old-ppo") == [((0, 1, 2), 0.31), ((3, 4), None)]
        assert store.load_checkpoint("old-ppo").state == {"version": 1, "w": [0.5]}
        assert store.top(k=5)[0].arch_key == key49  # every fingerprint, NULL included
        # An old result is not reused before its search has a fingerprint: nothing says what it was scored with.
        assert store.find_result(key49, fingerprint="fp-old") is None
        assert store.reports([completed]) == {completed: []}
        assert store.set_search_fingerprint("old-ppo", "fp-old") == 2
        assert store.find_result(key49, fingerprint="fp-old").trial_id == completed
        assert store.find_result(other, fingerprint="fp-old", include_failed=True).error.startswith("OOM")
        assert store.newest_fingerprint() == "fp-old"
        # The new tables and columns take writes: the queued trial runs under a fingerprint and reports.
        queued = trials[3].id
        store.start_trial(queued, host="node-2")
        store.finish_trial(queued, status="completed", reward=0.2, reports=[(10, {"train_loss": 1.5})])
        assert [r.metrics for r in store.reports([queued])[queued]] == [{"train_loss": 1.5}]
        store.create_search("new", fingerprint="fp-new")
        [t] = store.add_trials("new", [(other, [3, 4])], status="running", fingerprint="fp-new")
        assert store.get_trial(t).fingerprint == "fp-new"


# --------------------------------------------------------------------------------------------------- schema 0003
def _insert_trial_sql() -> str:
    return ('INSERT INTO trials (search_id, "index", arch_key, status, decisions, attempt, created_at, finished_at, '
            "finish_order, fingerprint) VALUES (:s, :i, :k, :st, '[1]', 1, :t, :t, :o, 'fp-3')")


def _upgrade_adds_a_status(url: str, *, at: str, new: str, statuses: tuple[str, ...], name: str,
                           when: Any) -> None:
    """Makes an empty database at revision `at` with a search `name` holding one trial of each of `statuses` (the
    last one running) and a report, checks that `at` refuses a trial of status `new` (and of an unknown one), then
    upgrades to the newest schema: every trial and report row is kept, and an unknown status is still refused."""
    from sqlalchemy import create_engine, exc, text

    from results_db.migrate import upgrade

    assert upgrade(url, revision=at) == (None, at)
    engine = create_engine(url)
    t = when.strftime("%Y-%m-%d %H:%M:%S.%f") if engine.dialect.name == "sqlite" else when
    with engine.begin() as conn:
        conn.execute(text('INSERT INTO archs ("key", spec_json, summary, created_at) VALUES (:k, :j, :m, :t)'),
                     {"k": SPINENET_49.key, "j": SPINENET_49.canonical().to_json(), "m": SPINENET_49.summary(), "t": t})
        conn.execute(text("INSERT INTO searches (name, config, controller, family, status, kind, fingerprint, "
                          "created_at, updated_at) VALUES (:n, '', 'random', 'spinenet49', 'running', 'search', "
                          "'fp-3', :t, :t)"), {"n": name, "t": t})
        sid = conn.execute(text("SELECT id FROM searches")).scalar()
        for i, st in enumerate(statuses):
            conn.execute(text(_insert_trial_sql()), {"s": sid, "i": i, "k": SPINENET_49.key, "st": st, "t": t,
                                                     "o": i + 1 if st != "running" else None})
        first = conn.execute(text('SELECT id FROM trials WHERE "index" = 0')).scalar()
        conn.execute(text("INSERT INTO trial_reports (trial_id, step, metrics, created_at) VALUES (:i, 5, :m, :t)"),
                     {"i": first, "m": '{"loss": 1.5}', "t": t})

    def refused(status: str, schema: str) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text(_insert_trial_sql()), {"s": sid, "i": 9, "k": SPINENET_49.key, "st": status,
                                                         "t": t, "o": 9})
        except exc.IntegrityError:
            pass
        else:
            raise AssertionError(f"schema {schema} stored a trial of status {status!r}")

    for bad in (new, "bogus"):  # `at` knows no `new`
        refused(bad, at)
    engine.dispose()
    columns = ("id", "search_id", "index", "arch_key", "status", "decisions", "finish_order", "fingerprint")

    def rows() -> tuple:
        return table_rows(url, "trials", columns), table_rows(url, "trial_reports", ("id", "trial_id", "metrics"))

    before = rows()
    assert upgrade(url) == (at, SCHEMA_VERSION)
    assert rows() == before
    engine = create_engine(url)
    refused("bogus", f"{SCHEMA_VERSION} lost the trial_status constraint:")
    engine.dispose()


def assert_0003_upgrades(url: str) -> None:
    """A database at revision 0003 refuses a 'rejected' trial (its CHECK constraint lists the older statuses);
    `upgrade` keeps every row, and then a rejected trial is stored, while an unknown status is still refused.

    The database must be empty.
    """
    import datetime

    _upgrade_adds_a_status(url, at="0003", new="rejected", statuses=("completed", "failed", "cached", "running"),
                           name="s3", when=datetime.datetime(2026, 12, 1, 12, 0, 0))
    with ResultStore(url) as store:
        [running] = store.trials("s3", status="running")
        store.finish_trial(running.id, status="rejected", metrics={"flops": 3e9}, error="over max_flops", wall_s=0.0,
                           flops=3_000_000_000)
        [new] = store.add_trials("s3", [(SPINENET_49.key, [2])], fingerprint="fp-3")
        store.finish_trial(new, status="rejected", error="over max_flops")
        assert [t.status for t in store.trials("s3")] == ["completed", "failed", "cached", "rejected", "rejected"]
        assert store.history("s3")[-2:] == [((1,), None), ((2,), None)]
        assert store.search_summaries()[0].counts["rejected"] == 2
        assert store.get_arch(SPINENET_49.key).flops == 3_000_000_000
        assert store.find_result(SPINENET_49.key, fingerprint="fp-3").status == "completed"


# --------------------------------------------------------------------------------------------------- schema 0004
def assert_0004_upgrades(url: str) -> None:
    """A database at revision 0004 refuses a 'pruned' trial (its CHECK constraint lists the older statuses);
    `upgrade` keeps every row, and then a pruned trial is stored, while an unknown status is still refused.

    The database must be empty.
    """
    import datetime

    _upgrade_adds_a_status(url, at="0004", new="pruned",
                           statuses=("completed", "failed", "cached", "rejected", "running"), name="s4",
                           when=datetime.datetime(2026, 12, 2, 5, 0, 0))
    with ResultStore(url) as store:
        [running] = store.trials("s4", status="running")
        store.finish_trial(running.id, status="pruned", reward=0.2, metrics={"ap": 0.1, "rung": 100, "steps": 100},
                           wall_s=1.0)
        assert [t.status for t in store.trials("s4")] == ["completed", "failed", "cached", "rejected", "pruned"]
        assert store.history("s4")[-1] == ((1,), 0.2)
        assert store.search_summaries()[0].counts["pruned"] == 1
        assert store.find_result(SPINENET_49.key, fingerprint="fp-3").status == "completed"
