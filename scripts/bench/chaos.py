#!/usr/bin/env python
"""Chaos against the real CLI: kills, signals, pauses, races, foreign clusters, damaged files, hostile input.

Each scenario runs `python -m nas.cli ...` in subprocesses, in a working folder of its own, with the surrogate
evaluator (simulated trial time, no TensorFlow training) and a private short RAY_TMPDIR, in the environment a user
has (no loopback setting of the bench's own: the commands keep a local Ray on loopback themselves); those on a full
or read-only file system run their commands in a mount namespace of their own (unshare -m, as root: a row says
'skipped' where that cannot be done). Its row says which runner its searches ran on, what happened (exit codes and
the one-line messages) and what the database and the files held afterwards:
- lost: trials the budget asked for that were not finished after the final resume;
- duplicated: two finished rows for one trial index, or one architecture trained to completion twice in a search;
- run twice: a trial trained by two drivers (a refused driver printed a trial's progress line, or a trial was
  started more than once by the one resume after a kill);
- left running: trials with status running or queued after the scenario's final command;
- writes after a lost lease: trials a driver stored after another driver took its search over;
- wedged: databases that no command could read or upgrade after the scenario's fault;
- tracebacks: commands whose output held "Traceback";
- files from failed commands: paths that appeared in the working folder (runs/, database files included) during a
  command that must fail or change nothing, plus database files whose bytes such a command changed;
- Ray left behind: processes started under the scenario's RAY_TMPDIR still alive after a short grace (read from
  /proc/PID/environ, raw: Ray's agents retitle themselves), then stopped by PID.
Targets: 0 of each, and every scenario's own checks (refused in one line, exit codes, ...) pass; exit code 1 if a
target is missed.

    python scripts/bench/chaos.py [--only NAME ...] [--keep]

Writes scripts/bench/results/chaos.json and chaos.md (a run with --only: only to --out DIR).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from scripts.bench.common import machine as machine_facts, provenance  # noqa: E402

RESULTS = os.path.join(ROOT, "scripts", "bench", "results")
PROGRESS = re.compile(r"^\[\d+/\d+\] trial ", re.M)  # a driver's line for a finished trial
FINISHED = ("completed", "failed", "cached")
GRACE_S = 10.0  # how long processes under a scenario's RAY_TMPDIR may take to exit once their command ended
FAST_S = 5.0  # "within a few seconds", for the oversized inputs of spec show
SURROGATE = ["--evaluator", "surrogate", "--controller", "random", "--top", "0", "--plain"]


# ------------------------------------------------------------------------------------------------ processes
def _marked_pids(ray_tmp: str) -> list[int]:
    """Live processes whose environment holds RAY_TMPDIR=ray_tmp: the scenario's commands and what they started."""
    mark = f"RAY_TMPDIR={ray_tmp}".encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/environ", "rb") as fh:  # a zombie's reads empty
                if mark in fh.read().split(b"\0"):
                    out.append(int(entry))
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()[:80]
    except OSError:
        return "?"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _stop(pids: list[int]) -> list[int]:
    """SIGTERM, then SIGKILL after 10 s, to processes this bench started (by PID). Returns those still alive."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    return [p for p in pids if _alive(p)]


# ------------------------------------------------------------------------------------------------ files
def _listing(root: str) -> set[str]:
    out = set()
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            out.add(os.path.relpath(os.path.join(base, name), root) + ("/" if name in dirs else ""))
    return out


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None


def _one_line(text: str, width: int = 300) -> str:
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())  # Ray colours its lines
    return text if len(text) <= width else text[: width - 3] + "..."


# ------------------------------------------------------------------------------------------------ database
def _rows(db: str, sql: str, args: tuple = ()) -> list[tuple]:
    """Rows read from another process's SQLite file, read-only ([] while it has no such table yet)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []


def _finished(db: str, name: str) -> int:
    return len(_rows(db, "select t.id from trials t join searches s on s.id = t.search_id where s.name = ? and "
                         f"t.status in {FINISHED}", (name,)))


def _attempts(db: str, name: str) -> dict[int, int]:
    return dict(_rows(db, 'select t."index", t.attempt from trials t join searches s on s.id = t.search_id '
                          "where s.name = ?", (name,)))


def _search_row(db: str, name: str) -> tuple | None:
    rows = _rows(db, "select status, finished_at from searches where name = ?", (name,))
    return rows[0] if rows else None


def _db_facts(db: str, name: str, requested: int) -> dict[str, Any]:
    """Lost, duplicated and left-running trials of one search, as its database holds them."""
    rows = _rows(db, 'select t."index", t.arch_key, t.status from trials t join searches s on s.id = t.search_id '
                     "where s.name = ?", (name,))
    done = [r for r in rows if r[2] in FINISHED]
    trained = collections.Counter(r[1] for r in rows if r[2] == "completed")
    search = _search_row(db, name)
    return {
        "search": name,
        "requested": requested,
        "finished": len(done),
        "by_status": dict(collections.Counter(r[2] for r in rows)),
        "search_status": search[0] if search else None,
        "lost": max(0, requested - len({r[0] for r in done if r[0] < requested})),
        "duplicated": (len(done) - len({r[0] for r in done})) + sum(n - 1 for n in trained.values() if n > 1),
        "left_running": sum(r[2] in ("running", "queued") for r in rows),
    }


# ------------------------------------------------------------------------------------------------ a scenario
class Run:
    """One command of a scenario and what it did."""

    def __init__(self, label: str, argv: list[str]):
        self.label, self.argv = label, argv
        self.code: int | None = None
        self.seconds = 0.0
        self.out = self.err = ""
        self.timed_out = False
        self.must_not_write = False
        self.created: list[str] = []
        self.changed: list[str] = []  # files whose bytes it changed, of those it must leave alone
        self._files: tuple[Any, Any] | None = None  # a background command's output files
        self._t0 = 0.0
        self.shown = ""  # the line of the output the table shows, when a scenario picks one
        self.listed = True  # shown in the table's "what happened" (else only in the JSON, and in a summary line)

    @property
    def message(self) -> str:
        """The line that says what happened: the error line of a failure, else the command's last line."""
        if self.timed_out:
            return f"no answer within {self.seconds:.0f} s (killed)"
        if self.shown:
            return self.shown
        err = [ln for ln in self.err.splitlines() if ln.strip()]
        out = [ln for ln in self.out.splitlines() if ln.strip()]
        if self.code != 0 and err:
            return err[-1]
        return (out or err or [""])[-1]

    def line(self, needle: str) -> str:
        """The first output line holding `needle` ('' if none)."""
        return next((ln for ln in (self.out + "\n" + self.err).splitlines() if needle in ln), "")

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]

    @property
    def progress(self) -> int:
        return len(PROGRESS.findall(self.out))

    def record(self, work: str) -> dict[str, Any]:
        """What the table and the JSON keep; paths in the scenario's temp folder are given relative to it."""
        message = _one_line(self.message).replace(work + os.sep, "")
        return {"label": self.label, "argv": self.argv, "exit_code": self.code, "seconds": round(self.seconds, 2),
                "timed_out": self.timed_out, "message": message, "progress_lines": self.progress,
                "stderr_lines": len(self.error_lines), "traceback": "Traceback" in self.out + self.err,
                "listed": self.listed,
                **({"created": self.created, "changed": self.changed} if self.must_not_write else {})}


