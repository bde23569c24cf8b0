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
    ids = pg_store.add_trials("pg", [NewTrial(key, [1, 2]), NewTrial(key, [3])], status="running", host="h")
    pg_store.finish_trial(ids[0], status="completed", reward=0.5, metrics={"ap": 0.5}, wall_s=2.0)
    pg_store.finish_trial(ids[1], status="failed", error="x")
    assert pg_store.history("pg") == [((1, 2), 0.5), ((3,), None)]
    assert pg_store.find_result(key).trial_id == ids[0]
    with ResultReader(PG_URL) as r:
        assert r.top(k=1)[0].arch_key == key
        assert [t.status for t in r.trials("pg")] == ["completed", "failed"]
