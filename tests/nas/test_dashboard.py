"""`spinenas dashboard` without a browser: bad input is one line and exit 2, what each page reads from a surrogate
search, the page's callbacks over HTTP (Flask's test client) including on a damaged database, and no TensorFlow or
Ray in its process. The browser test is tests/nas/test_dashboard_browser.py."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from tests.nas.helpers import cfg_of, run_cli, run_search

_ASHA = {"rungs": (100,), "eta": 2, "min_results": 2}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished ASHA surrogate search 's' of 12 trials (completed and pruned) and a second one 'again' whose
    trials are all cached: (tmp folder, database path)."""
    tmp = tmp_path_factory.mktemp("dash")
    store, _, _ = run_search(tmp, cfg_of(trials=12, workers=2, asha=_ASHA), name="s", tensorboard=False)
    store.close()
    store, _, _ = run_search(tmp, cfg_of(trials=3, workers=1, asha=_ASHA), name="again", tensorboard=False)
    store.close()
    return tmp, str(tmp / "r.db")


def _data(db, **kwargs):
    from nas.dashboard.data import DashboardData
    from results_db.reader import ResultReader

    return DashboardData(ResultReader(db), **kwargs)


# --------------------------------------------------------------------------------------------------- bad input
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, searched):
    _, db = searched
    code, out, err = run_cli(capsys, "dashboard", "--db", str(tmp_path / "missing.db"))
    assert code == 2 and out == "" and err.count("\n") == 1 and "no database at" in err
    code, _, err = run_cli(capsys, "dashboard", "--db", db, "--search", "nope")
    assert code == 2 and err.count("\n") == 1 and "unknown search 'nope'; expected one of: s, again" in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, _, err = run_cli(capsys, "dashboard", "--db", db, "--port", str(port))
    assert code == 2 and err == f"spinenas: error: port {port} on 127.0.0.1 is in use (--port N chooses another; " \
                                "--port 0 any free one)\n"
    code, _, err = run_cli(capsys, "dashboard", "--db", db, "--port", "70000")
    assert code == 2 and err.count("\n") == 1 and "--port must be 0..65535" in err
    not_a_db = tmp_path / "notes.db"
    not_a_db.write_text("not a database\n" * 100)
    code, _, err = run_cli(capsys, "dashboard", "--db", str(not_a_db))
    assert code == 2 and err.count("\n") == 1 and "not a SQLite database" in err
    damaged = tmp_path / "damaged.db"
    shutil.copy(db, damaged)
    _damage(str(damaged))
    code, _, err = run_cli(capsys, "dashboard", "--db", str(damaged))
    assert code == 2 and err.count("\n") == 1 and "malformed" in err


# --------------------------------------------------------------------------------------------------- data
def test_the_overview_counts_each_search_as_searches_does(searched):
    _, db = searched
    rows = {r["name"]: r for r in _data(db).overview()}
    s, again = rows["s"], rows["again"]
    assert s["budget"] == 12 and s["trials"] == 12 and s["completed"] + s["pruned"] == 12 and s["pruned"] > 0
    assert s["running"] == 0 and s["scheduler"] == "asha" and s["status"] == "completed"
    assert s["updates"] == 12  # the random controller updates on every feedback; the last checkpoint ends it
    assert again["cached"] == 3 and again["trial_s"] == 0.0
    assert s["best_reward"] is not None and s["trial_s"] > 0