class Scenario:
    """A scenario's folders (work/ is the commands' working folder), its RAY_TMPDIR, its commands and its checks."""

    def __init__(self, root: str, name: str):
        self.name = name
        self.base = os.path.join(root, name)
        self.work = os.path.join(self.base, "work")
        self.logs = os.path.join(self.base, "logs")
        os.makedirs(self.work)
        os.makedirs(self.logs)
        self.ray_tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths have a length limit
        env = {k: v for k, v in os.environ.items() if k not in ("SPINENAS_DB", "RAY_ADDRESS")}
        # Without Ray's single-node setting: the commands must keep a local cluster on loopback themselves.
        env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        self.env = dict(env, PYTHONPATH=os.pathsep.join([ROOT, *filter(None, [env.get("PYTHONPATH")])]),
                        RAY_TMPDIR=self.ray_tmp)
        self.runs: list[Run] = []
        self.started = 0
        self.checks: list[dict[str, Any]] = []
        self.facts: list[dict[str, Any]] = []
        self.run_twice = 0
        self.late_writes = 0  # trials a driver stored after another one took its lease over
        self.wedged = 0  # databases that no command could read or upgrade afterwards
        self.ray_left: list[str] = []
        self.notes: list[str] = []
        self.spared: set[int] = set()  # PIDs of a foreign cluster: not left behind by the scenario's commands
        self.summary: list[str] = []  # lines the table shows after the listed commands (for many unlisted ones)
        self.skipped = ""  # why the scenario could not run here (the row says so; nothing was faked)
        # Commands in a mount namespace of the scenario's own (`_private_mounts`): the argv prefix that enters it,
        # and where the bench sees the namespace's files (/proc/PID/root of the process holding it).
        self.wrap: list[str] = []
        self.seen = ""

    def path(self, *parts: str) -> str:
        return os.path.join(self.work, *parts)

    def view(self, *parts: str) -> str:
        """A path in work/ as the scenario's commands see it (through its mount namespace, if it has one)."""
        return self.seen + self.path(*parts)

    def cli(self, label: str, *argv: str, must_not_write: bool = False, keep: tuple[str, ...] = (),
            timeout: float = 240) -> Run:
        """Runs `spinenas ARGV` in work/ to its end. With `must_not_write` (a refusal, or a no-op) the listing of
        work/ before and after is compared, and the files in `keep` must keep their bytes."""
        run = Run(label, list(argv))
        before = _listing(self.view()) if must_not_write else set()
        digests = {p: _digest(self.view(p)) for p in keep}
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([*self.wrap, sys.executable, "-m", "nas.cli", *argv], capture_output=True,
                                  text=True, cwd=self.work, env=self.env, timeout=timeout)
            run.code, run.out, run.err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as e:
            run.timed_out = True
            run.out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            run.err = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        run.seconds = time.perf_counter() - t0
        self._after(run, must_not_write, before, digests)
        return run

    def start(self, label: str, *argv: str) -> tuple[Run, subprocess.Popen]:
        """Starts `spinenas ARGV` in the background (its output to logs/); `wait` ends it."""
        run = Run(label, list(argv))
        self.started += 1
        n = self.started
        out, err = (open(os.path.join(self.logs, f"{n}-{label}.{s}"), "w+") for s in ("out", "err"))
        proc = subprocess.Popen([*self.wrap, sys.executable, "-m", "nas.cli", *argv], stdout=out, stderr=err,
                                cwd=self.work, env=self.env)
        run._files, run._t0 = (out, err), time.perf_counter()
        return run, proc

    def wait(self, *started: tuple[Run, subprocess.Popen], timeout: float = 240) -> None:
        """Waits for commands `start` began (together: each one's time is until its own exit), killing any still
        running after `timeout` s."""
        deadline = time.time() + timeout
        pending = list(started)
        while pending:
            for run, proc in list(pending):
                if proc.poll() is not None or time.time() > deadline:
                    if proc.poll() is None:
                        run.timed_out = True
                        proc.kill()
                    run.code = proc.wait()
                    run.seconds = time.perf_counter() - run._t0
                    pending.remove((run, proc))
            time.sleep(0.05)
        for run, _ in started:
            assert run._files is not None, "wait() is for a command start() began"
            for fh in run._files:
                fh.seek(0)
            run.out, run.err = (fh.read() for fh in run._files)
            for fh in run._files:
                fh.close()
            self._after(run, False, set(), {})

    def _after(self, run: Run, must_not_write: bool, before: set[str], digests: dict[str, str | None]) -> None:
        if must_not_write:
            run.must_not_write = True
            run.created = sorted(_listing(self.view()) - before)
            run.changed = sorted(p for p, d in digests.items() if _digest(self.view(p)) != d)
        self.runs.append(run)

    def check(self, what: str, ok: bool, got: Any = None) -> bool:
        self.checks.append({"check": what, "ok": bool(ok), **({} if got is None else {"got": got})})
        return bool(ok)

    def db_facts(self, db: str, name: str, requested: int) -> dict[str, Any]:
        facts = _db_facts(self.view(db), name, requested)
        self.facts.append(facts)
        return facts

    def wait_for(self, what: Callable[[], bool], timeout: float = 180, every: float = 0.1) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if what():
                return True
            time.sleep(every)
        return False

    def ray_left_behind(self, grace: float = GRACE_S) -> list[str]:
        """Processes of this scenario's commands still alive `grace` seconds from now (but a foreign cluster's):
        noted, then stopped by PID."""
        deadline = time.time() + grace
        while time.time() < deadline and [p for p in _marked_pids(self.ray_tmp) if p not in self.spared]:
            time.sleep(0.25)
        left = [p for p in _marked_pids(self.ray_tmp) if p not in self.spared]
        seen = [f"{p} {_cmdline(p)}" for p in left]
        self.ray_left += seen
        _stop(left)
        return seen

    def close(self, keep: bool) -> None:
        stubborn = _stop(_marked_pids(self.ray_tmp))
        if stubborn:
            self.notes.append(f"could not stop PIDs {stubborn}")
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
        if not keep:
            shutil.rmtree(self.base, ignore_errors=True)


def _search(name: str, trials: int, *, workers: int = 2, duration: float = 1.0, runner: str = "local",
            cpus: int = 1, db: str = "r.db") -> list[str]:
    return ["search", *SURROGATE, "--runner", runner, "--name", name, "--trials", str(trials), "--workers",
            str(workers), "--cpus-per-trial", str(cpus), "--surrogate-duration", str(duration), "--seed", "7",
            "--db", db]


def _one_line_refusal(sc: Scenario, run: Run, what: str, needle: str = "", code: int = 2) -> None:
    lines = run.error_lines
    sc.check(f"{what}: exit {code}", run.code == code, run.code)
    sc.check(f"{what}: one line on stderr" + (f" with {needle!r}" if needle else ""),
             len(lines) == 1 and needle in lines[0], lines[:3])


# ------------------------------------------------------------------------------------------------ fixtures
_FIXTURE: dict[str, str] = {}


def _fixture(sc: Scenario) -> str:
    """The path of a database holding one finished 30-trial search 'done' (a WAL database, closed: no -wal beside
    it), made once per bench run."""
    if "db" not in _FIXTURE:
        made = Scenario(os.path.dirname(sc.base), "fixture")
        run = made.cli("make the fixture", "search", *SURROGATE, "--runner", "local", "--set",
                       "runner.local.in_process=true", "--name", "done", "--trials", "30", "--workers", "1",
                       "--cpus-per-trial", "1", "--db", "r.db")
        if run.code != 0:
            raise RuntimeError(f"the fixture search failed: {run.err[-2000:]}")
        made.close(keep=True)
        _FIXTURE["db"] = made.path("r.db")
    return _FIXTURE["db"]


def _finished_db(sc: Scenario) -> str:
    """A copy, in work/r.db, of the database holding one finished 30-trial search 'done'."""
    shutil.copyfile(_fixture(sc), sc.path("r.db"))
    return "r.db"


def _old_db(sc: Scenario) -> str:
    """A copy, in work/old.db, of that database taken back to schema revision 0001 by the project's own Alembic
    downgrade (made once per bench run): the layout the version before schema 0002 wrote (no fingerprints, no
    learning curves), as tests/nas/test_upgrade.py makes one."""
    if "old" not in _FIXTURE:
        from alembic import command

        from results_db.migrate import alembic_config

        old = os.path.join(os.path.dirname(_fixture(sc)), "old.db")
        shutil.copyfile(_fixture(sc), old)
        command.downgrade(alembic_config(f"sqlite:///{old}"), "0001")
        closed = not os.path.exists(old + "-wal")  # first: a read-only open leaves a -wal and a -shm beside it
        con = sqlite3.connect(old)  # read and write: its close removes them again
        version = con.execute("select version_num from alembic_version").fetchall()
        con.close()
        if not closed or version != [("0001",)]:
            raise RuntimeError(f"the downgrade to 0001 left {version} (a -wal: {not closed}), not a closed 0001")
        _FIXTURE["old"] = old
    shutil.copyfile(_FIXTURE["old"], sc.path("old.db"))
    return "old.db"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------ scenarios
def two_drivers_race(sc: Scenario) -> None:
    """1. Ray runner, 12 trials: kill -9 of the driver mid-run, then two `--resume` 0.2 s apart."""
    first, proc = sc.start("search", *_search("race", 12, duration=2.0, runner="ray"))
    sc.check("4 trials finished before the kill", sc.wait_for(lambda: _finished(sc.path("r.db"), "race") >= 4))
    proc.kill()
    sc.wait((first, proc))
    first.shown = f"killed (SIGKILL) with {_finished(sc.path('r.db'), 'race')} trials finished"
    before = _attempts(sc.path("r.db"), "race")
    resume = ["search", "--resume", "race", "--db", "r.db", "--top", "0", "--plain"]
    a, pa = sc.start("resume A", *resume)
    time.sleep(0.2)
    b, pb = sc.start("resume B", *resume)
    sc.wait((a, pa), (b, pb))
    sc.notes.append("the refused resume's files are not compared: the other driver writes the folder and the database "
                    "at the same time")
    won = [r for r, p in ((a, pa), (b, pb)) if r.code == 0]
    lost = [(r, p) for r, p in ((a, pa), (b, pb)) if r.code != 0]
    sc.check("one resume finished (exit 0), one was refused", len(won) == 1 and len(lost) == 1, [a.code, b.code])
    if len(won) == 1 and len(lost) == 1:
        (refused, _), (winner, wproc) = lost[0], (won[0], pa if won[0] is a else pb)
        _one_line_refusal(sc, refused, f"{refused.label} refused", "is being run by another driver")
        sc.check(f"{refused.label}'s line names the holder (pid {wproc.pid})", f"pid {wproc.pid}" in refused.err,
                 refused.message)
        sc.check(f"{refused.label} printed no trial progress", refused.progress == 0, refused.progress)
        sc.check(f"{winner.label} took over the killed driver's lease", "took over the lease" in winner.out)
        winner.shown = winner.line("took over the lease").strip() or winner.message
        sc.run_twice += refused.progress
    else:  # both ran, or neither: a second driver's trials count as run twice
        sc.run_twice += min(a.progress, b.progress)
    after = _attempts(sc.path("r.db"), "race")
    sc.run_twice += sum(after.get(i, 0) - n > 1 for i, n in before.items())
    sc.db_facts("r.db", "race", 12)
    sc.ray_left_behind()


