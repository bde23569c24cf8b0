"""The CLI on real file systems: a database on a read-only mount, and on a full one.

Each test runs one interpreter under ``unshare -m`` (a mount namespace of its own: its mounts vanish with it and no
other process sees them) that mounts a small tmpfs, puts databases there, makes it read-only or fills it, and runs
`spinenas` commands in-process. Needs root and unshare; skipped otherwise. tests/results_db/test_faults.py checks the
same without root, by simulation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.results_db.fixtures import make_0001_db

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("mount"),
                       reason="needs root, unshare and mount"),
]

# argv: a JSON plan {"mount": dir, "size": "512k", "copy": {name: source}, "then": "ro" | "full" | "none",
#                    "open": [names to hold a connection to, so their -wal and -shm exist before the disk fills],
#                    "runs": [[label, argv...], ...]}
# Prints {"skip": why} or {label: [exit code, stdout, stderr]} and the listing of the mount.
_DRIVER = r"""
import contextlib, io, json, os, shutil, sqlite3, subprocess, sys
plan = json.loads(sys.argv[1])
m = plan["mount"]
os.makedirs(m, exist_ok=True)
if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + plan["size"], "tmpfs", m]).returncode:
    print(json.dumps({"skip": "mount -t tmpfs failed"})); sys.exit(0)
for name, src in plan["copy"].items():
    shutil.copyfile(src, os.path.join(m, name))
held = [sqlite3.connect(os.path.join(m, name)) for name in plan.get("open", [])]
for con in held:
    con.execute("SELECT count(*) FROM sqlite_master").fetchone()
if plan["then"] == "ro":
    subprocess.run(["mount", "-o", "remount,ro", m], check=True)
elif plan["then"] == "full":
    fd = os.open(os.path.join(m, "fill"), os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0" * 4096)
    os.close(fd)
    assert os.statvfs(m).f_bfree == 0
from nas import cli
out = {}
for label, *argv in plan["runs"]:
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            code = cli.main(argv)
        except SystemExit as x:
            code = x.code
        except BaseException as x:  # a traceback the command let out
            import traceback
            code = "raised"
            e.write(traceback.format_exc())
    out[label] = [code, o.getvalue(), e.getvalue()]
out["files"] = sorted(os.listdir(m))
print(json.dumps(out))
"""


def _run(tmp_path, plan: dict) -> dict:
    proc = subprocess.run(["unshare", "-m", sys.executable, "-c", _DRIVER, json.dumps(plan)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    if proc.returncode and "unshare" in proc.stderr:
        pytest.skip(f"unshare -m: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in out:
        pytest.skip(out["skip"])
    return out


def _one_line(result: list) -> str:
    code, _, err = result
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, result
    return err


def test_every_read_command_reads_a_wal_database_on_a_read_only_mount(tmp_path, db):
    """`searches`, `top`, `show`, `report`, `calibration show` and `db check` read a WAL database on a read-only
    mount (no 'unable to open database file', no 'integrity: ok' followed by it): reading needs no write access."""
    path, facts = db
    m = str(tmp_path / "ro")
    d = f"{m}/r.db"
    out = _run(tmp_path, {"mount": m, "size": "4m", "copy": {"r.db": path}, "then": "ro", "runs": [
        ["searches", "searches", "--db", d],
        ["top", "top", "--json", "--db", d],
        ["show", "show", facts["key49"], "--db", d],
        ["report", "report", "--search", "ppo-1", "--out", str(tmp_path / "report"), "--db", d],
        ["check", "db", "check", "--db", d],
        ["calibration", "calibration", "show", "ppo-1", "--db", d],
        ["upgrade", "db", "upgrade", "--db", d],
    ]})
    for label in ("searches", "top", "show", "report", "check"):
        code, stdout, err = out[label]
        assert (code, err) == (0, ""), (label, out[label])
    assert "ppo-1" in out["searches"][1] and json.loads(out["top"][1])
    assert "integrity: ok" in out["check"][1] and "searches: 2" in out["check"][1]
    assert (tmp_path / "report" / "index.html").exists()
    # Not a calibration study, but read: the answer is about the study, not the file.
    assert "unable to open" not in _one_line(out["calibration"]) and "ppo-1" in out["calibration"][2]
    # An upgrade writes: refused in one line.
    assert _one_line(out["upgrade"]) == (
        f"spinenas: error: cannot write database {d}: its folder {m} cannot be written (a read-only file system, or "
        "not this user's); nothing was written to it: free space there (or give a --db on a file system this user "
        "can write), then run the command again\n"
    )
    assert out["files"] == ["r.db"]


def test_a_full_disk_reads_and_refuses_writes_in_one_line_and_damages_nothing(tmp_path, db):
    """On a full file system `db check` and a resume fail in one line, not SQLAlchemy's traceback, and a read that
    fails leaves no empty -wal behind (after which a resume would call the database damaged)."""
    path, _ = db
    old = tmp_path / "old.db"
    make_0001_db(f"sqlite:///{old}")
    m = str(tmp_path / "full")
    d, o, h = f"{m}/r.db", f"{m}/old.db", f"{m}/held.db"
    out = _run(tmp_path, {"mount": m, "size": "2m", "copy": {"r.db": path, "old.db": str(old), "held.db": str(old)},
                          "open": ["held.db"], "then": "full", "runs": [
        ["searches", "searches", "--db", d],
        ["top", "top", "--db", d],
        ["check", "db", "check", "--db", d],
        ["resume", "search", "--resume", "ppo-1", "--db", d, "--run-dir", str(tmp_path / "runs")],
        ["check again", "db", "check", "--db", d],
        ["upgrade", "db", "upgrade", "--db", o],
        ["upgrade held", "db", "upgrade", "--db", h],
    ]})  # fmt: skip
    for label in ("searches", "top", "check", "check again"):
        assert out[label][0] == 0 and out[label][2] == "", (label, out[label])
    assert "integrity: ok" in out["check again"][1]
    full = ("its file system is full (0 bytes free; SQLite needs 32768 for {0}-shm beside it); nothing was written "
            "to it: free space there (or give a --db on a file system this user can write), then run the command "
            "again")
    assert _one_line(out["resume"]) == f"spinenas: error: cannot write database {d}: {full.format(d)}\n"
    assert not (tmp_path / "runs").exists()
    # No room for the -shm: refused before the upgrade begins. Room for it (a connection made it before the disk
    # filled): the upgrade begins, and its first write fails; either way the database stays at its version.
    assert _one_line(out["upgrade"]) == f"spinenas: error: cannot write database {o}: {full.format(o)}\n"
    assert _one_line(out["upgrade held"]) == (
        f"spinenas: error: upgrading database sqlite:///{h} from schema version 0001 failed; nothing was changed (the "
        "upgrade is one transaction): database or disk is full (free space on its file system, then run `spinenas db "
        "upgrade` again)\n"
    )
    # Nothing made beside the files: the reads were immutable, the refusals came before any open.
    assert out["files"] == ["fill", "held.db", "held.db-shm", "held.db-wal", "old.db", "r.db"]