def test_the_trial_rows_and_curves_show_pruned_trials_cut_at_their_rung_and_the_rungs_cut(searched):
    _, db = searched
    data = _data(db)
    rows = data.trial_rows("s")
    assert [r["index"] for r in rows] == list(range(12))
    assert {r["status"] for r in rows} == {"completed", "pruned"}
    for r in rows:
        assert r["flops"] > 0 and r["params"] > 0 and r["host"] and r["seconds"] is not None
        assert r["steps"] == (100 if r["status"] == "pruned" else 200)
    d = data.curves("s")
    pruned = [t for t in d["trials"] if t["status"] == "pruned"]
    assert pruned and all(t["steps"][-1] == 100 for t in pruned)
    [rung] = d["rungs"]
    aps = sorted((t["ap"][t["steps"].index(100)] for t in d["trials"]), reverse=True)
    assert rung["step"] == 100 and rung["n"] == 12 and rung["exact"]
    assert rung["cut"] == aps[12 // 2 - 1] and rung["rule"] == "top 1/2: 6 of 12"
    # Finished trials' curves are read once: a second read asks the database for none of them.
    asked = []
    original = data.reader.reports
    data.reader.reports = lambda ids: asked.append(list(ids)) or original(ids)
    data.curves("s")
    assert asked == []


def test_compute_and_decisions(searched):
    _, db = searched
    data = _data(db)
    series = data.compute(["s", "again"])
    assert len(series["s"]) == 12 and series["s"][-1][0] > 0 and series["again"][-1][0] == 0.0
    d = data.decisions("s")
    assert d["labels"][:2] == ["output_order.0", "output_order.1"]
    assert d["rows"] and all(len(r["decisions"]) == len(d["labels"]) for r in d["rows"])
    blocks = d["rows"][0]["blocks"]
    assert {"block0.level", "block0.block_fn", "block0.parents"} <= set(blocks)


@pytest.mark.slow
def test_importance_ranks_the_decision_the_reward_depends_on():
    from nas.dashboard.data import importance

    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(80, 6))
    y = 0.1 * x[:, 2] + 0.001 * rng.random(80)
    d = importance([f"d{i}" for i in range(6)], x.tolist(), y.tolist())
    assert d["labels"][0] == "d2" and d["oob_r2"] > 0.8 and d["n"] == 80
    with pytest.raises(ValueError, match="at least 8 completed trials"):
        importance(["a"], [[0]] * 3, [0.1] * 3)


@pytest.mark.slow
def test_a_trial_page_has_its_log_tail_and_export_command(searched, tmp_path):
    _, db = searched
    runs = tmp_path / "runs"
    (runs / "s").mkdir(parents=True)
    (runs / "s" / "search.log").write_text("".join(f"2026 INFO x: [trial {i % 3}] line {i}\n" for i in range(100)))
    data = _data(db, runs=str(runs), db_arg=db)
    first = data.trial_rows("s")[1]
    page = data.trial(first["id"])
    assert page["trial"].index == 1 and page["arch"].key == first["key"]
    assert page["log"] == [f"2026 INFO x: [trial 1] line {i}" for i in range(1, 100, 3)][-40:]
    assert page["export"] == f"spinenas export {first['key']} --db {db} --out exports/{first['key']}"
    assert page["curve"] and page["curve"][-1]["step"] == first["steps"]
    assert data.diagram(page["arch"].spec_json, first["key"]).startswith("iVBOR")  # a PNG
    assert _data(db).trial(first["id"])["log"] is None
    with pytest.raises(LookupError):
        data.trial(10_000)


# --------------------------------------------------------------------------------------------------- over HTTP
def _call(client, app, output: str, inputs: dict, state: dict | None = None, changed: str | None = None):
    """Runs one of the app's callbacks as the browser does (POST /_dash-update-component): its JSON response."""
    spec = app.callback_map[output]
    ids = [(o["id"], o["property"]) for o in _outputs(output)]
    body = {
        "output": output,
        "outputs": [{"id": i, "property": p} for i, p in ids] if output.startswith("..") else
        {"id": ids[0][0], "property": ids[0][1]},
        "inputs": [{"id": i["id"], "property": i["property"], "value": inputs.get(f"{i['id']}.{i['property']}")}
                   for i in spec["inputs"]],
        "state": [{"id": s["id"], "property": s["property"], "value": (state or {}).get(f"{s['id']}.{s['property']}")}
                  for s in spec["state"]],
        "changedPropIds": [changed or next(iter(inputs))],
    }
    r = client.post("/_dash-update-component", data=json.dumps(body), content_type="application/json")
    assert r.status_code in (200, 204), r.get_data(as_text=True)[:500]
    return r.get_json() if r.status_code == 200 else {}


