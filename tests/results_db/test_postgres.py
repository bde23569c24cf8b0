"""The same store on PostgreSQL: runs only with SPINENAS_TEST_PG_URL (an empty database) and a driver installed."""

from __future__ import annotations

import os

import pytest

from results_db import NewTrial, ResultReader, ResultStore
from search_space import SPINENET_49
from tests.results_db.fixtures import assert_0001_upgrades, assert_0003_upgrades, assert_0004_upgrades

PG_URL = os.environ.get("SPINENAS_TEST_PG_URL")

pytestmark = pytest.mark.skipif(not PG_URL, reason="set SPINENAS_TEST_PG_URL=postgresql://... to run")


def _drop_everything() -> None:
    from sqlalchemy import create_engine

    from results_db.models import BaseModel

    engine = create_engine(PG_URL)
    BaseModel.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    engine.dispose()


@pytest.fixture
def pg_store():
    store = ResultStore(PG_URL)
    yield store
    store.close()
    _drop_everything()


@pytest.fixture
def pg_empty():
    """The test database with no tables (whatever an earlier test left), and none afterwards."""
    _drop_everything()
    yield PG_URL
    _drop_everything()


def test_store_round_trip_on_postgres(pg_store):
    pg_store.create_search("pg", config="a: 1", seed=1, controller="ppo", family="spinenet49")
    key = pg_store.register_arch(SPINENET_49, flops=10, params=20)
    ids = pg_store.add_trials("pg", [NewTrial(key, [1, 2]), NewTrial(key, [3])], status="running", host="h",
                              fingerprint="fp")
    pg_store.finish_trial(ids[0], status="completed", reward=0.5, metrics={"ap": 0.5}, wall_s=2.0)
    pg_store.finish_trial(ids[1], status="failed", error="x")
    assert pg_store.history("pg") == [((1, 2), 0.5), ((3,), None)]
    assert pg_store.find_result(key, fingerprint="fp").trial_id == ids[0]
    with ResultReader(PG_URL) as r:
        assert r.top(k=1)[0].arch_key == key
        assert [t.status for t in r.trials("pg")] == ["completed", "failed"]


def test_a_new_arch_costs_one_insert_and_its_lookup_no_query_on_postgres(pg_store):
    # INSERT .. ON CONFLICT DO NOTHING RETURNING: PostgreSQL's drivers do not all keep an INSERT's row count.
    from sqlalchemy import event

    statements = []
    event.listen(pg_store._engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    pg_store.create_search("pg")
    other = ResultStore(PG_URL)  # opened before the key exists
    statements.clear()
    key = pg_store.register_arch(SPINENET_49, family="spinenet49")
    assert [s.split()[0] for s in statements] == ["INSERT"]
    statements.clear()
    assert pg_store.find_result(key, fingerprint="fp") is None and statements == []
    # The other store has not seen the key: its insert finds the row there, and the cost is filled in.
    assert other.register_arch(SPINENET_49, flops=3) == key and other.get_arch(key).flops == 3
    [t] = pg_store.add_trials("pg", [NewTrial(key, [1])], status="running", fingerprint="fp")
    pg_store.finish_trial(t, status="completed", reward=0.2)
    assert other.find_result(key, fingerprint="fp").trial_id == t
    other.close()


def test_reports_upsert_on_postgres(pg_store):
    # INSERT .. ON CONFLICT (trial_id, step) DO UPDATE: a re-run's report of a step replaces the first one.
    pg_store.create_search("pg", fingerprint="fp")
    key = pg_store.register_arch(SPINENET_49)
    [t] = pg_store.add_trials("pg", [NewTrial(key, [1])], status="running", fingerprint="fp")
    assert pg_store.add_reports(t, [(2, {"train_loss": 2.0}), (1, {"train_loss": 2.5}), (2, {"train_loss": 1.9})]) == 2
    assert pg_store.add_reports(t, [(2, {"train_loss": float("nan"), "learning_rate": 0.1})]) == 1
    pg_store.finish_trial(t, status="completed", reward=0.3, reports=[(3, {"ap": 0.3}), (1, {"train_loss": 2.4})])
    with pytest.raises(LookupError, match="unknown trial id 9999"):
        pg_store.add_reports(9999, [(1, {"train_loss": 1.0})])
    with ResultReader(PG_URL) as r:
        curve = r.reports([t, 9999])
        assert list(curve) == [t, 9999] and curve[9999] == []
        assert [(p.step, p.metrics) for p in curve[t]] == [
            (1, {"train_loss": 2.4}), (2, {"train_loss": None, "learning_rate": 0.1}), (3, {"ap": 0.3})]
        assert r.find_result(key, fingerprint="fp").trial_id == t and r.find_result(key, fingerprint="x") is None
        assert [a.fingerprint for a in r.top(fingerprint="fp")] == ["fp"] and r.top(fingerprint="x") == []
        assert r.newest_fingerprint() == "fp" and r.fingerprint_summary()[0].completed == 1


def test_a_0001_database_upgrades_on_postgres(pg_empty):
    assert_0001_upgrades(pg_empty)


def test_a_0003_database_upgrades_to_0004_and_takes_rejected_trials_on_postgres(pg_empty):
    assert_0003_upgrades(pg_empty)


def test_a_0004_database_upgrades_to_0005_and_takes_pruned_trials_on_postgres(pg_empty):
    assert_0004_upgrades(pg_empty)
