"""The ``ray`` runner: trials as Ray tasks, with their reports through a channel actor.

A trial runs in a fresh Ray worker process (``max_calls=1``) unless the search reuses workers
(``search.reuse_workers``: up to ``trials_per_worker`` trials per process, `nas.engine.driver.worker_calls`; the trainer
releases TensorFlow's state between them). A trial stopped through the channel returns normally and leaves its
worker warm; a cancelled one (a timeout) kills it. A worker that dies (OOM kill,
segfault, a lost node) is retried by Ray (``worker_retries``); the driver sees one result either way. Plain data
crosses the boundary: the spec and task as dicts, the result as a dict.

Reports: a trial calls ``report(step, metrics)``, which sends them to one small async actor of the search (the
channel, no CPU) and reads back whether the driver asked the trial to stop. The driver keeps one ``take`` call
outstanding on the channel beside the trials' result refs in its `ray.wait`, so a report wakes it as a result does.
The report of a judged step (a scheduler's rung) waits in the channel until the driver has answered it (`judged`,
with its stop decision in the same call), so a trial stopped at a rung trains no step past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nas.engine.runners.base import JUDGE_WAIT_S, Backend, Runner, TrialOutcome, TrialTask, check_cpus_here

logger = logging.getLogger(__name__)

# Ray's switch for its single-node (loopback) mode; see `init_ray`.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# How long one outstanding `take` on the channel waits for reports before it returns empty (and is asked again).
_TAKE_WAIT_S = 30.0


class _Channel:
    """The search's report channel (a Ray async actor): trials put reports, the driver takes them and asks stops."""

    def __init__(self) -> None:
        self._reports: list[tuple[int, int, dict[str, float]]] = []
        self._stops: set[int] = set()
        self._event = asyncio.Event()
        self._answers: dict[tuple[int, int], asyncio.Event] = {}  # (trial, judged step) -> answered

    async def report(self, trial_id: int, step: int, metrics: dict[str, float], judged: bool = False) -> bool:
        answered = self._answers.setdefault((trial_id, step), asyncio.Event()) if judged else None
        self._reports.append((trial_id, step, metrics))
        self._event.set()
        if answered is not None:
            try:
                await asyncio.wait_for(answered.wait(), timeout=JUDGE_WAIT_S)
            except asyncio.TimeoutError:
                pass  # no answer in time: train on
            self._answers.pop((trial_id, step), None)
        return trial_id in self._stops

    async def judged(self, trial_id: int, step: int, stop: bool) -> None:
        if stop:
            self._stops.add(trial_id)
        answered = self._answers.get((trial_id, step))
        if answered is not None:  # None: the trial gave up waiting, or was forgotten
            answered.set()

    async def stop(self, trial_id: int) -> None:
        self._stops.add(trial_id)

    async def forget(self, trial_id: int) -> None:
        self._stops.discard(trial_id)
        for key in [k for k in self._answers if k[0] == trial_id]:
            del self._answers[key]

    async def take(self, wait_s: float) -> list[tuple[int, int, dict[str, float]]]:
        if not self._reports:
            try:
                await asyncio.wait_for(self._event.wait(), timeout=wait_s)
            except asyncio.TimeoutError:
                pass
        out, self._reports = self._reports, []
        self._event.clear()
        return out


def _ray_trial(spec: dict[str, Any], task: dict[str, Any], channel: Any) -> dict[str, Any]:
    """The Ray task of one trial: the shared trial body, reporting through the channel.

    Each report waits for the channel to take it (and answers whether to stop), so when the task returns the
    channel holds every report; the payload says how many there were, so the driver knows when it has them all.
    """
    import ray

    from nas.engine.trial import run_trial_body

    tid = int(task["trial_id"])
    judged = frozenset(int(s) for s in spec.get("judged_steps") or ())
    sent = 0

    def report(step: int, metrics: Mapping[str, float]) -> bool:
        nonlocal sent
        sent += 1
        return bool(ray.get(channel.report.remote(tid, int(step), dict(metrics), int(step) in judged)))

    payload = run_trial_body(spec, task, report)
    payload["reports"] = sent
    return payload


