"""What the commands that run trials share (`search`, `calibrate`): the database, the log, the runner's backend.

Every check that can fail comes before anything is created: `check_local_runner` before the run folder,
`start_ray_if_needed` before the driver writes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import shutil
import socket
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


def route_to_log(package: str) -> None:
    """Sends a library's log records (Ray sets up its own console handlers on import) to the search's log only."""
    importlib.import_module(package)
    lg = logging.getLogger(package)
    for h in list(lg.handlers):
        lg.removeHandler(h)
    lg.propagate = True


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


def check_local_runner(cfg: Any, args: argparse.Namespace) -> None:
    """The local runner's resources are this machine's: checked before anything is created."""
    if cfg.runner.type != "local":
        return
    s = cfg.search
    cpus = os.cpu_count() or 1
    if s.cpus_per_trial > cpus:
        raise UserError(f"--cpus-per-trial {s.cpus_per_trial:g} is more than this machine's {cpus} CPUs")
    if s.gpus_per_trial:
        raise UserError("the local runner does not hand out GPUs; use the ray runner for --gpus-per-trial")
    if getattr(args, "address", None):
        raise UserError("--address names a Ray cluster; it does not apply to --runner local")
    if s.workers > cpus:
        print(f"warning: --workers {s.workers} on this machine's {cpus} CPUs: the local runner runs every trial "
              "here, so they will share cores and each take longer (their seconds and the cost model's fit with them)",
              file=sys.stderr, flush=True)


def start_ray_if_needed(cfg: Any, args: argparse.Namespace) -> bool:
    """For the ray runner: Ray started here or joined at --address, and the per-trial request checked against it.

    Returns:
      True when this call started a local Ray (the caller shuts it down).
    """
    if cfg.runner.type != "ray":
        return False
    from nas.engine.runners.ray_runner import init_ray, keep_local_on_loopback, other_cluster

    address = getattr(args, "address", None)
    if not address:
        keep_local_on_loopback()  # before the first import of Ray, which route_to_log and other_cluster make
    route_to_log("ray")
    other = None if address else other_cluster()
    try:
        started = init_ray(address, num_cpus=None)
    except Exception as e:  # noqa: BLE001 - Ray's ConnectionError, RuntimeError, ...: one line, not its traceback
        text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        hint = ""
        if address and address != "auto" and not os.environ.get("RAY_AUTH_MODE"):
            # Ray sends its token to an address given explicitly only when told to (`ray start` turns token
            # authentication on by default), and the refusal shows only in its C++ log.
            hint = (" (if that cluster uses token authentication, as `ray start` sets up by default: set "
                    "RAY_AUTH_MODE=token, with its token in RAY_AUTH_TOKEN or ~/.ray/auth_token)")
        raise UserError(f"cannot reach {where}: {text}{hint}") from None
    if other:
        say(f"  another Ray cluster is registered on this machine ({other}); this job started a Ray instance of its "
            "own on 127.0.0.1 and leaves that one alone (--address joins a cluster)")
    import ray

    s = cfg.search
    try:
        res = ray.cluster_resources()
        if s.cpus_per_trial > res.get("CPU", 0):
            raise UserError(f"--cpus-per-trial {s.cpus_per_trial:g} is more than the cluster's "
                            f"{res.get('CPU', 0):g} CPUs")
        if s.gpus_per_trial > res.get("GPU", 0):
            raise UserError(f"--gpus-per-trial {s.gpus_per_trial:g} but the cluster has {res.get('GPU', 0):g} GPUs")
    except BaseException:  # a check failed, or Ctrl-C: a Ray started here stops before the caller knows of it
        if started:
            ray.shutdown()
        raise
    return started


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
    """The frame of a command that runs trials, in the order that loses nothing: the run folder and the log; with
    --address, Ray is joined first (a cluster that cannot be reached is an error before any write); then the job's
    rows (`job.prepare()`: the search or study, so a driver killed from here on leaves one that resumes) and its
    lease; then a local Ray; then the runner (`job.start_runner()`). Stops a Ray it started.

    Args:
      make_job: view -> a `SearchDriver` or `CalibrationStudy` showing on that view. It is built inside the log's
        frame: a PPO controller imports TensorFlow, whose C++ lines must go to the log, not the console.
      intro: the job's header, shown at once (before the controller, Ray and the runner start).

    Yields:
      The job.
    """
    import time

    from nas.engine.lease import LeaseHeldError, LeaseKeeper
    from results_db.errors import DatabaseOpenError, DuplicateSearchError
    from results_db.status import SearchStatus

    made = _outermost_missing(run_dir)  # what to remove again if nothing of the job was written
    view = make_view(args)
    for line in intro:
        view.line(line)
    keeper: Any = None
    leased = prepared = False
    started_ray = False
    os.makedirs(run_dir, exist_ok=True)
    try:
        with search_log(run_dir):
            try:
                job = make_job(view)
                keeper = LeaseKeeper(job.store, job.name, alive=lambda: time.monotonic() - job.last_turn)
                if getattr(args, "address", None):
                    start_ray_if_needed(cfg, args)
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
                if not getattr(args, "address", None):
                    started_ray = start_ray_if_needed(cfg, args)
                job.start_runner()
                signals.reassert()  # a library started here may have replaced our SIGTERM handler
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM while Ray or the runner starts: a search that resumes
                job.store.set_search_status(job.name, SearchStatus.STOPPED)
                job.view.line(f"interrupted while starting: run '{job.RESUME.format(name=job.name)}' to continue")
                raise
            yield job
    finally:
        if leased:
            keeper.stop()
        view.close()
        if started_ray:
            import ray

            ray.shutdown()


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


def check_address(address: str) -> None:
    """A cluster address that no one answers at is a one-line error at once (Ray itself would retry for minutes).

    'auto' (Ray finds the cluster) is left to Ray; 'host:port', 'ray://host:port' and 'http://host:port' are probed
    with a TCP connection.
    """
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address must be 'auto' or HOST:PORT (e.g. 10.0.0.5:6379), got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as e:
        raise UserError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None


def check_machine(cfg: Any, args: argparse.Namespace) -> None:
    """Per-trial resources against this machine, before anything is created, when trials run here (no --address);
    the local runner's other limits too; a cluster's address, that it answers. A trial's GPUs, for every runner."""
    from nas.engine.driver import uses_tensorflow

    s = cfg.search
    if s.gpus_per_trial > 1 and uses_tensorflow(cfg):
        # Ray would hand a trial GPUs it leaves idle.
        raise UserError(f"--gpus-per-trial {s.gpus_per_trial:g}: a trial trains on one GPU (no multi-GPU strategy "
                        "yet); give 1, or a fraction such as 0.5 to run two trials per GPU")
    if cfg.runner.type == "local":
        check_local_runner(cfg, args)
        return
    if getattr(args, "address", None):
        check_address(args.address)
        return  # a cluster's resources are checked once it is joined
    cpus = os.cpu_count() or 1
    if s.cpus_per_trial > cpus:
        raise UserError(f"--cpus-per-trial {s.cpus_per_trial:g} is more than this machine's {cpus} CPUs (a Ray "
                        "cluster with more: --address)")


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
