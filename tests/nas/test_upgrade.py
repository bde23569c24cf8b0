"""A database written by the version before schema 0002 and config sections upgrades, and its search resumes.

The old database is made the way that version left it: a search stopped half way with trials in flight, at schema
revision 0001 (no fingerprints, no learning curves), its config in the old layout (``search.controller``,
``search.evaluator``, ``search.surrogate_*``).
"""

from __future__ import annotations

import sqlite3

import pytest
import yaml

from nas.config_io import to_dict
from results_db import ResultStore
from tests.nas.helpers import cfg_of, run_search, spinenas

pytestmark = pytest.mark.slow


def _old_layout(cfg) -> str:
    d = to_dict(cfg)
    d["search"].update(controller=d["controller"]["type"], evaluator=d["evaluator"]["type"],
                       surrogate_duration_s=d["evaluator"]["surrogate"]["duration_s"],
                       surrogate_noise=d["evaluator"]["surrogate"]["noise"])
    for section in ("controller", "evaluator", "runner"):
        del d[section]
    del d["proxy"]["eval_at_steps"]
    return yaml.safe_dump(d, sort_keys=False)


def test_an_old_database_upgrades_and_its_search_resumes_and_finishes(tmp_path):
    cfg = cfg_of(controller="evolution", trials=12, workers=1, seed=5, noise=0.01)
    db = tmp_path / "old.db"
    url = f"sqlite:///{db}"
    store, outcome, _ = run_search(tmp_path, cfg, name="old", db=url)
    trials = store.trials("old")
    store.close()
    # What the old version left after a crash at trial 8: trials 8.. still running, their results unknown.
    con = sqlite3.connect(db)
    con.execute("UPDATE trials SET status = 'running', reward = NULL, metrics = NULL, finished_at = NULL, "
                "finish_order = NULL WHERE \"index\" >= 8")
    con.execute("UPDATE searches SET status = 'running', finished_at = NULL, config = ?", (_old_layout(cfg),))
    con.execute("DELETE FROM controller_checkpoints")
    con.commit()
    con.close()
    from alembic import command

    from results_db.migrate import alembic_config

    command.downgrade(alembic_config(url), "0001")  # back to the old schema: no fingerprints, no curves
    assert "trial_reports" not in {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")}
    done_before = {t.index: t for t in trials if t.index < 8}

    refused = spinenas("top", "--db", str(db), cwd=tmp_path)
    assert refused.returncode == 2 and "spinenas db upgrade" in refused.stderr

    up = spinenas("db", "upgrade", "--db", str(db), cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    assert "0001 -> 0006" in up.stdout and "fingerprints computed from the stored configs of 1 search" in up.stdout

    resumed = spinenas("search", "--resume", "old", "--runner", "local", "--db", str(db), "--run-dir",
                        str(tmp_path / "runs"), "--top", "0", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "resuming search 'old': 8 trials done, 4 to run again" in resumed.stdout
    with ResultStore(url) as store:
        after = {t.index: t for t in store.trials("old")}
        assert len(after) == 12 and all(t.status in ("completed", "cached") for t in after.values())
        for i, t in done_before.items():  # no finished trial ran again
            assert after[i].finished_at == t.finished_at and after[i].reward == t.reward
        # The evolution controller, rebuilt from the old config's defaults, proposes what the first run did.
        assert [after[i].decisions for i in range(12)] == [t.decisions for t in trials]
        assert store.open_search("old").status == "completed"
        fingerprint = store.open_search("old").fingerprint
        assert fingerprint and {t.fingerprint for t in after.values()} == {fingerprint}
    # A new search with the same settings reuses the old results: the backfilled fingerprint is today's.
    store, outcome, _ = run_search(tmp_path, cfg, name="new", db=url)
    assert outcome.cached == 12
    assert store.open_search("new").fingerprint == fingerprint