def kill_9_and_resume(sc: Scenario) -> None:
    """2. kill -9 mid-run, `searches`, then at once one `--resume`."""
    first, proc = sc.start("search", *_search("k9", 10))
    sc.check("3 trials finished before the kill", sc.wait_for(lambda: _finished(sc.path("r.db"), "k9") >= 3))
    proc.kill()
    sc.wait((first, proc))
    first.shown = f"killed (SIGKILL) with {_finished(sc.path('r.db'), 'k9')} trials finished"
    listed = sc.cli("searches", "searches", "--db", "r.db")
    row = _one_line(listed.line("k9"), 140)
    listed.shown = row
    if not sc.check("searches shows it as interrupted right after the kill", "interrupted" in row, row):
        sc.notes.append("searches derives 'interrupted' from the heartbeat's age alone (engine/lease.py lease_state: "
                        "older than LEASE_TIMEOUT_S, 60 s), not from the holder's process being gone, which the "
                        "resume's lease check does look at")
    before = _attempts(sc.path("r.db"), "k9")
    resumed = sc.cli("resume", "search", "--resume", "k9", "--db", "r.db", "--top", "0", "--plain")
    sc.check("resume: exit 0", resumed.code == 0, resumed.code)
    sc.check("resume says it took over", "took over the lease" in resumed.out, _one_line(resumed.line("lease"), 140))
    resumed.shown = resumed.line("took over the lease").strip() or resumed.message
    after = _attempts(sc.path("r.db"), "k9")
    sc.run_twice += sum(after.get(i, 0) - n > 1 for i, n in before.items())
    sc.db_facts("r.db", "k9", 10)
    sc.ray_left_behind()


def sigterm_and_resume(sc: Scenario, runner: str = "local") -> None:
    """3. SIGTERM mid-run (local runner): exit 143, search stopped; the resume completes."""
    first, proc = sc.start("search", *_search("term", 8, runner=runner))
    sc.check("2 trials finished before SIGTERM", sc.wait_for(lambda: _finished(sc.path("r.db"), "term") >= 2))
    proc.send_signal(signal.SIGTERM)
    sc.wait((first, proc), timeout=60)
    sc.check("SIGTERM: exit 143", first.code == 143, first.code)
    status = (_search_row(sc.path("r.db"), "term") or (None,))[0]
    sc.check("the search is stopped", status == "stopped", status)
    resumed = sc.cli("resume", "search", "--resume", "term", "--db", "r.db", "--top", "0", "--plain")
    sc.check("resume: exit 0", resumed.code == 0, resumed.code)
    sc.db_facts("r.db", "term", 8)
    sc.ray_left_behind()


def ctrl_c_while_ray_starts(sc: Scenario) -> None:
    """4. SIGINT once the search row exists and Ray's first process is up: exit 130, no Ray left; resume completes."""
    first, proc = sc.start("search", *_search("cut", 4, runner="ray"))
    db = sc.path("r.db")
    row = sc.wait_for(lambda: bool(_rows(db, "select 1 from searches where name = 'cut'")) or proc.poll() is not None,
                      timeout=120, every=0.02)
    sc.check("the search row appeared", row and proc.poll() is None)
    # Then the lease and ray.init: Ctrl-C once the first of Ray's processes (its GCS) is up, inside Ray's start.
    sc.wait_for(lambda: len(_marked_pids(sc.ray_tmp)) > 1 or proc.poll() is not None, timeout=60, every=0.02)
    ray_up = [_cmdline(p) for p in _marked_pids(sc.ray_tmp) if p != proc.pid]
    os.kill(proc.pid, signal.SIGINT)
    sc.wait((first, proc), timeout=90)
    sc.notes.append(f"Ray's processes at SIGINT: {ray_up}")
    sc.check("Ctrl-C: exit 130", first.code == 130, first.code)
    sc.check("says it was interrupted while starting", "interrupted while starting" in first.out,
             _one_line(first.message, 140))
    first.shown = first.line("interrupted while starting") or first.message
    left = sc.ray_left_behind(grace=5.0)
    sc.check("no Ray process left 5 s after the driver exited", not left, left)
    resumed = sc.cli("resume (local runner)", "search", "--resume", "cut", "--runner", "local", "--db", "r.db",
                     "--top", "0", "--plain")
    sc.check("resume: exit 0", resumed.code == 0, resumed.code)
    sc.db_facts("r.db", "cut", 4)


def stale_foreign_cluster(sc: Scenario) -> None:
    """5. RAY_TMPDIR/ray/ray_current_cluster names 127.0.0.1:1, where nothing listens: the search uses its own Ray."""
    os.makedirs(os.path.join(sc.ray_tmp, "ray"))
    with open(os.path.join(sc.ray_tmp, "ray", "ray_current_cluster"), "w") as fh:
        fh.write("127.0.0.1:1")
    run = sc.cli("search", *_search("stale", 2, duration=0.5, runner="ray"))
    sc.check("exit 0", run.code == 0, run.code)
    sc.check("says another cluster is registered (127.0.0.1:1)",
             "another Ray cluster is registered on this machine (127.0.0.1:1)" in run.out)
    run.shown = run.line("another Ray cluster").strip() or run.message
    sc.db_facts("r.db", "stale", 2)
    sc.ray_left_behind()


