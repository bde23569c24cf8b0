"""The search job on Ray (the default runner), with the surrogate evaluator: the loop end to end, the same search as
the local runner, a retried worker, timeouts, a cooperative stop, resume after `kill -9` of the driver; and the CLI's
bad input. The driver's logic without Ray is in test_driver.py."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from results_db import ResultStore
from tests.nas.helpers import cfg_of, finished, run_search, spinenas, stop_one_trial, worker_pids

ray_tests = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=4, num_gpus=0, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _ray_cfg(**kw):
    return cfg_of(runner="ray", **kw)


@ray_tests
@pytest.mark.slow
def test_search_end_to_end_on_ray(ray_cluster, tmp_path):
    store, outcome, lines = run_search(tmp_path, _ray_cfg(trials=8, proxy={"eval_at_steps": (100,)}))
    trials = store.trials("s")
    assert outcome.trials == 8 and len(trials) == 8
    assert all(t.status == "completed" for t in trials) and all(t.host for t in trials)
    assert sorted(t.index for t in trials) == list(range(8))
    assert all(0 < t.reward <= 1 and t.metrics["ap"] == t.reward for t in trials)
    curves = store.reports([t.id for t in trials])
    assert all([r.step for r in curves[t.id]] == [50, 100, 150, 200] for t in trials)  # through the channel
    assert store.open_search("s").status == "completed"
    assert any(line.startswith("[8/8]") for line in lines)


@ray_tests
@pytest.mark.slow
def test_asha_prunes_trials_on_ray_through_the_channels_stop(ray_cluster, tmp_path):
    # Trials that take a while (1 s): the stop reaches them through the channel while they run.
    cfg = _ray_cfg(trials=10, workers=2, noise=0.01, duration=1.0, asha={"rungs": (50, 100)})
    store, outcome, _ = run_search(tmp_path, cfg)
    trials = store.trials("s")
    pruned = [t for t in trials if t.status == "pruned"]
    assert outcome.trials == 10 and outcome.pruned == len(pruned) > 0, [t.status for t in trials]
    curves = store.reports([t.id for t in pruned])
    for t in pruned:
        assert t.metrics["rung"] in (50, 100) and t.metrics["rung"] <= t.metrics["stopped_at"] < 200
        assert t.metrics["steps"] == t.metrics["stopped_at"] == max(r.step for r in curves[t.id])
        assert t.reward is not None and t.host


@ray_tests
@pytest.mark.slow
def test_one_worker_on_ray_and_on_the_local_runner_make_the_same_search(ray_cluster, tmp_path):
    def trials(runner, in_process):
        cfg = cfg_of(runner=runner, in_process=in_process, controller="evolution", trials=30, workers=1, seed=11,
                     noise=0.01)
        store, outcome, _ = run_search(tmp_path / f"{runner}-{in_process}", cfg)
        return [(t.index, t.decisions, t.reward, t.status) for t in store.trials("s")]

    on_ray = trials("ray", False)
    assert len(on_ray) == 30
    assert trials("local", True) == on_ray
    assert trials("local", False)[:6] == on_ray[:6]  # child processes: the first trials (spawn costs ~1 s each)


@ray_tests
@pytest.mark.slow
def test_a_dead_worker_is_retried_without_a_second_row(ray_cluster, tmp_path):
    store, outcome, _ = run_search(tmp_path, _ray_cfg(trials=3, workers=1), faults={"crash_once": [1]})
    trials = store.trials("s")
    assert len(trials) == 3 and all(t.status == "completed" for t in trials)
    assert (tmp_path / "runs" / "s" / "faults" / "crashed-1").exists()  # the worker did die once


@ray_tests
@pytest.mark.slow
def test_a_trial_past_its_timeout_is_cancelled_and_failed(ray_cluster, tmp_path):
    # The timeout counts from submit, a fresh Ray worker's start included: 15 s was too short for that with two
    # trainings beside the suite. The hung trial sleeps for days, so the search ending at all is its cancel.
    store, outcome, _ = run_search(tmp_path, _ray_cfg(trials=3, workers=2, trial_timeout_s=30.0),
                                   faults={"hang": [0]})
    by_index = {t.index: t for t in store.trials("s")}
    assert by_index[0].status == "failed" and "timeout" in by_index[0].error
    assert outcome.completed == 2 and outcome.failed == 1


@ray_tests
@pytest.mark.slow
def test_a_cooperative_stop_on_ray_ends_the_trial_at_its_next_report(ray_cluster):
    result, seen, after = stop_one_trial("ray", _ray_cfg(duration=2.0, proxy={"train_steps": 400,
                                                                              "eval_at_steps": (100,)}), stop_at=150)
    assert 150 <= result["stopped_at"] < 400 and seen[-1] == result["stopped_at"]
    assert result["error"] is None and "ap" in result["metrics"]
    assert after["stopped_at"] is None


@ray_tests
@pytest.mark.slow
def test_ray_workers_are_reused_up_to_trials_per_worker_and_a_stop_leaves_one_warm(ray_cluster):
    pids: list[int] = []
    result, _, after = stop_one_trial("ray", _ray_cfg(duration=2.0, proxy={"train_steps": 400}), stop_at=150,
                                      trials_per_worker=2, pids=pids)
    assert result["stopped_at"] is not None and after["stopped_at"] is None
    assert pids[0] == pids[1]  # the stopped trial returned normally: its worker ran the next one
    pids = worker_pids("ray", _ray_cfg(), trials=6, trials_per_worker=2)
    assert max(pids.count(p) for p in pids) <= 2 and len(set(pids)) < 6, pids
    fresh = worker_pids("ray", _ray_cfg(), trials=3, trials_per_worker=1)
    assert len(set(fresh)) == 3, fresh


@ray_tests
@pytest.mark.slow
def test_resume_after_kill_9_of_the_driver(ray_cluster, tmp_path):
    db = str(tmp_path / "r.db")
    args = ["search", "--evaluator", "surrogate", "--controller", "random", "--trials", "10", "--workers", "2",
            "--cpus-per-trial", "1", "--surrogate-duration", "1.5", "--seed", "5", "--db", db, "--address",
            ray_cluster, "--run-dir", str(tmp_path / "runs")]
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", *args, "--name", "k"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.time() + 120
    while finished(db, "k") < 4 and time.time() < deadline:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 4 <= finished(db, "k") < 10
    store = ResultStore(f"sqlite:///{db}")
    before = {t.index: t for t in store.trials("k")}
    store.close()
    running = [i for i, t in before.items() if t.status == "running"]
    assert running, "the driver was killed with trials in flight"

    resumed = spinenas("search", "--resume", "k", "--db", db, "--address", ray_cluster, "--run-dir",
                        str(tmp_path / "runs"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming search 'k'" in resumed.stdout
    store = ResultStore(f"sqlite:///{db}")
    after = {t.index: t for t in store.trials("k")}
    assert len(after) == 10 and all(t.status == "completed" for t in after.values())
    for i, t in before.items():  # no completed trial ran again; the in-flight ones did
        if t.status == "completed":
            assert after[i].finished_at == t.finished_at and after[i].attempt == t.attempt
    assert all(after[i].attempt == before[i].attempt + 1 for i in running)
    # The random controller's proposals are those of an uninterrupted run with the same seed.
    from controller import build_controller
    from search_space import SearchSpace

    ctrl = build_controller("random", SearchSpace("spinenet49"), seed=5)
    expected = [p.decisions for p in ctrl.propose(10)]
    assert [after[i].decisions for i in range(10)] == expected
    assert store.open_search("k").status == "completed"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--controller", "bayes"], "invalid choice: 'bayes'"),
        (["--trials", "0"], "--trials must be at least 1"),
        (["--trials", "-3"], "--trials must be at least 1"),
        (["--set", "search.family=r50"], "unknown family 'r50'"),
        (["--set", "search.checkpoint_interval_s=soon"], "checkpoint_interval_s: expected a number, got 'soon'"),
        (["--resume", "ghost"], "unknown search 'ghost'"),
        (["--db", "/proc/forbidden/r.db"], "cannot"),
        (["--reward", "ap-flops"], "target_flops"),
        (["--set", "controller.ppo.nosuch=1"], "unknown key 'controller.ppo.nosuch'; expected one of"),
        (["--set", "evaluator.type=nosuch"], "unknown evaluator 'nosuch'; expected one of retinanet, surrogate"),
        (["--set", "controller.ppo.reward_for_failure=1"], "unknown key 'controller.ppo.reward_for_failure'"),
        (["--runner", "local", "--address", "auto"], "--address names a Ray cluster"),
        (["--runner", "local", "--cpus-per-trial", "999"], "more than this machine's"),
        (["--inject-faults", '{"explode": [1]}'], "unknown fault 'explode'"),
        (["--cpus-per-trial", "999"], "more than this machine's"),  # a local Ray would have this machine's CPUs
        (["--name", "../escape"], "--name must be letters, digits"),
        (["--name", "a b"], "--name must be letters, digits"),
        (["--resume", "existing", "--db", "typo/x.db"], "no database at"),
        (["--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
        (["--address", "nonsense"], "--address must be 'auto' or HOST:PORT"),
        (["--run-dir", "/proc/x"], "cannot write --run-dir /proc/x: cannot make anything in /proc"),
        (["--run-dir", "r.db/x"], "r.db: Not a directory"),  # under a file
    ],
)
@pytest.mark.slow
def test_bad_input_exits_before_any_trial_and_leaves_the_database(argv, message, tmp_path):
    db = tmp_path / "r.db"
    store = ResultStore(f"sqlite:///{db}")
    store.create_search("existing", config="{}")
    store.close()
    digest = db.read_bytes()
    args = ["search", "--evaluator", "surrogate"] + (["--name", "new"] if "--name" not in argv else [])
    if "--resume" in argv:
        args = ["search"]
    if "--db" not in argv:
        args += ["--db", str(db)]
    proc = spinenas(*args, *argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert db.read_bytes() == digest
    assert not (tmp_path / "runs").exists() and not (tmp_path / "typo").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.db"]  # nothing else was written


@pytest.mark.slow
def test_an_existing_name_is_refused(tmp_path):
    db = tmp_path / "r.db"
    store = ResultStore(f"sqlite:///{db}")
    store.create_search("taken", config="{}")
    store.close()
    proc = spinenas("search", "--evaluator", "surrogate", "--name", "taken", "--db", str(db), cwd=tmp_path)
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "--resume taken" in proc.stderr
    assert json.loads(json.dumps(proc.stderr))  # one printable line


@pytest.mark.slow
def test_a_search_on_the_local_runner_needs_no_ray(tmp_path):
    # `import ray` fails in this driver and its children: the local runner (child processes) must not need it.
    fake = tmp_path / "fake"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('ray must not be imported by --runner local')\n")
    db = tmp_path / "r.db"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), *sys.path]))
    proc = spinenas("search", "--runner", "local", "--evaluator", "surrogate", "--controller", "evolution",
                     "--trials", "30", "--workers", "2", "--cpus-per-trial", "1", "--name", "loc", "--db", str(db),
                     "--set", "proxy.train_steps=100", "--top", "3",
                     cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "on the local runner" in proc.stdout and "[30/30]" in proc.stdout
    assert "ranking fingerprint" in proc.stdout  # the --top listing at the end
    store = ResultStore(f"sqlite:///{db}")
    assert [t.status for t in store.trials("loc")].count("completed") + [
        t.status for t in store.trials("loc")].count("cached") == 30
    assert "type: local" in store.open_search("loc").config


@pytest.mark.tf
@pytest.mark.slow
def test_the_console_shows_no_tensorflow_noise_and_the_log_keeps_it(tmp_path):
    # A new user's shell: no TF_CPP_MIN_LOG_LEVEL. The PPO controller imports TensorFlow in the driver.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    db = tmp_path / "r.db"
    proc = spinenas("search", "--runner", "local", "--set", "runner.local.in_process=true", "--evaluator",
                     "surrogate", "--controller", "ppo", "--trials", "3", "--cpus-per-trial", "1", "--name", "quiet",
                     "--db", str(db), "--set", "proxy.train_steps=100", "--top", "0", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = proc.stdout + proc.stderr
    noise = [ln for ln in console.splitlines()
             if re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ", ln) or "absl" in ln or "oneDNN" in ln
             or "cuda" in ln.lower() or "tensorflow" in ln.lower()]
    assert noise == [], noise
    assert "[3/3]" in proc.stdout
    log = (tmp_path / "runs" / "quiet" / "search.log").read_text()
    assert "oneDNN" in log or "cuda" in log  # TensorFlow's own lines went to the log file


@pytest.mark.tf
@pytest.mark.slow
def test_a_real_search_reuses_nothing_of_a_surrogate_search_in_the_same_database(tmp_path):
    from proxy_task.data import make_synth
    from proxy_task.synth import SynthSpec

    data = make_synth(str(tmp_path / "data"), SynthSpec(images=48, val_images=8, image_size=128))
    db = tmp_path / "r.db"
    common = ["--controller", "random", "--seed", "2", "--trials", "1", "--workers", "1", "--cpus-per-trial", "2",
              "--db", str(db), "--runner", "local", "--top", "3", "--set", "proxy.data.kind=dir", "--set",
              f"proxy.data.path={data.root}", "--set", "proxy.train_steps=4", "--set", "proxy.warmup_steps=1",
              "--set", "proxy.batch_size=4", "--set", "proxy.eval_batch_size=4", "--set", "proxy.log_every=2"]
    surrogate = spinenas("search", "--evaluator", "surrogate", "--name", "sur", *common, cwd=tmp_path)
    assert surrogate.returncode == 0, surrogate.stderr[-2000:]
    real = spinenas("search", "--name", "real", *common, "--trials", "2", cwd=tmp_path)
    assert real.returncode == 0, real.stdout[-2000:] + real.stderr[-2000:]
    store = ResultStore(f"sqlite:///{db}")
    [s], (r, r2) = store.trials("sur"), sorted(store.trials("real"), key=lambda t: t.index)
    assert s.arch_key == r.arch_key  # the same seed proposed the same architecture ...
    assert r.status == "completed" and r.cached_from is None  # ... and the real search trained it
    # Its second trial ran in the same warm worker (`search.trials_per_worker`), and trained as well.
    assert r2.status == "completed" and (r.metrics["worker_trial"], r2.metrics["worker_trial"]) == (1, 2)
    assert store.open_search("real").fingerprint != store.open_search("sur").fingerprint
    # `top` ranks the newest search's fingerprint and says so.
    assert "ranking fingerprint" in real.stdout and "retinanet 128 px 4 steps" in real.stdout
    assert "1 other fingerprint" in real.stdout


@pytest.mark.slow
def test_sigterm_stops_a_search_as_ctrl_c_does_and_it_resumes(tmp_path):
    db = tmp_path / "r.db"
    args = ["search", "--runner", "local", "--evaluator", "surrogate", "--controller", "random", "--trials", "6",
            "--surrogate-duration", "1", "--cpus-per-trial", "1", "--db", str(db), "--top", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", *args, "--name", "t"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.time() + 60
    while finished(str(db), "t") < 2 and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    assert "Traceback" not in err and "interrupted: " in out
    store = ResultStore(f"sqlite:///{db}")
    assert store.open_search("t").status == "stopped"
    store.close()
    resumed = spinenas("search", "--resume", "t", "--db", str(db), "--top", "0", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    store = ResultStore(f"sqlite:///{db}")
    assert sum(t.status == "completed" for t in store.trials("t")) == 6


LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")


def _bound_sockets(procs):
    """(process name, address, port) of every listening TCP socket and every bound UDP socket of `procs`."""
    import psutil

    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            for c in p.net_connections(kind="inet"):
                if c.laddr and (c.status == psutil.CONN_LISTEN or c.type == socket.SOCK_DGRAM):
                    out.append((p.name(), c.laddr.ip, c.laddr.port))
    return out


@pytest.mark.ray
@pytest.mark.slow
def test_sigterm_on_the_ray_runner_stops_the_search_its_cluster_on_loopback_and_it_resumes(tmp_path):
    """What a user runs: the default runner, the environment without the test suite's loopback setting. While it
    runs, every socket of the search's process tree (driver, GCS, raylet, agents, workers) is bound to loopback;
    SIGTERM stops it as Ctrl-C does (exit 143, stopped, Ray's processes gone) and a resume finishes the budget."""
    import shutil
    import tempfile

    import psutil

    db = tmp_path / "r.db"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    env["RAY_TMPDIR"] = ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths
    args = ["search", "--evaluator", "surrogate", "--controller", "random", "--trials", "8", "--workers", "2",
            "--surrogate-duration", "1", "--cpus-per-trial", "1", "--db", str(db), "--top", "0", "--plain"]
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", *args, "--name", "t"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        deadline = time.time() + 120
        while finished(str(db), "t") < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        bound = _bound_sockets(tree)
        assert any(name == "gcs_server" for name, _, _ in bound), bound  # the cluster's servers were seen
        assert [b for b in bound if b[1] not in LOOPBACK] == [], bound
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, out + err
    assert "Traceback" not in err and "interrupted: " in out
    _, alive = psutil.wait_procs([p for p in tree[1:] if p.is_running()], timeout=15)
    try:
        assert alive == [], [p.pid for p in alive]  # Ray's processes ended with the driver
    finally:
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    store = ResultStore(f"sqlite:///{db}")
    assert store.open_search("t").status == "stopped"
    store.close()
    resumed = spinenas("search", "--resume", "t", "--db", str(db), "--runner", "local", "--top", "0", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    store = ResultStore(f"sqlite:///{db}")
    trials = store.trials("t")
    assert sum(t.status == "completed" for t in trials) == 8
    assert sorted(t.index for t in trials) == list(range(len(trials)))  # none stored twice


@pytest.mark.ray
@pytest.mark.slow
def test_a_search_starts_its_own_ray_even_with_a_stale_cluster_registered(tmp_path):
    # `ray start` leaves the address of its cluster in RAY_TMPDIR/ray/ray_current_cluster; a plain ray.init() joins
    # it, or dies on a dead one. A short temp dir keeps Ray's socket paths under the Unix limit.
    import shutil
    import tempfile

    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    try:
        os.makedirs(os.path.join(ray_tmp, "ray"))
        with open(os.path.join(ray_tmp, "ray", "ray_current_cluster"), "w") as fh:
            fh.write("127.0.0.1:1")  # nothing listens there
        db = tmp_path / "r.db"
        proc = spinenas("search", "--evaluator", "surrogate", "--controller", "random", "--trials", "2",
                        "--cpus-per-trial", "1", "--db", str(db), "--name", "own", "--top", "0", cwd=tmp_path,
                        env=dict(os.environ, RAY_TMPDIR=ray_tmp))
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "another Ray cluster is registered on this machine (127.0.0.1:1)" in proc.stdout
        assert "[2/2]" in proc.stdout
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _finished_search(tmp_path, name="done", trials=4):
    store, _, _ = run_search(tmp_path, cfg_of(trials=trials, workers=1), name=name)
    store.close()
    return tmp_path / "r.db"


@pytest.mark.slow
def test_a_damaged_or_empty_database_is_refused_and_left_as_it_was(tmp_path):
    db = _finished_search(tmp_path, trials=30)
    data = bytearray(db.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle:middle + 4096] = bytes((i * 37 + 11) % 256 for i in range(4096))  # 4 KB of garbage mid-file
    db.write_bytes(bytes(data))
    damaged = db.read_bytes()
    proc = spinenas("search", "--resume", "done", "--db", str(db), cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "is damaged" in proc.stderr and "spinenas db check" in proc.stderr
    assert db.read_bytes() == damaged and not (tmp_path / "runs" / "done" / "search.log").exists()
    check = spinenas("db", "check", "--db", str(db), cwd=tmp_path)
    assert check.returncode == 1 and "integrity: DAMAGED" in check.stdout
    assert not any(os.path.exists(f"{db}{suffix}") for suffix in ("-wal", "-shm"))  # not even SQLite's own files
    upgrade = spinenas("db", "upgrade", "--db", str(db), cwd=tmp_path)  # a migration would write into it
    assert upgrade.returncode == 2 and "is damaged" in upgrade.stderr and db.read_bytes() == damaged
    # A file of zeros bytes is not a database a resume may create.
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    proc = spinenas("search", "--resume", "done", "--db", str(empty), cwd=tmp_path)
    assert proc.returncode == 2 and "is an empty file" in proc.stderr and empty.read_bytes() == b""
    # Not a database at all.
    text = tmp_path / "notes.db"
    text.write_text("hello " * 1000)
    proc = spinenas("search", "--evaluator", "surrogate", "--db", str(text), cwd=tmp_path)
    assert proc.returncode == 2 and "not a SQLite database" in proc.stderr
    assert text.read_text() == "hello " * 1000


@pytest.mark.slow
def test_db_check_reports_a_sound_database(tmp_path):
    db = _finished_search(tmp_path)
    proc = spinenas("db", "check", "--db", str(db), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "integrity: ok" in proc.stdout and "searches: 1 (1 search)" in proc.stdout
    assert "trials: 4 (4 completed)" in proc.stdout


@pytest.mark.slow
def test_resuming_a_finished_search_changes_nothing_unless_it_is_extended(tmp_path):
    db = _finished_search(tmp_path)
    store = ResultStore(f"sqlite:///{db}")
    before = store.open_search("done")
    store.close()
    proc = spinenas("search", "--resume", "done", "--db", str(db), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "is complete: 4 of 4 trials finished; nothing to do" in proc.stdout
    store = ResultStore(f"sqlite:///{db}")
    assert store.open_search("done") == before  # its finish time too
    store.close()
    assert not (tmp_path / "runs" / "done" / "search.log").exists()  # no run started
    low = spinenas("search", "--resume", "done", "--trials", "2", "--db", str(db), cwd=tmp_path)
    assert low.returncode == 2 and "--trials 2 is below the 4 trials" in low.stderr
    more = spinenas("search", "--resume", "done", "--trials", "6", "--runner", "local", "--db", str(db), "--top",
                    "0", cwd=tmp_path)
    assert more.returncode == 0, more.stderr[-2000:]
    store = ResultStore(f"sqlite:///{db}")
    assert len(store.trials("done")) == 6


_CUT_SHORT_START = r"""
import json, sys
import psutil
import ray._private.worker as worker
from nas.engine.runners.ray_runner import init_ray

seen = []

def connect(*args, **kwargs):  # Ray's node is up (GCS, raylet, its agents); Ctrl-C lands before the driver connects
    seen.extend(p.pid for p in psutil.Process().children(recursive=True))
    raise KeyboardInterrupt

worker.connect = connect
try:
    init_ray(None, num_cpus=1)
except KeyboardInterrupt:
    pass
alive = [pid for pid in seen if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
print(json.dumps({"started": seen, "alive": alive}))
"""


@pytest.mark.ray
@pytest.mark.slow
def test_ctrl_c_while_ray_starts_leaves_no_ray_process(tmp_path):
    import psutil

    proc = subprocess.run([sys.executable, "-c", _CUT_SHORT_START], capture_output=True, text=True, cwd=tmp_path,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    try:
        assert len(got["started"]) >= 3  # the GCS, the raylet and the raylet's agents were running
        assert got["alive"] == []
    finally:
        for pid in got["alive"]:  # ours: started by that child
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


@pytest.mark.ray
@pytest.mark.slow
def test_ctrl_c_while_ray_starts_leaves_a_stopped_search_that_resumes(tmp_path, monkeypatch, capsys):
    from nas import cli
    from nas.engine.runners import ray_runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ray_runner, "init_ray", interrupted)
    db = tmp_path / "r.db"
    code = cli.main(["search", "--evaluator", "surrogate", "--controller", "random", "--trials", "2",
                     "--cpus-per-trial", "1", "--db", str(db), "--name", "cut", "--top", "0", "--plain"])
    out = capsys.readouterr()
    assert code == 130
    assert "interrupted while starting: run 'spinenas search --resume cut' to continue" in out.out
    store = ResultStore(f"sqlite:///{db}")
    assert store.open_search("cut").status == "stopped"
    store.close()
    monkeypatch.undo()
    resumed = spinenas("search", "--resume", "cut", "--db", str(db), "--top", "0", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "[2/2]" in resumed.stdout


@contextlib.contextmanager
def _foreign_cluster(cpus: int):
    """A cluster as another user's `ray start --head` makes it, on loopback, under a RAY_TMPDIR of its own; stopped by
    the PIDs of its processes (those started with that RAY_TMPDIR), never by `ray stop`.

    Yields:
      (its address, the RAY_TMPDIR under which it registered itself as the machine's current cluster).
    """
    import shutil
    import socket
    import tempfile

    from nas.engine.runners.ray_runner import stop_processes

    import psutil

    ray_tmp = tempfile.mkdtemp(prefix="rf", dir="/tmp")  # short: Ray's socket paths have a length limit
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, RAY_TMPDIR=ray_tmp)
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    try:
        started = subprocess.run([ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                                  f"--num-cpus={cpus}", "--num-gpus=0", "--include-dashboard=false",
                                  "--disable-usage-stats"],
                                 capture_output=True, text=True, env=env, timeout=180)
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        with open(os.path.join(ray_tmp, "ray", "ray_current_cluster")) as fh:
            registered = fh.read().strip()
        assert registered == f"127.0.0.1:{port}", f"the test cluster registered {registered!r}, not loopback"
        yield registered, ray_tmp
    finally:
        ours = []
        mark = f"RAY_TMPDIR={ray_tmp}".encode()
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                # Read raw: Ray's agents retitle themselves ("ray::..."), which psutil's parse of environ misses.
                with open(f"/proc/{p.pid}/environ", "rb") as fh:
                    if mark in fh.read().split(b"\0"):
                        ours.append(p)
        stop_processes(ours, timeout_s=10)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.ray
@pytest.mark.slow
def test_a_live_foreign_cluster_is_left_alone_unless_addressed(tmp_path):
    import socket

    with _foreign_cluster(cpus=1) as (address, ray_tmp):
        env = dict(os.environ, RAY_TMPDIR=ray_tmp)
        db = str(tmp_path / "r.db")
        # Its own Ray: 2 CPUs per trial fit this machine, not the foreign cluster's 1.
        own = spinenas("search", "--evaluator", "surrogate", "--controller", "random", "--trials", "2",
                       "--cpus-per-trial", "2", "--db", db, "--name", "own", "--top", "0", cwd=tmp_path, env=env)
        assert own.returncode == 0, own.stdout[-2000:] + own.stderr[-2000:]
        assert f"another Ray cluster is registered on this machine ({address})" in own.stdout
        assert "[2/2]" in own.stdout
        host, port = address.split(":")
        with socket.create_connection((host, int(port)), timeout=5):  # still up: nothing of ours stopped it
            pass
        # --address joins it (with its token, as Ray wants for an address given explicitly), and its resources are
        # the ones checked.
        refused = spinenas("search", "--evaluator", "surrogate", "--controller", "random", "--trials", "2",
                           "--cpus-per-trial", "1", "--db", db, "--name", "joined", "--address", address, "--top", "0",
                           cwd=tmp_path, env={k: v for k, v in env.items() if k != "RAY_AUTH_MODE"})
        assert refused.returncode == 2 and "set RAY_AUTH_MODE=token" in refused.stderr, refused.stderr[-2000:]
        assert len(refused.stderr.strip().splitlines()) == 1
        env["RAY_AUTH_MODE"] = "token"
        joined = spinenas("search", "--evaluator", "surrogate", "--controller", "random", "--trials", "2",
                          "--cpus-per-trial", "2", "--db", db, "--name", "joined", "--address", address, "--top", "0",
                          cwd=tmp_path, env=env)
        assert joined.returncode == 2 and "more than the cluster's 1 CPUs" in joined.stderr, joined.stderr[-2000:]
        joined = spinenas("search", "--evaluator", "surrogate", "--controller", "random", "--trials", "2",
                          "--cpus-per-trial", "1", "--db", db, "--name", "joined", "--address", address, "--top", "0",
                          cwd=tmp_path, env=env)
        assert joined.returncode == 0, joined.stdout[-2000:] + joined.stderr[-2000:]
        assert "[2/2]" in joined.stdout and "another Ray cluster" not in joined.stdout
        with socket.create_connection((host, int(port)), timeout=5):  # a joined cluster is not ours to stop
            pass


# --------------------------------------------------------------------------------------------------- --max-flops
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-flops", "0"], "--max-flops must be a positive number of multiply-adds per image (e.g. 2e9), got 0"),
        (["--max-flops=-2e9"], "--max-flops must be a positive number of multiply-adds per image"),
        (["--max-flops", "nan"], "--max-flops must be a positive number of multiply-adds per image"),
        (["--max-flops", "inf"], "--max-flops must be a positive number of multiply-adds per image"),
        (["--max-flops", "lots"], "argument --max-flops: invalid float value: 'lots'"),
        (["--set", "search.max_flops=-1"], "max_flops must be 0 (no limit) or a positive number"),
        # Fixed for the life of a search: a resume keeps the stored limit.
        (["--resume", "existing", "--max-flops", "1e9"], "--max-flops cannot change a resumed search"),
    ],
)
def test_a_bad_max_flops_is_one_line_and_creates_nothing(argv, message, tmp_path, monkeypatch, capsys):
    from nas import cli

    db = tmp_path / "r.db"
    store = ResultStore(f"sqlite:///{db}")
    store.create_search("existing", config="{}")
    store.close()
    digest = db.read_bytes()
    monkeypatch.chdir(tmp_path)
    args = ["search", "--db", str(db)] + ([] if "--resume" in argv else ["--evaluator", "surrogate", "--name", "new"])
    try:
        code = cli.main([*args, *argv])
    except SystemExit as e:  # argparse's own errors (the console script prints them on one line too)
        code = e.code
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[-1], lines
    assert db.read_bytes() == digest and sorted(p.name for p in tmp_path.iterdir()) == ["r.db"]


# --------------------------------------------------------------------------------------------------- --scheduler
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--scheduler", "asha", "--rungs", "400,200"], "scheduler.asha.rungs must be increasing steps >= 1"),
        (["--scheduler", "asha", "--rungs", "200,400"],
         "scheduler.asha.rungs: step 400 is not before the last training step (400, always evaluated)"),
        (["--scheduler", "asha", "--rungs", "100,5000"], "step 5000 is not before the last training step"),
        (["--scheduler", "asha", "--rungs", "0,100"], "scheduler.asha.rungs must be increasing steps >= 1"),
        (["--scheduler", "asha", "--rungs", "1.5"], "argument --rungs: expected comma-separated integer steps"),
        (["--scheduler", "asha", "--rungs", "200", "--eta", "1"], "--eta must be an integer >= 2"),
        (["--scheduler", "asha", "--set", "scheduler.asha.rungs=[200]", "--set", "scheduler.asha.eta=1"],
         "scheduler.asha.eta must be an integer >= 2"),
        (["--scheduler", "asha"], "scheduler asha needs rungs"),  # the demo proxy has no eval_at_steps
        (["--rungs", "200"], "--rungs are the steps of a scheduler that judges trials: give --scheduler asha or "
                             "median too"),
        (["--eta", "2"], "--eta is a setting of --scheduler asha"),
        (["--scheduler", "median", "--rungs", "200", "--eta", "2"], "--eta is a setting of --scheduler asha"),
        (["--scheduler", "median", "--rungs", "200", "--set", "scheduler.median.warmup_trials=0"],
         "scheduler.median.warmup_trials must be an integer >= 1"),
        (["--scheduler", "hyperband"], "argument --scheduler: invalid choice: 'hyperband'"),
        (["--scheduler", "fifo"], "argument --scheduler: invalid choice: 'fifo'"),
        # Fixed for the life of a search.
        (["--resume", "existing", "--scheduler", "asha"], "--scheduler cannot change a resumed search"),
        (["--resume", "existing", "--rungs", "100"], "--rungs cannot change a resumed search"),
        (["--resume", "existing", "--eta", "4"], "--eta cannot change a resumed search"),
    ],
)
def test_bad_scheduler_input_is_one_line_and_creates_nothing(argv, message, tmp_path, monkeypatch, capsys):
    test_a_bad_max_flops_is_one_line_and_creates_nothing(argv, message, tmp_path, monkeypatch, capsys)


@pytest.mark.slow
def test_a_cli_asha_search_killed_and_resumed_reruns_no_pruned_trial(tmp_path):
    """`spinenas search --scheduler asha` in child processes, killed with SIGKILL mid-search, then resumed: the pruned
    trials stay as stored (none rerun) and the search finishes its --trials; `searches` and `top` see them."""
    db = str(tmp_path / "r.db")
    common = ["--evaluator", "surrogate", "--runner", "local", "--controller", "random", "--seed", "3",
              "--cpus-per-trial", "1", "--db", db, "--top", "0", "--plain", "--set", "proxy.train_steps=200",
              "--set", "proxy.warmup_steps=10", "--set", "evaluator.surrogate.noise=0.01"]
    driver = subprocess.Popen([sys.executable, "-m", "nas.cli", "search", *common, "--name", "a", "--trials", "16",
                               "--scheduler", "asha", "--rungs", "50,100", "--surrogate-duration", "0.5"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while finished(db, "a") < 7 and time.time() < deadline and driver.poll() is None:
            time.sleep(0.2)
        assert driver.poll() is None, "the search ended before it could be killed"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
    with ResultStore(f"sqlite:///{db}") as store:
        before = {t.id: (t.status, t.reward, t.finish_order) for t in store.trials("a") if t.finish_order}
    assert any(status == "pruned" for status, _, _ in before.values()), before
    resumed = spinenas("search", "--resume", "a", "--db", db, "--top", "0", "--plain", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "pruned" in resumed.stdout.splitlines()[-1]
    with ResultStore(f"sqlite:///{db}") as store:
        after = {t.id: t for t in store.trials("a")}
        assert len(after) == 16 and all(t.status in ("completed", "pruned", "cached") for t in after.values())
        assert {i: (after[i].status, after[i].reward, after[i].finish_order) for i in before} == before
        pruned = sum(t.status == "pruned" for t in after.values())
    listing = spinenas("searches", "--db", db, cwd=tmp_path)
    header, _, row = listing.stdout.splitlines()[:3]
    assert header.split()[4:11] == ["trials", "done", "failed", "cached", "rejected", "pruned", "open"]
    assert row.split()[4] == "16" and row.split()[9] == str(pruned)


@pytest.mark.slow
def test_search_max_flops_rejects_untrained_says_how_many_and_keeps_its_limit_on_resume(tmp_path):
    from controller import build_controller
    from nas.cli.commands.common import load_config
    from proxy_task.data import num_classes_of
    from search_space import SearchSpace

    common = ["--runner", "local", "--set", "runner.local.in_process=true", "--evaluator", "surrogate",
              "--controller", "random", "--seed", "3", "--cpus-per-trial", "1", "--db", str(tmp_path / "r.db"),
              "--top", "3"]
    # The random controller's proposals do not depend on rewards: these are the search's, with their FLOPs.
    cfg = load_config("demo", ["evaluator.type=surrogate", "search.seed=3"])
    space = SearchSpace(cfg.search.family, window=cfg.search.window or None)
    flops = [cfg.proxy.cost(space.decode(p.decisions), num_classes_of(cfg.proxy.data)).flops
             for p in build_controller("random", space, seed=3).propose(14)]
    limit = sorted(flops)[6]  # inclusive: 7 of the first 14 (at least) are accepted
    over10, over14 = sum(f > limit for f in flops[:10]), sum(f > limit for f in flops)
    assert 0 < over10 < 10
    proc = spinenas("search", *common, "--trials", "10", "--name", "lim", "--max-flops", f"{limit!r}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"max FLOPs {limit:.4g} (multiply-adds per image at {cfg.proxy.image_size} px)" in proc.stdout
    assert (f"search 'lim' finished: 10 trials ({10 - over10} completed, 0 failed, 0 cached, {over10} rejected "
            "over max FLOPs)") in proc.stdout
    assert "REJECTED untrained" in proc.stdout
    listing = spinenas("searches", "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    header, _, row = listing.stdout.splitlines()[:3]
    assert header.split()[4:11] == ["trials", "done", "failed", "cached", "rejected", "pruned", "open"]
    assert row.split()[4:11] == ["10", str(10 - over10), "0", "0", str(over10), "0", "0"]
    refused = spinenas("search", "--resume", "lim", "--max-flops", "1e12", "--db", str(tmp_path / "r.db"),
                       cwd=tmp_path)
    assert refused.returncode == 2 and "--max-flops cannot change a resumed search" in refused.stderr
    # A longer budget on resume: the stored limit still applies to the new proposals.
    more = spinenas("search", "--resume", "lim", "--trials", "14", "--runner", "local", "--db",
                    str(tmp_path / "r.db"), "--top", "0", cwd=tmp_path)
    assert more.returncode == 0, more.stdout[-2000:] + more.stderr[-2000:]
    assert f"{over14} rejected over max FLOPs" in more.stdout
    with ResultStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        trials = store.trials("lim")
        assert [t.status == "rejected" for t in trials] == [f > limit for f in flops]
        assert all(t.arch_key not in {r.arch_key for r in store.top(k=50)} for t in trials if t.status == "rejected")
    report = spinenas("report", "--search", "lim", "--out", str(tmp_path / "rep"), "--db", str(tmp_path / "r.db"),
                      cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "<th>cached</th><th>rejected</th>" in page and f"<td class=num>0</td><td class=num>{over14}</td>" in page
