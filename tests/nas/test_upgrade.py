"""A database written by the version before schema 0002 and config sections upgrades, and its search resumes.

The old database is made the way that version left it: a search stopped half way with trials in flight, at schema
revision 0001 (no fingerprints, no learning curves), its config in the old layout (``search.controller``,
``search.evaluator``, ``search.surrogate_*``).
"""

from __future__ import annotations

import sqlite3

import pytest
import yaml

from nas.config.codec import to_dict
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


# A driver of `spinenas db upgrade` runs that interrupt it: after its migration statement `at` (counted as in
# tests/results_db/test_migrate.py) the child sends itself a signal: SIGKILL after every statement, SIGINT and SIGTERM
# after every third. One fork per case from one interpreter that has imported everything and counted the statements
# in a warm-up upgrade (a case costs ~50 ms, not a fresh interpreter's second). Prints {case: [signal, exit code]}.
_KILL_AT = r"""
import json, os, shutil, signal, sys
from alembic.ddl.impl import DefaultImpl
from nas import cli
from results_db.migrate import upgrade
base, work = sys.argv[1], sys.argv[2]
original = DefaultImpl._exec
state = {"n": 0, "at": 0, "sig": 0}
def _exec(impl, construct, *args, **kwargs):
    result = original(impl, construct, *args, **kwargs)
    state["n"] += 1
    if state["n"] == state["at"]:
        os.kill(os.getpid(), state["sig"])
    return result
DefaultImpl._exec = _exec
cli.build_parser()  # every command module imported once, here
shutil.copyfile(base, os.path.join(work, "warm.db"))
upgrade(os.path.join(work, "warm.db"))  # Alembic, SQLAlchemy and the migrations loaded once, here
total = state["n"]
cases = [(f"kill-{at}", signal.SIGKILL, at) for at in range(1, total + 1)]
cases += [(f"{name}-{at}", sig, at) for at in range(1, total + 1, 3)
          for name, sig in (("int", signal.SIGINT), ("term", signal.SIGTERM))]
out = {}
for name, sig, at in cases:
    db = os.path.join(work, name + ".db")
    shutil.copyfile(base, db)
    state.update(n=0, at=at, sig=sig)
    pid = os.fork()
    if pid == 0:
        fd = os.open(os.path.join(work, name + ".err"), os.O_WRONLY | os.O_CREAT, 0o644)
        os.dup2(fd, 2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        code = 99
        try:
            code = cli.main(["db", "upgrade", "--db", db])
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    out[name] = [os.WTERMSIG(status) if os.WIFSIGNALED(status) else None, os.WEXITSTATUS(status)
                 if os.WIFEXITED(status) else None]
print(json.dumps({"total": total, "exits": out}))
"""


def test_db_upgrade_killed_ctrl_c_or_sigterm_at_any_statement_leaves_the_old_database_and_reruns(tmp_path):
    """kill -9 after every statement of `db upgrade`, and Ctrl-C and SIGTERM after every third, leave the database
    exactly as it was (not trial_reports at version 0001, which would fail every later upgrade with 'table
    trial_reports already exists'); `db upgrade` then completes it."""
    import json
    import signal
    import subprocess
    import sys

    from results_db.migrate import upgrade
    from tests.results_db.fixtures import COLUMNS_0001, make_0001_db, table_rows
    from tests.results_db.test_migrate import dump

    base = tmp_path / "base.db"
    make_0001_db(f"sqlite:///{base}")
    before = dump(base)
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-c", _KILL_AT, str(base), str(work)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    total, exits = report["total"], report["exits"]
    assert total >= 30 and len(exits) == total + 2 * len(range(1, total + 1, 3))
    expected = {"kill": [signal.SIGKILL, None], "int": [None, 130], "term": [None, 143]}
    for name, got in exits.items():
        kind = name.split("-")[0]
        assert got == expected[kind], (name, got)
        err = (work / f"{name}.err").read_text()
        if kind != "kill":
            assert err == f"spinenas: {'interrupted' if kind == 'int' else 'terminated'}\n", (name, err)
        assert dump(work / f"{name}.db") == before, f"{name}: the database changed"
    rows = {t: table_rows(f"sqlite:///{base}", t, cols) for t, cols in COLUMNS_0001.items()}
    rerun = spinenas("db", "upgrade", "--db", str(work / "kill-17.db"), cwd=tmp_path)
    assert rerun.returncode == 0 and "schema version 0001 -> 0006" in rerun.stdout, rerun.stderr
    for name in ("kill-17", "kill-1", f"kill-{total}", "int-16", "term-34"):
        url = f"sqlite:///{work / f'{name}.db'}"
        if name != "kill-17":
            assert upgrade(url) == ("0001", "0006")
        assert {t: table_rows(url, t, cols) for t, cols in COLUMNS_0001.items()} == rows