def live_foreign_cluster(sc: Scenario) -> None:
    """6. A live `ray start --head` cluster registered on the machine: a search without --address leaves it alone."""
    port = _free_port()
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    run = Run("ray start", ["ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
                            "--include-dashboard=false", "--disable-usage-stats"])
    t0 = time.perf_counter()
    try:
        # Another user's cluster on loopback: Ray's single-node setting, as engine.runners.ray_runner makes it (without
        # it Ray 2.60 listens on every interface and registers the machine's network address, not 127.0.0.1).
        proc = subprocess.run([ray_cli, *run.argv[1:]], capture_output=True, text=True, timeout=180,
                              env=dict(sc.env, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0"))
        run.code, run.out, run.err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired:
        run.timed_out = True
    run.seconds = time.perf_counter() - t0
    run.shown = run.line("Ray runtime started").strip()
    sc.runs.append(run)
    try:
        with open(os.path.join(sc.ray_tmp, "ray", "ray_current_cluster")) as fh:
            registered = fh.read().strip()
    except OSError:
        registered = None
    if not sc.check("the foreign cluster started and registered 127.0.0.1", run.code == 0 and
                    registered == f"127.0.0.1:{port}", registered):
        return  # not a cluster on loopback: no search against it
    sc.spared = set(_marked_pids(sc.ray_tmp))
    # 2 CPUs per trial: this machine's, not the foreign cluster's 1, so the search runs only on a Ray of its own.
    search = sc.cli("search", *_search("own", 2, workers=1, duration=0.5, runner="ray", cpus=os.cpu_count() or 2))
    sc.check("search: exit 0", search.code == 0, search.code)
    sc.check(f"says another cluster is registered (127.0.0.1:{port})",
             f"another Ray cluster is registered on this machine (127.0.0.1:{port})" in search.out)
    search.shown = search.line("another Ray cluster").strip() or search.message
    sc.db_facts("r.db", "own", 2)
    left = sc.ray_left_behind()
    alive = [p for p in sc.spared if _alive(p)]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            up = True
    except OSError:
        up = False
    sc.check("the foreign cluster is still up (its port answers, all its processes alive)",
             up and len(alive) == len(sc.spared), f"port {'up' if up else 'down'}, {len(alive)}/{len(sc.spared)}")
    sc.check("the search's own Ray is gone", not left, left)
    stubborn = _stop(sorted(sc.spared))
    sc.notes.append(f"foreign cluster: {len(sc.spared)} processes, stopped by PID"
                    + (f"; {stubborn} would not stop" if stubborn else ""))
    sc.spared = set()
    sc.ray_left_behind(grace=2.0)


def damaged_database(sc: Scenario) -> None:
    """7. 4 KB of garbage in the middle of a finished search's file: resume refused, bytes kept; db check exits 1."""
    db = _finished_db(sc)
    with open(sc.path(db), "r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(size // 2 // 4096 * 4096)
        fh.write(bytes((i * 37 + 11) % 256 for i in range(4096)))
    resumed = sc.cli("resume", "search", "--resume", "done", "--db", db, must_not_write=True, keep=(db,))
    _one_line_refusal(sc, resumed, "resume", "is damaged")
    sc.check("resume: r.db byte-identical", not resumed.changed)
    checked = sc.cli("db check", "db", "check", "--db", db, must_not_write=True, keep=(db,))
    sc.check("db check: exit 1", checked.code == 1, checked.code)
    sc.check("db check says DAMAGED", "integrity: DAMAGED" in checked.out, _one_line(checked.line("integrity"), 140))
    sc.check("db check: r.db byte-identical", not checked.changed)
    checked.shown = checked.line("integrity:")


def empty_database(sc: Scenario) -> None:
    """8. A zero-byte database file: resume refused, the file still 0 bytes."""
    open(sc.path("empty.db"), "wb").close()
    resumed = sc.cli("resume", "search", "--resume", "done", "--db", "empty.db", must_not_write=True,
                     keep=("empty.db",))
    _one_line_refusal(sc, resumed, "resume", "empty")
    sc.check("still 0 bytes", os.path.getsize(sc.path("empty.db")) == 0, os.path.getsize(sc.path("empty.db")))


def too_many_cpus(sc: Scenario) -> None:
    """9. --cpus-per-trial above this machine's CPUs (default database and runner): one line, no db, no runs/."""
    n = (os.cpu_count() or 1) + 1
    run = sc.cli("search", "search", *SURROGATE, "--name", "cpus", "--cpus-per-trial", str(n), must_not_write=True)
    _one_line_refusal(sc, run, "search", "more than this machine's")


def resume_into_a_typo(sc: Scenario) -> None:
    """10. --resume X --db typo/x.db: one line, typo/ not made."""
    run = sc.cli("resume", "search", "--resume", "X", "--db", "typo/x.db", must_not_write=True)
    _one_line_refusal(sc, run, "resume", "no database at")
    sc.check("typo/ not created", not os.path.exists(sc.path("typo")))


def escaping_name(sc: Scenario) -> None:
    """11. --name ../escape: one line, nothing made (the run folder would be runs/../escape)."""
    run = sc.cli("search", "search", *SURROGATE, "--name", "../escape", must_not_write=True)
    _one_line_refusal(sc, run, "search", "--name must be")
    sc.check("nothing beside work/ either", not os.path.exists(os.path.join(sc.base, "escape")))


def no_op_resume(sc: Scenario) -> None:
    """12. --resume of a finished search: says complete, exit 0, the file byte-identical (its finished_at too)."""
    db = _finished_db(sc)
    before = _search_row(sc.path(db), "done")
    run = sc.cli("resume", "search", "--resume", "done", "--db", db, must_not_write=True, keep=(db,))
    sc.check("exit 0", run.code == 0, run.code)
    sc.check("says it is complete", "is complete: 30 of 30 trials finished" in run.out, _one_line(run.message, 140))
    sc.check("r.db byte-identical", not run.changed)
    sc.check("finished_at unchanged", _search_row(sc.path(db), "done") == before)
    sc.db_facts(db, "done", 30)


def trials_below_finished(sc: Scenario) -> None:
    """13. --resume NAME --trials N below the finished count: one line, the file byte-identical."""
    db = _finished_db(sc)
    run = sc.cli("resume", "search", "--resume", "done", "--trials", "29", "--db", db, must_not_write=True,
                 keep=(db,))
    _one_line_refusal(sc, run, "resume", "--trials 29 is below the 30 trials")
    sc.check("r.db byte-identical", not run.changed)
    sc.db_facts(db, "done", 30)


def _chained_spec(blocks: int) -> dict[str, Any]:
    """A spec whose every block reads the two before it (all live), the last five the outputs L3..L7."""
    out = [{"level": 3, "block_fn": "bottleneck", "input_offsets": [i, i + 1], "is_output": False}
           for i in range(blocks - 5)]
    out += [{"level": level, "block_fn": "bottleneck", "input_offsets": [blocks - 5 + k, blocks - 4 + k],
             "is_output": True} for k, level in enumerate((3, 4, 5, 6, 7))]
    return {"stem": [2, 0, 0, 0], "blocks": out}


def oversized_specs(sc: Scenario) -> None:
    """14. spec show of a 20,000-block spec, a 34 MB one and JSON nested 100,000 deep: one line each, quickly."""
    with open(sc.path("blocks-20000.json"), "w") as fh:
        json.dump(_chained_spec(20_000), fh)
    with open(sc.path("spec-34mb.json"), "w") as fh:
        json.dump(_chained_spec(360_000), fh)  # 34.0 MB
    with open(sc.path("nested-100000.json"), "w") as fh:
        fh.write("[" * 100_000 + "]" * 100_000)
    for name in ("blocks-20000.json", "spec-34mb.json", "nested-100000.json"):
        mb = os.path.getsize(sc.path(name)) / 1e6
        run = sc.cli(f"spec show {name}", "spec", "show", name, must_not_write=True, timeout=60)
        run.label += f" ({mb:.1f} MB)"
        sc.check(f"{name}: refused (exit 2)", run.code == 2, "timeout" if run.timed_out else run.code)
        sc.check(f"{name}: one line, no table", len(run.error_lines) == 1 and not run.out.strip(),
                 f"{len(run.error_lines)} stderr lines, {len(run.out.splitlines())} stdout lines")
        sc.check(f"{name}: within {FAST_S:g} s", run.seconds <= FAST_S, round(run.seconds, 1))


def unwritable_outputs(sc: Scenario) -> None:
    """15. report --out /proc/x and show --image /proc/x.png: one line, nothing made."""
    db = _finished_db(sc)
    key = _rows(sc.path(db), "select arch_key from trials where status = 'completed' limit 1")[0][0]
    report = sc.cli("report", "report", "--search", "done", "--db", db, "--out", "/proc/x", must_not_write=True,
                    keep=(db,))
    _one_line_refusal(sc, report, "report --out /proc/x", "/proc/x")
    show = sc.cli("show --image", "show", key, "--db", db, "--image", "/proc/x.png", must_not_write=True, keep=(db,))
    _one_line_refusal(sc, show, "show --image /proc/x.png", "/proc/x.png")


def _tiny_coco(root: str, sizes: tuple[int, ...] = (64, 64, 0)) -> str:
    """A COCO-layout folder of 64 px JPEGs (PIL), one per entry of `sizes`; 0 makes a zero-byte file."""
    from PIL import Image

    os.makedirs(os.path.join(root, "train2017"))
    os.makedirs(os.path.join(root, "annotations"))
    images, annotations = [], []
    for i, size in enumerate(sizes):
        name = f"{i:06d}.jpg"
        if size:
            Image.new("RGB", (size, size), (40 * i, 90, 160)).save(os.path.join(root, "train2017", name), "JPEG")
        else:
            open(os.path.join(root, "train2017", name), "wb").close()
        images.append({"id": i + 1, "file_name": name, "width": size or 64, "height": size or 64})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [8, 8, 24, 24], "area": 576,
                            "iscrowd": 0})
    with open(os.path.join(root, "annotations", "instances_train2017.json"), "w") as fh:
        json.dump({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "box"}]}, fh)
    return os.path.join(root, "train2017", f"{len(sizes) - 1:06d}.jpg")


def zero_byte_jpeg(sc: Scenario) -> None:
    """16. data coco with a zero-byte JPEG: one line naming the file, no output folder."""
    bad = os.path.relpath(_tiny_coco(sc.path("coco")), sc.work)  # as the command names it: from --coco-dir coco
    run = sc.cli("data coco", "data", "coco", "--coco-dir", "coco", "--out", "out", "--val-images", "1",
                 must_not_write=True)
    errors = [ln for ln in run.error_lines if "error" in ln.lower()]
    sc.check("exit 2", run.code == 2, run.code)
    sc.check("one error line, naming the file", len(errors) == 1 and bad in errors[0] and "empty" in errors[0],
             errors[:3])
    sc.check("out/ not created", not os.path.exists(sc.path("out")))


def sigterm_on_ray(sc: Scenario) -> None:
    """17. SIGTERM mid-run on the Ray runner: exit 143, search stopped, Ray's processes gone; the resume completes."""
    sigterm_and_resume(sc, runner="ray")


def _bound_sockets(pids: list[int]) -> list[tuple[str, str, int]]:
    """(process, address, port) of every listening TCP and bound UDP socket of these processes."""
    import psutil

    out = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            for c in p.net_connections(kind="inet"):
                if c.laddr and (c.status == psutil.CONN_LISTEN or c.type == socket.SOCK_DGRAM):
                    out.append((p.name(), c.laddr.ip, c.laddr.port))
    return out