_REMOTE: dict[tuple[int, int], Any] = {}


def remote_trial(trials_per_worker: int, retries: int) -> Any:
    """The Ray remote function of a trial (cached per trials per worker, 0 for no bound, and retry count)."""
    key = (trials_per_worker, retries)
    if key not in _REMOTE:
        import ray

        _REMOTE[key] = ray.remote(max_calls=trials_per_worker, max_retries=retries,
                                  retry_exceptions=False)(_ray_trial)
    return _REMOTE[key]


class RayRunner(Runner):
    """Runs trials as Ray tasks on the Ray this process is connected to (`init_ray`)."""

    def __init__(self, settings: Any, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        import ray

        if not ray.is_initialized():
            raise RuntimeError("the ray runner needs Ray: call nas.engine.runners.ray_runner.init_ray first")
        self._spec = self.spec.to_dict()
        self._channel = ray.remote(num_cpus=0)(_Channel).options(max_concurrency=1000).remote()
        self._take_ref: Any = None
        self._refs: dict[Any, int] = {}  # result ref -> trial id
        self._by_trial: dict[int, Any] = {}
        self._received: dict[int, int] = {}  # trial id -> reports delivered
        self._judged: dict[int, frozenset[int]] = {}  # trial id -> the steps its reports wait at for an answer
        self._stopping: set[int] = set()  # trials asked to stop

    def submit(self, task: TrialTask) -> None:
        options: dict[str, Any] = {"num_cpus": self.cpus}
        if self.gpus:
            options["num_gpus"] = self.gpus
        fn = remote_trial(self.trials_per_worker, self.settings.worker_retries)
        spec = task.spec_dict(self._spec)
        self._judged[task.trial_id] = frozenset(int(s) for s in spec.get("judged_steps") or ())
        ref = fn.options(**options).remote(spec, task.to_dict(), self._channel)
        self._refs[ref] = task.trial_id
        self._by_trial[task.trial_id] = ref

    def poll(self, timeout: float) -> list[TrialOutcome]:
        import ray

        if self._take_ref is None:
            self._take_ref = self._channel.take.remote(_TAKE_WAIT_S)
        ready, rest = ray.wait([*self._refs, self._take_ref], num_returns=1, timeout=timeout)
        if ready and rest:  # take everything that is already there, not just the first
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        if self._take_ref in ready:
            self._take_reports()
        outcomes = []
        for ref in ready:
            if ref not in self._refs:
                continue
            trial_id = self._refs.pop(ref)
            self._by_trial.pop(trial_id, None)
            try:
                payload = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - a worker that died past its retries, a cancelled task
                text = str(e).splitlines()[0] if str(e) else ""
                outcomes.append(TrialOutcome(trial_id, None, error=f"{type(e).__name__}: {text}"[:500]))
            else:
                # The channel has every report the trial made (each waited for it); the outstanding take may still
                # be on its way with the last ones.
                while self._received.get(trial_id, 0) < int(payload.get("reports", 0)):
                    self._take_reports()
                outcomes.append(TrialOutcome(trial_id, payload))
            self._received.pop(trial_id, None)
            self._judged.pop(trial_id, None)
            self._stopping.discard(trial_id)
            self._channel.forget.remote(trial_id)
        return outcomes

    def _take_reports(self) -> None:
        import ray

        if self._take_ref is None:
            self._take_ref = self._channel.take.remote(_TAKE_WAIT_S)
        reports = ray.get(self._take_ref)
        self._take_ref = None
        for trial_id, step, metrics in reports:
            self._received[trial_id] = self._received.get(trial_id, 0) + 1
            self.on_report(trial_id, step, metrics)
            if step in self._judged.get(trial_id, ()):  # answered after on_report, with the stop it asked for
                self._channel.judged.remote(trial_id, step, trial_id in self._stopping)

    def stop(self, trial_id: int) -> None:
        if trial_id in self._by_trial:
            self._stopping.add(trial_id)
            self._channel.stop.remote(trial_id)

    def cancel(self, trial_id: int) -> None:
        import ray

        ref = self._by_trial.pop(trial_id, None)
        if ref is not None:
            self._refs.pop(ref, None)
            ray.cancel(ref, force=True)
            self._channel.forget.remote(trial_id)
            self._received.pop(trial_id, None)
            self._judged.pop(trial_id, None)
            self._stopping.discard(trial_id)

    def close(self) -> None:
        import ray

        for trial_id in list(self._by_trial):
            self.cancel(trial_id)
        try:
            ray.kill(self._channel)
        except Exception:  # noqa: BLE001 - Ray already shut down
            pass

    # ------------------------------------------------------------------------------------------- around a job
    @classmethod
    def check_request(cls, cfg: Any, *, address: str | None = None) -> Sequence[str]:
        """Per-trial CPUs against this machine's when a local Ray will run the trials; with `address`, that the
        cluster answers there (its resources are checked once it is joined, by `RayBackend`)."""
        if address:
            check_address(address)
        else:
            check_cpus_here(cfg, " (a Ray cluster with more: --address)")
        return ()

    @classmethod
    def backend(cls, cfg: Any, *, say: Callable[[str], None], address: str | None = None) -> RayBackend:
        """Ray for the job: a local one on loopback, or the cluster at `address` (`RayBackend`)."""
        return RayBackend(cfg, say=say, address=address)


class RayBackend(Backend):
    """Ray for a job of the ray runner: the cluster at `address` joined (before the job writes anything: one that
    cannot be reached is an error that leaves nothing behind), or a Ray instance of the job's own started on
    loopback (after the job's rows and lease: Ctrl-C while it starts leaves a search that resumes); then the
    per-trial request checked against the cluster's resources. On exit it shuts down a Ray it started; a cluster
    it joined is left running.

    Args:
      cfg: the job's `NasConfig` (``cfg.search``'s per-trial CPUs and GPUs are checked).
      say: shows a line to the user (that another cluster is registered on this machine).
      address: the cluster to join (``--address``: 'auto', HOST:PORT, ray://HOST:PORT), or None for a local Ray.
    """

    def __init__(self, cfg: Any, *, say: Callable[[str], None], address: str | None = None) -> None:
        self.cfg = cfg
        self.say = say
        self.address = address or None
        self.before_writes = bool(address)
        self.started = False  # a local Ray this backend started (and stops)

    def __enter__(self) -> RayBackend:
        from nas.cli.ui import UserError

        address = self.address
        if not address:
            keep_local_on_loopback()  # before the first import of Ray, which route_to_log and other_cluster make
        route_to_log("ray")
        other = None if address else other_cluster()
        try:
            self.started = init_ray(address, num_cpus=None)
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
        s = self.cfg.search
        try:
            import ray

            if other:
                self.say(f"  another Ray cluster is registered on this machine ({other}); this job started a Ray "
                         "instance of its own on 127.0.0.1 and leaves that one alone (--address joins a cluster)")
            res = ray.cluster_resources()
            if s.cpus_per_trial > res.get("CPU", 0):
                raise UserError(f"--cpus-per-trial {s.cpus_per_trial:g} is more than the cluster's "
                                f"{res.get('CPU', 0):g} CPUs")
            if s.gpus_per_trial > res.get("GPU", 0):
                raise UserError(f"--gpus-per-trial {s.gpus_per_trial:g} but the cluster has {res.get('GPU', 0):g} "
                                "GPUs")
        except BaseException:  # a check failed, or Ctrl-C: a Ray started here stops before the caller knows of it
            self._stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.started:
            import ray

            self.started = False
            ray.shutdown()


def check_address(address: str) -> None:
    """A cluster address that no one answers at is a one-line error at once (Ray itself would retry for minutes).

    'auto' (Ray finds the cluster) is left to Ray; 'host:port', 'ray://host:port' and 'http://host:port' are probed
    with a TCP connection.

    Raises:
      nas.cli.ui.UserError: a malformed address, or one nothing answers at.
    """
    from nas.cli.ui import UserError

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


def route_to_log(package: str) -> None:
    """Sends a library's log records (Ray sets up its own console handlers on import) to the search's log only:
    its own handlers go, and its records reach the root logger's (`nas.cli.commands.jobs.search_log`)."""
    importlib.import_module(package)
    lg = logging.getLogger(package)
    for h in list(lg.handlers):
        lg.removeHandler(h)
    lg.propagate = True


def keep_local_on_loopback() -> None:
    """Selects Ray's single-node mode for a local cluster: every server it starts then binds 127.0.0.1 and the node
    registers 127.0.0.1 (in its cluster mode Ray 2.60 listens on every interface and turns a node address of
    127.0.0.1 into the machine's network address). Ray reads the setting when it is first imported, so this runs
    before anything here imports Ray (`route_to_log`, `other_cluster`); Ray's workers inherit it. A value the user
    set is kept. Not for joining a cluster (`--address`), whose nodes must reach this driver."""
    os.environ.setdefault(LOOPBACK_ENV, "0")


def other_cluster() -> str | None:
    """The address of a Ray cluster `ray start` registered on this machine (alive or stale), or None."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    try:
        from ray._private.utils import read_ray_address  # what ray.init() reads when given no address

        return read_ray_address() or None
    except (ImportError, OSError):
        return None


def init_ray(address: str | None, *, num_cpus: float | None = None, log_to_driver: bool = False) -> bool:
    """Connects to a Ray cluster (`address`) or starts a local one on loopback.

    Returns:
      True when this call started a local cluster (the caller shuts it down).
    """
    from nas.engine import signals

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not address:
        keep_local_on_loopback()
    import ray
    from ray._private import ray_constants

    if not address and os.environ.get(LOOPBACK_ENV) == "0" and ray_constants.ENABLE_RAY_CLUSTER:
        logger.warning("Ray was imported before its single-node setting: the local cluster may listen on every "
                       "network interface, not only on 127.0.0.1")

    if ray.is_initialized():
        return False
    if address:
        try:
            ray.init(address=address, log_to_driver=log_to_driver)
        finally:
            signals.reassert()  # ray.init() installs a SIGTERM handler of its own (sys.exit)
        return False
    import psutil  # a dependency of Ray's

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    try:
        # address="local": a new Ray instance of our own, even when another cluster runs on this machine (without
        # it, ray.init() joins the cluster named by RAY_ADDRESS or /tmp/ray/ray_current_cluster, alive or stale).
        ray.init(
            address="local",
            num_cpus=int(num_cpus) if num_cpus else None,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=log_to_driver,
            configure_logging=False,
        )
    except BaseException:  # Ctrl-C, SIGTERM or an error while Ray starts
        signals.reassert()
        stop_started(me, before)
        raise
    signals.reassert()  # ray.init() installs a SIGTERM handler of its own (sys.exit)
    return True


def stop_processes(procs: list[Any], timeout_s: float = 5.0) -> None:
    """Stops these `psutil.Process`es (ours, by PID): SIGTERM, up to `timeout_s` to exit, then SIGKILL for the rest
    and up to `timeout_s` more. One already gone is skipped."""
    import psutil

    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout_s)


def stop_started(me: Any, before: set[int]) -> None:
    """Stops the Ray processes a local start that was cut short left behind: the processes started under `me`
    since `before` (its children's PIDs then), by PID, then Ray's state here. `ray.shutdown()` alone knows only a
    node that finished starting, and the agents a raylet starts outlive it. Ctrl-C and SIGTERM during it are held
    (the start's own exception is on its way up).

    Note: the children are found before the raylet goes; agents already orphaned by a Ctrl-C sent to the whole
    process group are not under `me` any more (they notice their raylet is gone and end in time)."""
    import signal

    import psutil
    import ray

    held: list[int] = []
    try:
        saved = {sig: signal.signal(sig, lambda signum, frame: held.append(signum))
                 for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals stay as they are
        saved = {}
    try:
        seen: set[int] = set()
        for _ in range(2):  # again for what the raylet started while the first round stopped it
            started = [p for p in me.children(recursive=True) if p.pid not in before and p.pid not in seen]
            seen.update(p.pid for p in started)
            stop_processes(started)
        try:
            ray.shutdown()  # Ray's own state in this process; its processes are gone, so nothing to wait for
        except Exception:  # noqa: BLE001 - a half-started node
            logger.debug("ray.shutdown() after a cut-short start", exc_info=True)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