def _outputs(key: str) -> list[dict]:
    parts = key.strip(".").split("...") if key.startswith("..") else [key]
    return [{"id": p.rsplit(".", 1)[0], "property": p.rsplit(".", 1)[1]} for p in parts]


def _app(data):
    from nas.dashboard.app import build_app

    app = build_app(data)
    return app, app.server.test_client()


@pytest.mark.slow
def test_the_callbacks_answer_over_http(searched):
    _, db = searched
    data = _data(db)
    app, client = _app(data)
    assert client.get("/").status_code == 200 and client.get("/trial/3").status_code == 200
    out = _call(client, app, "..search.options...search.value...compute-searches.options...study.options..."
                "health.children..", {"tick.n_intervals": 1, "searches-table.cellClicked": None})
    assert out["response"]["search"] == {"options": ["s", "again"], "value": "again"}
    out = _call(client, app, "..trials-table.rowData...trials-note.children...trials-sig.data..",
                {"tick.n_intervals": 1, "tabs.value": "trials", "search.value": "s"})
    rows = out["response"]["trials-table"]["rowData"]
    assert len(rows) == 12 and rows[0]["id"] == str(data.trial_rows("s")[0]["id"])
    # The next tick with nothing new sends nothing (the page has those rows).
    again = _call(client, app, "..trials-table.rowData...trials-note.children...trials-sig.data..",
                  {"tick.n_intervals": 2, "tabs.value": "trials", "search.value": "s"},
                  state={"trials-sig.data": out["response"]["trials-sig"]["data"]})
    assert again.get("response", {}) == {}
    # A click on a row of the trials opens its page.
    out = _call(client, app, "url.pathname", {"trials-table.cellClicked": {"rowIndex": 0, "colId": "status",
                                                                           "rowId": "5", "value": "completed"},
                                              "curves-graph.clickData": None})
    assert out["response"]["url"]["pathname"] == "/trial/5"
    out = _call(client, app, "..trial-content.children...trial-sig.data..",
                {"url.pathname": "/trial/5", "tick.n_intervals": 1})
    assert "trial 4 of s" in json.dumps(out)
    for tab, key in (("curves", "..curves-graph.figure...curves-note.children...curves-sig.data.."),
                     ("compute", "..compute-graph.figure...compute-note.children.."),
                     ("calibration", "calibration-content.children")):
        inputs = {"tick.n_intervals": 1, "tabs.value": tab, "search.value": "s", "curve-metric.value": "ap",
                  "compute-searches.value": ["s", "again"], "study.value": None}
        assert '"className": "error"' not in json.dumps(_call(client, app, key, inputs))


def _damage(path: str) -> None:
    """Overwrites every page of a SQLite file but its first (its header): reading a table fails as 'database disk
    image is malformed'."""
    with open(path, "r+b") as f:
        page = int.from_bytes(f.read(100)[16:18], "big")
        size = os.path.getsize(path)
        for offset in range(page, size, page):
            f.seek(offset)
            f.write(b"\xa5" * page)


def test_a_damaged_database_is_a_line_on_the_page_not_a_traceback(searched, tmp_path):
    tmp, db = searched
    copy = str(tmp_path / "damaged.db")
    shutil.copy(db, copy)
    data = _data(copy)  # the dashboard is up when its disk starts to fail
    app, client = _app(data)
    _damage(copy)
    out = _call(client, app, "..search.options...search.value...compute-searches.options...study.options..."
                "health.children..", {"tick.n_intervals": 1, "searches-table.cellClicked": None})
    health = json.dumps(out["response"]["health"])
    assert "cannot read the database" in health and "malformed" in health and "Traceback" not in health
    out = _call(client, app, "..trials-table.rowData...trials-note.children...trials-sig.data..",
                {"tick.n_intervals": 1, "tabs.value": "trials", "search.value": "s"})
    assert "malformed" in json.dumps(out["response"]["trials-note"]) and "trials-table" not in out["response"]
    out = _call(client, app, "..trial-content.children...trial-sig.data..",
                {"url.pathname": "/trial/1", "tick.n_intervals": 1})
    assert "cannot read trial 1" in json.dumps(out)