def loopback_only(sc: Scenario) -> None:
    """18. A local Ray search, as a user runs it: every socket its processes listen on is bound to loopback."""
    first, proc = sc.start("search", *_search("lo", 6, duration=2.0, runner="ray"))
    sc.check("2 trials finished", sc.wait_for(lambda: _finished(sc.path("r.db"), "lo") >= 2 or proc.poll() is not None)
             and proc.poll() is None)
    bound = _bound_sockets(_marked_pids(sc.ray_tmp))
    open_ = sorted({f"{name} {ip}:{port}" for name, ip, port in bound
                    if ip not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")})
    sc.check("the cluster's servers were seen listening", any(name == "gcs_server" for name, _, _ in bound),
             sorted({name for name, _, _ in bound}))
    sc.check("no socket bound beyond loopback", not open_, open_[:6])
    sc.notes.append(f"{len(bound)} listening sockets of {len({b[0] for b in bound})} kinds of process, "
                    f"{len(open_)} beyond loopback")
    sc.wait((first, proc), timeout=120)
    first.shown = f"{len(bound)} listening sockets, {len(open_)} beyond 127.0.0.1; then exit {first.code}"
    sc.check("search: exit 0", first.code == 0, first.code)
    sc.db_facts("r.db", "lo", 6)
    sc.ray_left_behind()


def _stop_outside_a_transaction(proc: subprocess.Popen, db: str, tries: int = 20) -> int:
    """SIGSTOP of `proc` at a moment it holds no write lock on `db` (else SIGCONT and again, 0.1 s later): a driver
    stopped inside a commit blocks every other writer, and its resume fails after the busy timeout (scenario 29).

    Returns:
      The try that stopped it there (0: none did; it is left running).
    """
    for n in range(1, tries + 1):
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.05)
        con = sqlite3.connect(db, timeout=0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
            return n
        except sqlite3.OperationalError:
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.1)
        finally:
            con.close()
    return 0


def paused_driver_taken_over(sc: Scenario) -> None:
    """19. SIGSTOP of a local-runner driver past its lease (at a moment it holds no write lock: see scenario 29), a
    resume takes over, SIGCONT: the paused driver stores nothing more and exits 3 in one line; the resume finishes
    every trial once."""
    first, proc = sc.start("search", *_search("pause", 14, duration=1.0))
    sc.check("3 trials finished before SIGSTOP", sc.wait_for(lambda: _finished(sc.path("r.db"), "pause") >= 3))
    tries = _stop_outside_a_transaction(proc, sc.path("r.db"))
    sc.check("paused outside a write transaction", tries > 0, tries)
    if tries > 1:
        sc.notes.append(f"SIGSTOP landed inside a write transaction {tries - 1} times first (SIGCONT, again)")
    stopped_at = _finished(sc.path("r.db"), "pause")
    time.sleep(0.5)
    out_file = first._files[0] if first._files else None
    progress_before = len(PROGRESS.findall(open(out_file.name).read())) if out_file else 0
    time.sleep(62.0)  # past the lease's 60 s without a heartbeat
    resume, rproc = sc.start("resume", "search", "--resume", "pause", "--db", "r.db", "--top", "0", "--plain")
    took = sc.wait_for(lambda: _finished(sc.path("r.db"), "pause") > stopped_at or rproc.poll() is not None,
                       timeout=120)
    sc.check("the resume took over and stored a trial while the first driver was paused", took and rproc.poll() is None)
    proc.send_signal(signal.SIGCONT)
    sc.wait((first, proc), timeout=60)
    sc.wait((resume, rproc), timeout=180)
    late = first.progress - progress_before
    sc.late_writes += max(0, late)
    sc.check("the paused driver: exit 3", first.code == 3, first.code)
    lines = first.error_lines
    sc.check("the paused driver: one line saying another driver took over",
             len(lines) == 1 and "another driver took over search 'pause'" in lines[0], lines[:3])
    first.shown = lines[-1] if lines else first.message
    sc.check("the paused driver stored no trial after SIGCONT", late == 0, late)
    sc.check("resume: exit 0", resume.code == 0, resume.code)
    resume.shown = resume.line("took over the lease").strip() or resume.message
    sc.db_facts("r.db", "pause", 14)
    sc.ray_left_behind()


def heartbeat_from_the_future(sc: Scenario) -> None:
    """20. A search whose driver died with its heartbeat stored a day ahead (a clock set back since): `searches`
    says interrupted and a resume takes it over at once and finishes it."""
    first, proc = sc.start("search", *_search("skew", 8))
    sc.check("2 trials finished before the kill", sc.wait_for(lambda: _finished(sc.path("r.db"), "skew") >= 2))
    proc.kill()
    sc.wait((first, proc))
    first.shown = f"killed (SIGKILL) with {_finished(sc.path('r.db'), 'skew')} trials finished"
    ahead = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).replace(tzinfo=None)
    con = sqlite3.connect(sc.path("r.db"))
    with con:  # another host's driver (its process cannot be looked up here), a day ahead; as the store writes it
        con.execute("update searches set lease_heartbeat = ?, lease_host = 'elsewhere' where name = 'skew'",
                    (ahead.strftime("%Y-%m-%d %H:%M:%S.%f"),))
    con.close()
    listed = sc.cli("searches", "searches", "--db", "r.db")
    row = _one_line(listed.line("skew"), 140)
    listed.shown = row
    sc.check("searches shows it as interrupted", "interrupted" in row, row)
    resumed = sc.cli("resume", "search", "--resume", "skew", "--db", "r.db", "--top", "0", "--plain")
    sc.check("resume: exit 0", resumed.code == 0, resumed.code)
    sc.check("resume says the heartbeat was in the future", "in the future" in resumed.out,
             _one_line(resumed.line("lease"), 140))
    resumed.shown = resumed.line("took over the lease").strip() or resumed.message
    sc.db_facts("r.db", "skew", 8)
    sc.ray_left_behind()


# ------------------------------------------------------------------------------------------------ issue 29's defects
def _ended(code: int | None) -> str:
    """How a command ended: 'exit N', or 'SIGNAME' for a signal it did not handle."""
    if code is None:
        return "timeout"
    return f"exit {code}" if code >= 0 else signal.Signals(-code).name


def _start_s(sc: Scenario, repeats: int = 3) -> float:
    """The longest of `repeats` runs of `python -c 'import nas.cli'`: Python's own start and the CLI module's imports,
    before any code of the CLI's can handle a signal."""
    took = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import nas.cli"], cwd=sc.work, env=sc.env, check=True)
        took.append(time.perf_counter() - t0)
    return max(took)


def interrupted_upgrade(sc: Scenario) -> None:
    """21. `db upgrade` of a schema-0001 database (the finished fixture taken back by the project's Alembic
    downgrade) cut by SIGKILL, SIGTERM and SIGINT at 14 delays spread over one uninterrupted upgrade's measured time
    T, from S, Python's own start and the CLI module's imports (measured: a Ctrl-C there is Python's
    KeyboardInterrupt traceback, before any code of the CLI's runs): S + (T - S) k/15, k = 1..14. After each cut,
    the file is at 0001 or 0006 (never between), `db upgrade` exits 0, `top` exits 0, and no output says 'already
    exists' (before: an upgrade cut a few ms in left trial_reports behind at 0001, and every later upgrade failed
    with 'table trial_reports already exists')."""
    old = _old_db(sc)
    shutil.copyfile(sc.path(old), sc.path("timed.db"))
    timed = sc.cli("db upgrade (timed)", "db", "upgrade", "--db", "timed.db")
    sc.check("an uninterrupted upgrade: exit 0, 0001 -> 0006", timed.code == 0 and "0001 -> 0006" in timed.out,
             _one_line(timed.out + timed.err, 140))
    start = _start_s(sc)
    delays = [start + (timed.seconds - start) * k / 15 for k in range(1, 15)]
    sc.notes.append(f"an uninterrupted upgrade took {timed.seconds:.2f} s, Python's start and the CLI module's "
                    f"imports {start:.3f} s: delays {delays[0]:.2f}-{delays[-1]:.2f} s")
    ends: dict[str, collections.Counter] = {}
    between, wedged, exists = [], [], []
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        for i, delay in enumerate(delays):
            db = f"{sig.name.lower()}-{i:02d}.db"
            shutil.copyfile(sc.path(old), sc.path(db))
            cut, proc = sc.start(f"db upgrade, {sig.name} at {delay:.2f} s", "db", "upgrade", "--db", db)
            time.sleep(delay)
            proc.send_signal(sig)  # a no-op if it finished first (counted as its exit 0)
            sc.wait((cut, proc), timeout=60)
            ends.setdefault(sig.name, collections.Counter())[_ended(cut.code)] += 1
            version = _rows(sc.path(db), "select version_num from alembic_version")
            if version not in ([("0001",)], [("0006",)]):
                between.append(f"{db}: {version}")
            again = sc.cli(f"db upgrade after {sig.name} at {delay:.2f} s", "db", "upgrade", "--db", db)
            top = sc.cli(f"top after {sig.name} at {delay:.2f} s", "top", "--db", db)
            for run in (cut, again, top):
                run.listed = False
                if "already exists" in run.out + run.err:
                    exists.append(f"{run.label}: {_one_line(run.line('already exists'), 100)}")
            if again.code != 0 or top.code != 0:
                wedged.append(f"{db}: db upgrade {_ended(again.code)}, top {_ended(top.code)}: "
                              f"{_one_line(again.err + top.err, 100)}")
    sc.wedged += len(wedged)
    n = 3 * len(delays)
    sc.check(f"{n} cut upgrades: each file left at 0001 or 0006", not between, between[:4])
    sc.check(f"{n} reruns: db upgrade and top exit 0", not wedged, wedged[:4])
    sc.check("no output says 'already exists'", not exists, exists[:4])
    cuts = "; ".join(f"{name}: " + ", ".join(f"{e} x{k}" for e, k in sorted(c.items())) for name, c in ends.items())
    sc.summary.append(f"{n} upgrades cut ({cuts}); then db upgrade and top: exit 0 for {n - len(wedged)} of {n}, "
                      f"'already exists' {len(exists)} times")


