"""What every benchmark records beside its figures: the command, the commit, the date and the machine (stdlib only).

The scripts import it as ``scripts.bench.common`` once they have put the repository root on ``sys.path`` (as they
do to import the project), so it works both when a script is run and when a test loads one from its file.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# Every TensorFlow process of the benchmarks runs under `flock LOCK`, so no two time each other's CPU.
LOCK = "/tmp/spinenas-cpu.lock"


def commit() -> dict[str, Any]:
    """HEAD, and whether tracked code differs from it (the results files aside).

    Without git (a copy of the tree, no repository) the commit is ``$SPINENAS_BENCH_COMMIT`` (None if unset) and
    the dirty flag None.
    """
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 ":!scripts/bench/results"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"commit": os.environ.get("SPINENAS_BENCH_COMMIT"), "commit_dirty": None}
    return {"commit": head.stdout.strip(), "commit_dirty": bool(status.stdout.strip())}


def provenance(script: str, argv: list[str] | None) -> dict[str, Any]:
    """The head of a results record: ``command`` (as run from the root), ``commit``, ``commit_dirty``, ``date_utc``.

    Args:
      script: the benchmark's ``__file__``.
      argv: its arguments as `main` got them (None: ``sys.argv[1:]``).
    """
    args = sys.argv[1:] if argv is None else argv
    return {
        "command": "python " + " ".join([os.path.relpath(script, ROOT), *args]),
        **commit(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def sqlite_backup(src: str, dst: str) -> None:
    """A consistent copy of the SQLite database `src` at `dst` (SQLite's backup API: safe while a search writes it)."""
    with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as source, sqlite3.connect(dst) as target:
        source.backup(target)


def live_database(live: str, snapshot: str) -> int:
    """Readies a long measurement's live database: the committed `snapshot` copied in when `live` is missing (so
    another checkout continues where the snapshot left it), then `live` upgraded to this tree's schema (a no-op when
    it is current). Returns `spinenas db upgrade`'s exit code (0 also when there is no database yet)."""
    os.makedirs(os.path.dirname(live), exist_ok=True)
    if not os.path.exists(live) and os.path.exists(snapshot):
        shutil.copyfile(snapshot, live)
        print(f"continuing from the snapshot {os.path.relpath(snapshot, ROOT)}", flush=True)
    if not os.path.exists(live):
        return 0
    return subprocess.run([sys.executable, "-m", "nas.cli", "db", "upgrade", "--db", live], cwd=ROOT).returncode


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('' where there is none)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    return ""


def versions(*dists: str) -> dict[str, str]:
    """The installed versions of those of `dists` (distribution names) that are installed."""
    out = {}
    for dist in dists:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def machine(**extra: Any) -> dict[str, Any]:
    """Facts about the machine the figures come from, before the run: host, platform, cpu, cpus, loadavg_before,
    python, then `extra` (e.g. the versions of the libraries measured)."""
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "loadavg_before": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        **extra,
    }