# --------------------------------------------------------------------------------------------------- process
@pytest.mark.slow
def test_the_served_page_loads_its_javascript_from_the_installed_packages_and_stops_on_sigterm(searched):
    """The real command: --port 0 prints the URL; the page's scripts are the installed packages' (no CDN); SIGTERM
    ends it as it ends every command (exit 143), with no traceback."""
    import signal
    import urllib.request

    _, db = searched
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "dashboard", "--db", db, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("spinenas dashboard: http://127.0.0.1:"), (line, proc.stderr.read())
        url = line.split()[2]
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        scripts = [s.split('"')[0] for s in page.split('<script src="')[1:]]
        assert scripts and all(s.startswith("/_dash-component-suites/") for s in scripts), scripts
        for src in scripts:
            assert urllib.request.urlopen(url.rstrip("/") + src, timeout=10).status == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "Traceback" not in err, err


@pytest.mark.slow
def test_the_dashboard_imports_no_tensorflow_or_ray(searched):
    _, db = searched
    code = (
        "import sys\n"
        "from nas.dashboard.data import DashboardData\nfrom nas.dashboard.app import build_app\n"
        "from results_db.reader import ResultReader\n"
        f"data = DashboardData(ResultReader({db!r}))\n"
        "data.overview(); rows = data.trial_rows('s'); data.curves('s'); data.compute(['s']); data.decisions('s')\n"
        "data.trial(rows[0]['id']); data.calibration_names()\n"
        "client = build_app(data).server.test_client(); assert client.get('/').status_code == 200\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'ray', 'official', 'tf_keras')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-500:]


# --------------------------------------------------------------------------------------------------- PostgreSQL
def test_the_dashboard_reads_a_postgresql_database():
    """The same pages on a server database (SPINENAS_TEST_PG_URL: an empty database; .ci/run starts one)."""
    url = os.environ.get("SPINENAS_TEST_PG_URL")
    if not url:
        pytest.skip("set SPINENAS_TEST_PG_URL=postgresql://... to run")
    from sqlalchemy import create_engine

    from results_db.models import BaseModel

    def drop() -> None:
        engine = create_engine(url)
        BaseModel.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        engine.dispose()

    import tempfile

    drop()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store, _, _ = run_search(__import__("pathlib").Path(tmp), cfg_of(trials=6, workers=2, asha=_ASHA),
                                     name="pg", db=url, tensorboard=False)
            store.close()
        data = _data(url)
        [row] = data.overview()
        assert row["name"] == "pg" and row["completed"] + row["pruned"] == 6 and row["updates"] == 6
        rows = data.trial_rows("pg")
        assert len(rows) == 6 and data.curves("pg")["rungs"][0]["n"] == 6
        assert data.trial(rows[0]["id"])["arch"].key == rows[0]["key"]
        data.reader.close()
    finally:
        drop()


def test_the_page_ticks_slower_while_reads_take_longer_than_its_interval(monkeypatch):
    """Dash drops an answer that arrives after the next tick: a read slower than the interval must slow the
    interval, or the page would never update (seen: a 1.6 s read at a 1 s interval left the table empty)."""
    from nas.dashboard import app

    clock = [100.0]
    monkeypatch.setattr(app.time, "monotonic", lambda: clock[0])
    pace = app._Pace(2.0)
    assert pace.interval_ms() == 2000

    def read(seconds: float):
        clock[0] += seconds
        return "rows"

    assert pace.timed("trials", lambda: read(1.6)) == "rows"
    assert pace.interval_ms() == 4000  # 2.5 times the slowest recent read
    pace.timed("searches", lambda: read(0.1))
    assert pace.interval_ms() == 4000
    clock[0] += app._Pace.WINDOW_S + 1  # a slow read long ago no longer counts
    assert pace.interval_ms() == 2000
