"""What the commands that run trials share (`search`, `calibrate`): the database, the log, the runner's backend.

Every check that can fail comes before anything is created: `check_machine` (the runner's own check of the per-trial
request, `nas.engine.runners.check_request`) before the run folder, the runner's backend (`Backend`: Ray, for the
ray runner) before the driver writes when it joins a cluster. What is runner-specific lives in the runner's module
(`nas.engine.runners`); nothing here knows which runner it is.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from nas.engine import signals
from nas.cli.ui import UserError, error_text


def open_store(db: str | None, *, create: bool = True) -> tuple[Any, str]:
    """The results database for writing, or a one-line UserError (its folder made when missing, if `create`).

    Args:
      create: a new database may be made (False for a resume: the database must be there, as it is).
    """
    from results_db import ResultStore
    from results_db.url import resolve_url, sqlite_path

    try:
        url = resolve_url(db, persistent=True)  # results in memory would vanish with the command
    except ValueError as e:
        raise UserError(str(e)) from None
    path = sqlite_path(url)
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if not create and not os.path.exists(path):
            raise UserError(f"no database at {path}: nothing to resume there (give the search's --db, or set "
                            "$SPINENAS_DB)")
        if not os.path.isdir(folder):
            try:
                os.makedirs(folder)
            except OSError as e:
                raise UserError(f"cannot create the database folder {folder}: {e.strerror}") from None
        if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
            raise UserError(f"cannot write the database {path}: permission denied")
    from results_db.errors import DatabaseNotFoundError, DatabaseOpenError

    try:
        return ResultStore(url, create=create), url
    except (DatabaseNotFoundError, DatabaseOpenError) as e:
        raise UserError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - any open failure is the user's database problem: one line
        raise UserError(f"cannot open the database {url}: {str(e).splitlines()[0]}") from None


# Loggers whose records reach the console during a search; everything else (TensorFlow, absl, Ray, warnings) goes
# to the search's log file only.
_CONSOLE_LOGGERS = ("nas", "results_db", "controller", "search_space", "proxy_task")


class _OurRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".")[0] in _CONSOLE_LOGGERS


@contextlib.contextmanager
def search_log(run_dir: str) -> Iterator[str]:
    """The search's log file: our INFO lines, and every other library's output, TensorFlow's C++ logs included.

    File descriptor 2 is pointed at the log for the run (TensorFlow, XLA and absl write there from C++, and the
    processes Ray and the runners start inherit it); Python's `sys.stderr` keeps the terminal, so the search's
    own messages and errors still show.
    """
    path = os.path.join(run_dir, "search.log")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    logging.getLogger("nas").setLevel(logging.INFO)
    logging.captureWarnings(True)
    console = [h for h in root.handlers if h is not handler]
    quiet = _OurRecords()
    for h in console:
        h.addFilter(quiet)
    saved_stderr = sys.stderr
    saved_fd = None
    try:
        sys.stderr.flush()
        saved_fd = os.dup(2)
        log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        sys.stderr = os.fdopen(os.dup(saved_fd), "w", buffering=1)
        for h in console:
            if isinstance(h, logging.StreamHandler) and h.stream is saved_stderr:
                h.setStream(sys.stderr)
    except OSError:  # no file descriptor 2 to move (an embedding host): keep the output where it is
        saved_fd = None
    try:
        yield path
    finally:
        if saved_fd is not None:
            for h in console:
                if isinstance(h, logging.StreamHandler) and h.stream is sys.stderr:
                    h.setStream(saved_stderr)
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            sys.stderr.close()
            sys.stderr = saved_stderr
        for h in console:
            h.removeFilter(quiet)
        logging.captureWarnings(False)
        root.removeHandler(handler)
        handler.close()


def ensure_data(cfg: Any) -> Any:
    """The proxy's dataset (`DatasetInfo`), made when it is the synthetic one and missing (progress on stderr), or a
    UserError; None, and nothing made, when the config's evaluator reads no dataset (its registration's
    ``needs_data``)."""
    from proxy_task.data import DataError, ensure_dataset
    from proxy_task.evaluator import needs_data

    if not needs_data(cfg.evaluator.type):
        return None
    try:
        return ensure_dataset(cfg.proxy.data, progress=lambda m: print(m, file=sys.stderr, flush=True))
    except DataError as e:
        raise UserError(str(e)) from None


def _outermost_missing(path: str) -> str | None:
    """The outermost folder of `path` that does not exist yet (`runs/` when neither runs/ nor runs/NAME does), or
    None when `path` exists."""
    path, missing = os.path.abspath(path), None
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path, missing = os.path.dirname(path), path
    return missing


@contextlib.contextmanager
def trial_job(cfg: Any, args: argparse.Namespace, run_dir: str, make_job: Any,
              intro: Sequence[str] = ()) -> Iterator[Any]:
    """The frame of a command that runs trials, in the order that loses nothing: the run folder and the log; the
    runner's backend (`nas.engine.runners.Backend`) when it enters before any write (the ray runner's with
    --address: a cluster that cannot be reached is an error before any write); then the job's rows
    (`job.prepare()`: the search or study, so a driver killed from here on leaves one that resumes) and its lease;
    then the runner's backend otherwise (a local Ray: Ctrl-C while it starts leaves a job that resumes); then the
    runner (`job.start_runner()`). The backend is exited last: it stops only what it started.

    Args:
      make_job: view -> a `SearchDriver` or `CalibrationStudy` showing on that view. It is built inside the log's
        frame: a PPO controller imports TensorFlow, whose C++ lines must go to the log, not the console.
      intro: the job's header, shown at once (before the controller, the backend and the runner start).

    Yields:
      The job.
    """
    import time

    from nas.engine.lease import LeaseHeldError, LeaseKeeper
    from nas.engine.runners import build_backend
    from results_db.errors import DatabaseOpenError, DuplicateSearchError
    from results_db.status import SearchStatus

    backend = build_backend(cfg, say=say, address=getattr(args, "address", None))  # starts nothing yet
    made = _outermost_missing(run_dir)  # what to remove again if nothing of the job was written
    view = make_view(args)
    for line in intro:
        view.line(line)
    keeper: Any = None
    leased = prepared = False
    backends = contextlib.ExitStack()  # the backend once entered: exited after the rest
    os.makedirs(run_dir, exist_ok=True)
    try:
        with search_log(run_dir):
            try:
                job = make_job(view)
                keeper = LeaseKeeper(job.store, job.name, alive=lambda: time.monotonic() - job.last_turn)
                if backend.before_writes:
                    backends.enter_context(backend)
                if job.resume:  # one driver per search: the lease before anything of the search changes
                    note = keeper.take()
                    leased = True
                    _hold(job, keeper)
                    job.prepare()
                else:
                    job.prepare()
                    prepared = True
                    note = keeper.take()
                    leased = True
                    _hold(job, keeper)
            except (UserError, LeaseHeldError, DuplicateSearchError, DatabaseOpenError, KeyboardInterrupt) as e:
                # Nothing of this job was written: leave no folder behind, unless another driver of the same
                # search (which holds its lease or won its name) may be writing into it. A database that failed
                # under the command (a full disk, a write lock held past the busy timeout) keeps its exit code 1.
                theirs = isinstance(e, (LeaseHeldError, DuplicateSearchError))
                if made and not leased and not prepared and not theirs:
                    shutil.rmtree(made, ignore_errors=True)
                if isinstance(e, (KeyboardInterrupt, DatabaseOpenError)):
                    raise
                raise UserError(error_text(e)) from None
            job.lease = keeper
            if note:
                job.view.line(f"  {note}")
            try:
                if not backend.before_writes:
                    backends.enter_context(backend)
                job.start_runner()
                signals.reassert()  # a library started here may have replaced our SIGTERM handler
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM while the backend or the runner starts: a job that resumes
                job.store.set_search_status(job.name, SearchStatus.STOPPED)
                job.view.line(f"interrupted while starting: run '{job.RESUME.format(name=job.name)}' to continue")
                raise
            yield job
    finally:
        if leased:
            keeper.stop()
        view.close()
        backends.close()


def _hold(job: Any, keeper: Any) -> None:
    """The lease just taken: every write of the job's store is fenced by it from now on, and the heartbeat runs."""
    import time

    job.store.fence(job.name, keeper.owner)
    job.last_turn = time.monotonic()
    keeper.start()


