"""The same store on PostgreSQL: runs only with SPINENAS_TEST_PG_URL (an empty database) and a driver installed."""

from __future__ import annotations

import os

import pytest

from results_db import NewTrial, ResultReader, ResultStore
from search_space import SPINENET_49

PG_URL = os.environ.get("SPINENAS_TEST_PG_URL")

pytestmark = pytest.mark.skipif(not PG_URL, reason="set SPINENAS_TEST_PG_URL=postgresql://... to run")


@pytest.fixture
def pg_store():
    from sqlalchemy import create_engine

    from results_db.models import BaseModel

    store = ResultStore(PG_URL)
    yield store
    store.close()
    engine = create_engine(PG_URL)
    BaseModel.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    engine.dispose()


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