@contextlib.contextmanager
def _private_mounts(sc: Scenario, sizes: dict[str, str]) -> Iterator[bool]:
    """A tmpfs of the given size on each of these folders of work/, in a mount namespace of the scenario's own.

    `unshare -m` (propagation private) starts a holder process that makes the mounts inside the new namespace and
    sleeps; the scenario's commands run in it (`nsenter -m`, then a cd, so that relative paths cross its mounts) and
    the bench sees its files through /proc/PID/root. No other process sees the mounts, and they vanish when the
    holder is stopped (by PID). Yields False where that cannot be done (not root, no unshare, no tmpfs), after
    recording the scenario as skipped.
    """
    for folder in sizes:
        os.makedirs(sc.path(folder))
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("unshare", "nsenter", "mount")):
        sc.skipped = "needs root, unshare, nsenter and mount"
        yield False
        return
    script = " && ".join([*(f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(sc.path(folder))}"
                            for folder, size in sizes.items()), "echo mounted", "exec sleep 3600"])
    holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if holder.stdout.readline().strip() != "mounted":  # type: ignore[union-attr]
            holder.wait(timeout=30)
            sc.skipped = f"unshare -m / mount -t tmpfs failed: {_one_line(holder.stderr.read(), 160)}"  # type: ignore
            yield False
            return
        if os.readlink(f"/proc/{holder.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            raise RuntimeError("unshare -m gave no mount namespace of its own")  # never mount on the machine's
        sc.wrap = ["nsenter", "-t", str(holder.pid), "-m", "--", "sh", "-c", 'cd "$0" && exec "$@"', sc.work]
        sc.seen = f"/proc/{holder.pid}/root"
        sc.notes.append("in a mount namespace of its own (unshare -m): tmpfs "
                        + ", ".join(f"{size} on {folder}/" for folder, size in sizes.items()))
        yield True
    finally:
        sc.wrap, sc.seen = [], ""
        _stop([holder.pid])
        holder.wait()


def _fill(folder: str, leave: int = 0) -> int:
    """Fills `folder`'s file system with a file 'fill' until a write fails, then frees `leave` bytes of it.

    Returns:
      The bytes then free there.
    """
    fd = os.open(os.path.join(folder, "fill"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (b"\0" * (1 << 16), b"\0" * 4096):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, chunk)
        if leave:
            os.ftruncate(fd, max(0, os.lseek(fd, 0, os.SEEK_END) - leave))
    finally:
        os.close(fd)
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def _reads_work(sc: Scenario, d: str, commands: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    """Each read command on database `d`: exit 0, nothing on stderr, nothing made or changed; db check's integrity
    ok."""
    for label, argv in commands:
            run = sc.cli(label, *argv, "--db", d, must_not_write=True, keep=(d,))
            sc.check(f"{label}: exit 0, nothing on stderr", run.code == 0 and not run.error_lines,
                     [run.code, *run.error_lines[:2]])
            if label == "db check":
                sc.check("db check: integrity ok", "integrity: ok" in run.out, _one_line(run.line("integrity"), 100))
                run.shown = run.line("integrity:")


def full_disk(sc: Scenario) -> None:
    """22. A full file system (a 2 MiB tmpfs filled to its last page, under unshare -m) holding the finished search's
    WAL database: `db check`, `searches`, `top` exit 0 and make nothing (no room for the 32 KiB -shm: read as
    immutable); `search --resume done --trials 40` exits 2 in one line, the file byte-identical, no -wal or -shm made
    (before: a ~40-line SQLAlchemy traceback, and a failed read left an empty -wal after which the resume called the
    database damaged). Then a search whose --run-dir is on a tmpfs with 3 pages left (TensorBoard's event files do
    not fit) finishes every trial, exit 0, with one warning (before: ENOSPC from the writer killed the search with a
    traceback and left its trial running)."""
    db = _finished_db(sc)
    with _private_mounts(sc, {"full": "2m", "tb": "256k"}) as ok:
        if not ok:
            return
        shutil.copyfile(sc.path(db), sc.view("full", "r.db"))
        free = _fill(sc.view("full"))
        sc.check("full/: 0 bytes free", free == 0, free)
        d = "full/r.db"
        _reads_work(sc, d, (("db check", ("db", "check")), ("searches", ("searches",)), ("top", ("top",))))
        resume = sc.cli("resume --trials 40", "search", "--resume", "done", "--trials", "40", "--db", d, "--top", "0",
                        "--plain", must_not_write=True, keep=(d,))
        _one_line_refusal(sc, resume, "resume", "its file system is full")
        sc.check("resume: full/r.db byte-identical, no -wal or -shm beside it",
                 not resume.changed and not [s for s in ("-wal", "-shm") if os.path.exists(sc.view(d + s))],
                 sorted(os.listdir(sc.view("full"))))
        free = _fill(sc.view("tb"), leave=3 * 4096)
        tb = sc.cli("search, --run-dir on tb/", *_search("tb", 8, duration=0.3, db="tb.db"), "--run-dir", "tb/run")
        warned = [ln for ln in tb.error_lines if "TensorBoard" in ln]
        sc.check("search: exit 0", tb.code == 0, tb.code)
        sc.check("search: one warning (TensorBoard, no space left), no other stderr line",
                 len(warned) == 1 and "No space left" in warned[0] and len(tb.error_lines) == 1, tb.error_lines[:3])
        tb.shown = _one_line(warned[0] if warned else tb.message, 140)
        sc.notes.append(f"tb/ had {free} bytes free; the search's log and events there: "
                        + ", ".join(sorted(os.path.relpath(os.path.join(b, f), sc.view("tb"))
                                           for b, _, fs in os.walk(sc.view("tb", "run")) for f in fs)))
        sc.db_facts("tb.db", "tb", 8)
        sc.ray_left_behind()


def read_only_mount(sc: Scenario) -> None:
    """23. The finished search's WAL database copied onto a tmpfs then remounted read-only (under unshare -m):
    `searches`, `top`, `show KEY`, `db check` exit 0 and change nothing, `report --search done --out OUT` (OUT on a
    writable disk) writes its page (before: every read command failed with 'unable to open database file', SQLite
    unable to make the -shm; `db check` printed 'integrity: ok' and then that error)."""
    db = _finished_db(sc)
    key = _rows(sc.path(db), "select arch_key from trials where status = 'completed' limit 1")[0][0]
    with _private_mounts(sc, {"ro": "4m"}) as ok:
        if not ok:
            return
        shutil.copyfile(sc.path(db), sc.view("ro", "r.db"))
        remount = subprocess.run([*sc.wrap, "mount", "-o", "remount,ro", sc.path("ro")], capture_output=True,
                                 text=True)
        sc.check("ro/ remounted read-only", remount.returncode == 0 and
                 bool(os.statvfs(sc.view("ro")).f_flag & os.ST_RDONLY), _one_line(remount.stderr, 100))
        d = "ro/r.db"
        _reads_work(sc, d, (("searches", ("searches",)), ("top", ("top",)), ("show", ("show", key)),
                            ("db check", ("db", "check"))))
        report = sc.cli("report", "report", "--search", "done", "--db", d, "--out", "report")
        sc.check("report: exit 0, its page written", report.code == 0 and os.path.exists(sc.path("report",
                                                                                              "index.html")),
                 [report.code, *report.error_lines[:2]])


def _laughs(levels: int = 9, width: int = 9) -> str:
    """The billion laughs: 9 levels of 9 aliases of the level below, 9**9 'lol's once expanded."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def hostile_presets(sc: Scenario) -> None:
    """24. search --preset FILE with hostile YAML: nested 50,000 deep, the billion laughs (an alias bomb of 9 levels),
    a list of 100,000 items 5 deep under search.trials, a 50 MB sparse file (truncate): exit 2, one short line (< 300
    characters), within 5 s, nothing made. The bounds of config_io.load_yaml: the file's size checked before it is
    read, depth and aliases (counted expanded) counted while composing, excerpts of at most 80 characters."""
    presets = {
        "deep.yaml": ("search:\n  family: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested deeper than 32 levels"),
        "laughs.yaml": (_laughs(), "aliases"),
        "wide.yaml": ("search:\n  trials: [[[[[" + ", ".join(["9"] * 100_000) + "]]]]]\n",
                      "search.trials: expected an integer"),
        "huge.yaml": (None, "larger than 1,048,576 bytes"),
    }
    for name, (text, _) in presets.items():
        with open(sc.path(name), "w") as fh:
            if text is None:
                fh.truncate(50 << 20)  # sparse: 50 MB that take no room
            else:
                fh.write(text)
    for name, (_, needle) in presets.items():
        size = os.path.getsize(sc.path(name))
        run = sc.cli(f"--preset {name} ({size:,} bytes)", "search", "--preset", name, "--runner", "local", "--db",
                     "r.db", must_not_write=True, timeout=60)
        _one_line_refusal(sc, run, name, needle)
        sc.check(f"{name}: the line is short (< 300 characters)", bool(run.error_lines) and
                 len(run.error_lines[0]) < 300, len(run.error_lines[0]) if run.error_lines else None)
        sc.check(f"{name}: within {FAST_S:g} s", run.seconds <= FAST_S, round(run.seconds, 1))


# (flags, what the one line says): each was accepted before, or failed only after runs/ and the database were made.
# All run on the local runner but --cpus-per-trial nan, found on the default runner (Ray), which it is given.
_BAD_VALUES = [
    (["--set", "search.reward_for_failure=nan"], "search.reward_for_failure must be a finite number in [-1, 1]"),
    (["--set", "search.reward_for_failure=inf"], "search.reward_for_failure must be a finite number in [-1, 1]"),
    (["--set", "search.reward_for_failure=1e309"], "search.reward_for_failure must be a finite number in [-1, 1]"),
    (["--seed", "-1"], "--seed: search.seed must be an integer in [0, 2147483647], got -1"),
    (["--cpus-per-trial", "nan"], "--cpus-per-trial: search.cpus_per_trial must be a finite number > 0, got nan"),
    (["--trial-timeout", "nan"], "--trial-timeout: search.trial_timeout_s must be a finite number >= 0"),
    (["--set", "proxy.learning_rate=.inf"], "proxy.learning_rate must be a finite number > 0, got inf"),
    (["--set", "evaluator.surrogate.noise=.inf"], "evaluator.surrogate.noise must be a finite number in [0, 1]"),
    (["--set", "proxy.seed=-1"], "proxy.seed must be an integer in [0, 2147483647], got -1"),
    (["--name", ""], "--name must be letters, digits, '.', '_' or '-'"),
    (["--evaluator", "retinanet", "--surrogate-duration", "5"],
     "--surrogate-duration is a setting of the surrogate evaluator, but the evaluator is 'retinanet'"),
]


def bad_values(sc: Scenario) -> None:
    """25. Values that passed the checks before: reward_for_failure nan, inf and 1e309, --seed -1, --cpus-per-trial
    nan on the Ray runner, --trial-timeout nan, proxy.learning_rate .inf, evaluator.surrogate.noise .inf,
    proxy.seed -1, --name '', --surrogate-duration 5 with the retinanet evaluator (the default when none is given;
    a real training started): exit 2, one line naming the flag or key, nothing made (before: NaN passed every
    '<= 0' check and reached the driver or every trial, --seed -1 ended in a traceback after runs/ and the database
    were made, --name '' took the default name)."""
    for flags, needle in _BAD_VALUES:
        argv = ["search", "--controller", "random", "--top", "0", "--plain", "--db", "r.db"]
        if "--evaluator" not in flags:
            argv += ["--evaluator", "surrogate"]
        if "--cpus-per-trial" not in flags:
            argv += ["--runner", "local"]
        if "--name" not in flags:
            argv += ["--name", "v"]
        what = " ".join(shlex.quote(f) for f in flags if f != "--set")
        run = sc.cli(what, *argv, *flags, must_not_write=True)
        _one_line_refusal(sc, run, what, needle)


# Set the terminal's title, clear the screen, ring the bell, a CSI in red; as tests/nas/test_stored_text.py stores.
_EVIL = "evil\x1b]0;pwned\x07\x1b[2J\x1b[31m"


def stored_escapes(sc: Scenario) -> None:
    """26. A database (written by the bench with results_db.ResultStore, as tests/nas/test_stored_text.py does) of two
    searches, one whose name, controller, trial hosts and error hold terminal escape sequences (set the title, clear
    the screen, BEL, a colour): `searches`, `top` and `show KEY` exit 0, print no ESC or BEL byte and show the text
    escaped (before: searches and top printed it raw, so a database could retitle, clear or recolour the terminal)."""
    import numpy as np

    from results_db import ResultStore
    from search_space import SearchSpace, seeds

    space = SearchSpace("spinenet49")
    archs = (seeds.SPINENET_49.canonical(), space.decode(space.random(np.random.default_rng(0))))
    with ResultStore(f"sqlite:///{sc.path('evil.db')}") as store:
        for name, reward, arch in ((_EVIL, 0.4, archs[0]), ("clean", 0.3, archs[1])):
            key = store.register_arch(arch, family="spinenet49", flops=2_000_000_000, params=4_000_000)
            store.create_search(name, config="{}", controller="ppo" + _EVIL, family="spinenet49", fingerprint="fp")
            done, failed = store.add_trials(name, [(key, [0]), (key, [1])], status="running", host="h" + _EVIL,
                                            fingerprint="fp")
            store.finish_trial(done, status="completed", reward=reward, metrics={"ap": reward})
            store.finish_trial(failed, status="failed", error="boom" + _EVIL + "\nsecond line")
    # Reads, not refusals: a read-only open of a WAL database may leave its -wal and -shm (README), so no file check.
    for label, argv in (("searches", ("searches",)), ("top", ("top",)), ("show", ("show", archs[0].key))):
        run = sc.cli(label, *argv, "--db", "evil.db")
        text = run.out + run.err
        sc.check(f"{label}: exit 0", run.code == 0, [run.code, *run.error_lines[:2]])
        sc.check(f"{label}: no ESC or BEL byte in its output", "\x1b" not in text and "\x07" not in text,
                 [ln for ln in text.splitlines() if "\x1b" in ln or "\x07" in ln][:2])
        sc.check(f"{label}: the stored text shown escaped", "\\x1b]0;pwned\\x07" in text, _one_line(run.out, 100))
        run.shown = _one_line(next((ln for ln in text.splitlines() if "pwned" in ln), run.message), 100)


def db_check_of_a_directory(sc: Scenario) -> None:
    """27. `db check --db DIR` of a directory: exit 2, the same one line as `searches --db DIR` (before: 'integrity:
    DAMAGED' from SQLite's disk I/O error)."""
    os.makedirs(sc.path("adir"))
    check = sc.cli("db check", "db", "check", "--db", "adir", must_not_write=True)
    listed = sc.cli("searches", "searches", "--db", "adir", must_not_write=True)
    for run in (check, listed):
        _one_line_refusal(sc, run, run.label, "is not a database file (it is a directory or a device)")
    sc.check("the same line from both", check.error_lines == listed.error_lines, [*check.error_lines,
                                                                                   *listed.error_lines])


def in_memory_and_uri_databases(sc: Scenario) -> None:
    """28. search --db sqlite:// and --db :memory:: exit 2, one line saying it is in-memory, nothing made (before:
    the results vanished with the process, and ':memory:' made a file of that name); search --db
    'file:x.db?mode=rw': exit 2, one line naming the forms expected, no file 'file:x.db' (before: made one)."""
    for db, needle in (("sqlite://", "is an in-memory database"), (":memory:", "is an in-memory database"),
                       ("file:x.db?mode=rw", "got the SQLite URI 'file:x.db?mode=rw': give its path (x.db)")):
        run = sc.cli(f"--db {db}", "search", *SURROGATE, "--runner", "local", "--name", "m", "--trials", "1", "--db",
                     db, must_not_write=True)
        _one_line_refusal(sc, run, f"--db {db}", needle)
    sc.check("no file named ':memory:', 'file:x.db' or 'file:x.db?mode=rw'",
             not [f for f in (":memory:", "file:x.db", "file:x.db?mode=rw") if os.path.exists(sc.path(f))])


def locked_database(sc: Scenario) -> None:
    """29. Another process holds the finished search's write lock (a transaction the bench keeps open) past the
    store's 30 s busy timeout: `search --resume done --trials 40` exits 1 in one line saying the database is locked,
    makes nothing and leaves the file byte-identical; once the lock is let go the same resume finishes 40 trials
    (before: SQLAlchemy's ~60-line 'database is locked' traceback, found when scenario 19's SIGSTOP landed inside
    a driver's commit)."""
    db = _finished_db(sc)
    holder = sqlite3.connect(sc.path(db), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        refused = sc.cli("resume, locked", "search", "--resume", "done", "--trials", "40", "--db", db, "--top", "0",
                         "--plain", must_not_write=True, keep=(db,))
    finally:
        holder.close()  # ends the transaction (rolled back: it wrote nothing)
    _one_line_refusal(sc, refused, "resume, locked", "database is locked", code=1)
    resumed = sc.cli("resume", "search", "--resume", "done", "--trials", "40", "--db", db, "--top", "0", "--plain")
    sc.check("resume once the lock is let go: exit 0", resumed.code == 0, [resumed.code, *resumed.error_lines[:2]])
    sc.db_facts(db, "done", 40)
    sc.ray_left_behind()


SCENARIOS: list[Callable[[Scenario], None]] = [
    two_drivers_race, kill_9_and_resume, sigterm_and_resume, ctrl_c_while_ray_starts, stale_foreign_cluster,
    live_foreign_cluster, damaged_database, empty_database, too_many_cpus, resume_into_a_typo, escaping_name,
    no_op_resume, trials_below_finished, oversized_specs, unwritable_outputs, zero_byte_jpeg, sigterm_on_ray,
    loopback_only, paused_driver_taken_over, heartbeat_from_the_future, interrupted_upgrade, full_disk,
    read_only_mount, hostile_presets, bad_values, stored_escapes, db_check_of_a_directory, in_memory_and_uri_databases,
    locked_database,
]
NAMES = {f.__name__.replace("_", "-"): f for f in SCENARIOS}


# ------------------------------------------------------------------------------------------------ the table
def _runners(sc: Scenario) -> str:
    """The runners a scenario's searches ran on: each `search`'s --runner, ray without one (a resume without one
    keeps its search's); '-' when it ran no search."""
    found: list[str] = []
    for r in sc.runs:
        if r.argv[:1] != ["search"]:
            continue
        runner = r.argv[r.argv.index("--runner") + 1] if "--runner" in r.argv else None
        if runner is None and "--resume" not in r.argv:
            runner = "ray"
        if runner and runner not in found:
            found.append(runner)
    return ", ".join(found) or "-"


def _row(index: int, name: str, sc: Scenario, seconds: float, crash: str | None) -> dict[str, Any]:
    refusals = [r for r in sc.runs if r.must_not_write]
    row = {
        "scenario": f"{index}. {name}",
        "runner": _runners(sc),
        "what": (SCENARIOS[index - 1].__doc__ or "").split(". ", 1)[1].strip(),
        "commands": [r.record(sc.work) for r in sc.runs],
        "databases": sc.facts,
        "lost": sum(f["lost"] for f in sc.facts),
        "duplicated": sum(f["duplicated"] for f in sc.facts),
        "run_twice": sc.run_twice,
        "left_running": sum(f["left_running"] for f in sc.facts),
        "late_writes": sc.late_writes,
        "wedged": sc.wedged,
        "tracebacks": sum("Traceback" in r.out + r.err for r in sc.runs),
        "files_from_failed": sum(len(r.created) + len(r.changed) for r in refusals),
        "files_from_failed_list": [f"{r.label}: {', '.join(r.created + [f'{p} (bytes changed)' for p in r.changed])}"
                                   for r in refusals if r.created or r.changed],
        "ray_left_behind": sc.ray_left,
        "summary": sc.summary,
        "skipped": sc.skipped,
        "checks": sc.checks + ([{"check": "the scenario ran to its end", "ok": False, "got": crash}] if crash else []),
        "notes": sc.notes,
        "seconds": round(seconds, 1),
    }
    row["checks_failed"] = [c for c in row["checks"] if not c["ok"]]
    row["targets_met"] = (not row["checks_failed"] and not sc.ray_left and all(
        row[k] == 0 for k in COUNTS))
    return row


#: The counts every row keeps, each with the target 0.
COUNTS = ("lost", "duplicated", "run_twice", "left_running", "late_writes", "wedged", "tracebacks", "files_from_failed")


def _happened(row: dict[str, Any], width: int = 70) -> str:
    parts = [f"skipped: {row['skipped']}"] if row.get("skipped") else []
    for c in row["commands"]:
        if not c.get("listed", True):
            continue
        code = "timeout" if c["timed_out"] else f"exit {c['exit_code']}"
        msg = c["message"].removeprefix("spinenas: error: ")
        parts.append(f"{c['label']}: {code}, '{msg[:width] + ('...' if len(msg) > width else '')}'")
    return "; ".join(parts + row.get("summary", []))


def _markdown(doc: dict[str, Any]) -> str:
    cols = ("scenario", "runner", "what happened", "lost", "dup", "run twice", "left running",
            "writes after lost lease", "wedged", "tracebacks", "files", "Ray left", "checks", "s")
    lines = [f"# Chaos benchmark ({doc['date_utc']}, commit {(doc['commit'] or '?')[:10]}"
             f"{' + local changes' if doc['commit_dirty'] else ''})", "",
             f"`{doc['command']}` on {doc['machine']['cpus']} CPUs, {doc['seconds'] / 60:.1f} min. "
             "Columns as in the script's docstring; files: paths made (or database bytes changed) by commands that "
             "must fail or change nothing. Targets: 0 in every count column, every check passed.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in doc["rows"]:
        failed = r["checks_failed"]
        checks = f"{len(r['checks']) - len(failed)}/{len(r['checks'])}"
        if failed:
            checks += " (missed: " + "; ".join(f"{c['check']}" + (f" [got {_one_line(str(c['got']), 60)}]"
                                                                  if "got" in c else "") for c in failed) + ")"
        cells = [r["scenario"], r.get("runner", "?"), _happened(r).replace("|", "\\|"), r["lost"], r["duplicated"],
                 r["run_twice"], r["left_running"], r.get("late_writes", 0), r.get("wedged", 0), r["tracebacks"],
                 f"{r['files_from_failed']}" + (f" ({'; '.join(r['files_from_failed_list'])})"
                                                if r["files_from_failed"] else ""), len(r["ray_left_behind"]),
                 checks.replace("|", "\\|"), r["seconds"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    t = doc["totals"]
    skipped = f" ({t['skipped']} of them skipped here: see their rows)" if t.get("skipped") else ""
    lines += ["", f"Totals: {t['scenarios']} scenarios, {t['scenarios_met']} met every target{skipped}; "
              f"lost {t['lost']}, duplicated {t['duplicated']}, run twice {t['run_twice']}, left running "
              f"{t['left_running']}, writes after a lost lease {t.get('late_writes', 0)}, wedged databases "
              f"{t.get('wedged', 0)}, tracebacks {t['tracebacks']}, files from failed commands "
              f"{t['files_from_failed']}, Ray processes left {t['ray_left_behind']}, checks missed "
              f"{t['checks_failed']}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(NAMES), metavar="NAME",
                        help=f"run only this scenario (repeatable): {', '.join(NAMES)}")
    parser.add_argument("--keep", action="store_true", help="keep the scenarios' temp folders (printed)")
    parser.add_argument("--out", help="folder for chaos.json and chaos.md (default scripts/bench/results/, where "
                        "a run with --only writes nothing)")
    args = parser.parse_args(argv)

    machine = machine_facts(sqlite=sqlite3.sqlite_version)
    root = tempfile.mkdtemp(prefix="spinenas-chaos-")
    rows = []
    t_all = time.perf_counter()
    try:
        for index, fn in enumerate(SCENARIOS, start=1):
            name = fn.__name__.replace("_", "-")
            if args.only and name not in args.only:
                continue
            sc = Scenario(root, f"{index:02d}-{name}")
            t0 = time.perf_counter()
            crash = None
            try:
                fn(sc)
            except Exception as e:  # a bench bug or a hung command: the row says so, the next scenario runs
                crash = f"{type(e).__name__}: {e}"
            finally:
                if crash:
                    sc.ray_left_behind(grace=1.0)
                sc.close(keep=args.keep)
            row = _row(index, name, sc, time.perf_counter() - t0, crash)
            rows.append(row)
            verdict = "MISSED" if not row["targets_met"] else "skipped" if row["skipped"] else "ok"
            print(f"{row['scenario']}: {verdict} ({row['seconds']} s) "
                  f"{_happened(row, 60)}", flush=True)
            for c in row["checks_failed"]:
                print(f"    missed: {c['check']}" + (f" (got {_one_line(str(c['got']), 100)})" if "got" in c else ""),
                      flush=True)
            for k in COUNTS:
                if row[k]:
                    print(f"    missed: {k.replace('_', ' ')} {row[k]}"
                          + (f" ({'; '.join(row['files_from_failed_list'])})" if k == "files_from_failed" else ""),
                          flush=True)
            if row["ray_left_behind"]:
                print(f"    missed: Ray processes left behind: {row['ray_left_behind']}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    totals = {k: sum(r[k] for r in rows) for k in COUNTS}
    totals.update(scenarios=len(rows), scenarios_met=sum(r["targets_met"] for r in rows),
                  skipped=sum(bool(r["skipped"]) for r in rows),
                  ray_left_behind=sum(len(r["ray_left_behind"]) for r in rows),
                  checks=sum(len(r["checks"]) for r in rows), checks_failed=sum(len(r["checks_failed"]) for r in rows))
    doc = {
        **provenance(__file__, argv),
        "machine": {**machine, "loadavg_after": list(os.getloadavg())},
        "seconds": round(time.perf_counter() - t_all, 1),
        "targets": "0 lost, duplicated, run twice, left running, writes after a lost lease, wedged databases, "
                   "tracebacks, files from failed commands and Ray "
                   "processes left behind; every scenario's checks pass",
        "totals": totals,
        "targets_met": totals["scenarios_met"] == totals["scenarios"],
        "rows": rows,
    }
    print(_markdown(doc))
    if args.keep:
        print(f"kept: {root}")
    out = args.out or (None if args.only else RESULTS)
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "chaos.json"), "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        with open(os.path.join(out, "chaos.md"), "w") as fh:
            fh.write(_markdown(doc))
    return 0 if doc["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