def make_view(args: argparse.Namespace) -> Any:
    """The console view: live lines on a terminal (unless --plain), plain lines otherwise."""
    from nas.cli.console import LiveView, PlainView

    return LiveView() if sys.stdout.isatty() and not getattr(args, "plain", False) else PlainView(say)


#: New search and study names: one path segment of safe characters (they name a folder under runs/).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_new_name(name: str) -> None:
    """A new search's name, checked (names stored by earlier versions still resume)."""
    if not NAME_PATTERN.match(name):
        raise UserError(f"--name must be letters, digits, '.', '_' or '-' (at most 128, not starting with '.', "
                        f"'_' or '-'; it names a folder under runs/), got {name!r}")


def run_dir_of(args: argparse.Namespace, name: str) -> str:
    """The job's run folder (--run-dir, else runs/NAME), checked to be one it can make or write in before anything
    is created."""
    from nas.cli.commands.common import check_output_path

    run_dir = os.path.abspath(getattr(args, "run_dir", None) or os.path.join("runs", name))
    check_output_path(run_dir, "--run-dir" if getattr(args, "run_dir", None) else "the run folder", directory=True,
                      parents=True)
    return run_dir


def check_machine(cfg: Any, args: argparse.Namespace) -> None:
    """The job's per-trial request, before anything is created: a trial's GPUs, for every runner; then the runner's
    own check against the machine or cluster its trials run on (`nas.engine.runners.check_request`: this machine's
    CPUs for the local runner and a local Ray, that a cluster at --address answers), its warnings on stderr."""
    from nas.engine.driver import uses_tensorflow
    from nas.engine.runners import check_request
    from search_space.registry import PluginError

    s = cfg.search
    if s.gpus_per_trial > 1 and uses_tensorflow(cfg):
        # Ray would hand a trial GPUs it leaves idle.
        raise UserError(f"--gpus-per-trial {s.gpus_per_trial:g}: a trial trains on one GPU (no multi-GPU strategy "
                        "yet); give 1, or a fraction such as 0.5 to run two trials per GPU")
    try:
        warnings = check_request(cfg, address=getattr(args, "address", None))
    except (LookupError, PluginError) as e:  # a runner whose module cannot be imported: one line, before any write
        raise UserError(error_text(e)) from None
    for text in warnings:
        print(f"warning: {text}", file=sys.stderr, flush=True)


def say(msg: str) -> None:
    """A line on stdout, flushed (progress must show when stdout is a pipe)."""
    print(msg, flush=True)


class LazyChoices:
    """An argparse `choices` read from a registry when first needed: building the parser imports no registry
    (the controller registry loads numpy, which `spinenas top` must not). Give the argument a `metavar`:
    argparse lists the choices in the usage line otherwise, when the parser is built."""

    def __init__(self, module: str, function: str) -> None:
        self._where = (module, function)
        self._names: tuple[str, ...] | None = None

    def _get(self) -> tuple[str, ...]:
        if self._names is None:
            module, function = self._where
            self._names = tuple(getattr(importlib.import_module(module), function)())
        return self._names

    def __contains__(self, item: object) -> bool:
        return item in self._get()

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())
