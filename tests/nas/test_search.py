"""The search job on a local Ray cluster, with the surrogate evaluator: the loop, dedup, failures, a retried
worker, timeouts, resume after `kill -9` of the driver, and bad input."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from nas.config import NasConfig, SearchConfig
from nas.loop import SearchDriver
from results_db import ResultStore

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=4, num_gpus=0, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _cfg(**search) -> NasConfig:
    base = dict(evaluator="surrogate", controller="random", trials=8, workers=2, cpus_per_trial=1.0,
                surrogate_duration_s=0.0, seed=3)
    base.update(search)
    return NasConfig(search=SearchConfig(**base))


def _run(tmp_path, cfg, name="s", resume=False, faults=None, db=None):
    store = ResultStore(db or f"sqlite:///{tmp_path / 'r.db'}")
    lines = []
    driver = SearchDriver(cfg, name=name, store=store, run_dir=str(tmp_path / "runs" / name), resume=resume,
                          faults=faults, out=lines.append)
    driver.start()
    outcome = driver.run()
    return store, outcome, lines


def test_search_end_to_end(ray_cluster, tmp_path):
    store, outcome, lines = _run(tmp_path, _cfg(trials=8))
    trials = store.trials("s")
    assert outcome.trials == 8 and len(trials) == 8
    assert all(t.status == "completed" for t in trials)
    assert sorted(t.index for t in trials) == list(range(8))
    assert all(0 < t.reward <= 1 and t.metrics["ap"] == t.reward for t in trials)
    assert all(t.host for t in trials)
    assert outcome.best_reward == max(t.reward for t in trials)
    assert store.open_search("s").status == "completed"
    assert store.load_checkpoint("s") is not None  # checkpointed after updates
    assert os.listdir(tmp_path / "runs" / "s" / "tensorboard")
    assert any(line.startswith("[8/8]") for line in lines)


def _scalar_tags(logdir) -> dict[str, list[float]]:
    # The legacy loader keeps simple_value (the other one migrates it into a tensor).
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    tags: dict[str, list[float]] = {}
    for name in os.listdir(logdir):
        for event in LegacyEventFileLoader(os.path.join(logdir, name)).Load():
            for v in event.summary.value:
                tags.setdefault(v.tag, []).append(v.simple_value)
    return tags


def test_ppo_search_writes_every_tensorboard_scalar(ray_cluster, tmp_path):
    # 12 trials: one PPO update (batch 10), so the policy's entropy is written too.
    store, outcome, _ = _run(tmp_path, _cfg(controller="ppo", trials=12, workers=2))
    assert outcome.trials == 12
    tags = _scalar_tags(tmp_path / "runs" / "s" / "tensorboard")
    assert len(tags["search/reward"]) == 12 and len(tags["search/trial_seconds"]) >= 1
    assert sorted(tags["search/reward"]) == pytest.approx(sorted(t.reward for t in store.trials("s")), rel=1e-6)
    assert tags["search/best_reward"] == sorted(tags["search/best_reward"])
    assert len(tags["controller/policy_entropy"]) == 1 and tags["controller/policy_entropy"][0] > 0
    assert store.load_checkpoint("s") is not None


def test_checkpoints_follow_updates_at_most_once_per_interval_and_at_the_end(ray_cluster, tmp_path):
    # The random controller updates on every feedback: interval 0 stores all 6, a long interval only the last.
    store, every, _ = _run(tmp_path, _cfg(trials=6, workers=1, checkpoint_interval_s=0.0), name="every")
    assert every.checkpoints == 6
    store.close()
    store, held, _ = _run(tmp_path, _cfg(trials=6, workers=1, checkpoint_interval_s=3600.0), name="held")
    assert held.checkpoints == 1
    ckpt = store.load_checkpoint("held")
    assert ckpt.step == 6 and ckpt.state["feedbacks"] == 6


def test_ctrl_c_inside_a_feedback_stores_no_checkpoint_and_the_resume_finishes_the_same_search(ray_cluster, tmp_path):
    # Ctrl-C may land inside controller.feedback(): the controller has the reward, the driver has not counted it. A
    # checkpoint then would hold a state that does not match its feedback count, so none is stored; the resume
    # replays the stored trials instead.
    def cfg():
        return _cfg(trials=8, workers=1, seed=7, checkpoint_interval_s=3600.0)

    ref, _, _ = _run(tmp_path, cfg(), name="ref", db=f"sqlite:///{tmp_path / 'ref.db'}")
    expected = {t.index: t.decisions for t in ref.trials("ref")}
    ref.close()

    db = f"sqlite:///{tmp_path / 'r.db'}"
    store = ResultStore(db)
    driver = SearchDriver(cfg(), name="s", store=store, run_dir=str(tmp_path / "runs" / "s"), out=lambda _: None)
    driver.start()
    feedback, calls = driver.controller.feedback, []

    def interrupted_inside(*args, **kwargs):
        feedback(*args, **kwargs)
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt

    driver.controller.feedback = interrupted_inside
    outcome = driver.run()
    assert outcome.interrupted and outcome.checkpoints == 0
    assert store.load_checkpoint("s") is None
    assert store.open_search("s").status == "stopped"
    assert sum(t.status == "completed" for t in store.trials("s")) == 5
    store.close()

    store, outcome, lines = _run(tmp_path, cfg(), db=db, resume=True)
    assert any("controller from the history, 5 trials replayed" in line for line in lines), lines
    assert outcome.trials == 8 and outcome.completed == 8
    assert {t.index: t.decisions for t in store.trials("s")} == expected
    assert store.load_checkpoint("s").state["feedbacks"] == 8


def _ppo_cfg() -> NasConfig:
    return _cfg(controller="ppo", trials=24, workers=1, reuse_workers=True, checkpoint_interval_s=0.0)


@pytest.fixture(scope="module")
def ppo_reference(ray_cluster, tmp_path_factory):
    """An uninterrupted PPO search of 24 trials: its decisions and its final controller state."""
    tmp = tmp_path_factory.mktemp("ppo-ref")
    store, _, _ = _run(tmp, _ppo_cfg(), name="ref")
    out = {t.index: t.decisions for t in store.trials("ref")}, store.load_checkpoint("ref").state
    store.close()
    return out


@pytest.mark.tf
@pytest.mark.parametrize("where", ["feedback", "propose"])
def test_ctrl_c_inside_the_ppo_controller_resumes_from_its_stored_checkpoint_exactly(ray_cluster, tmp_path,
                                                                                     ppo_reference, where):
    # Ctrl-C lands after the controller took the 15th reward (or made the 15th proposal) and before the driver
    # recorded it. The checkpoint of update 1 (10 feedbacks) stays the last; the resume replays from it and must
    # go on as the uninterrupted search did.
    expected, expected_state = ppo_reference
    db = f"sqlite:///{tmp_path / 'r.db'}"
    store = ResultStore(db)
    driver = SearchDriver(_ppo_cfg(), name="s", store=store, run_dir=str(tmp_path / "runs" / "s"),
                          out=lambda _: None)
    driver.start()
    original, calls = getattr(driver.controller, where), []

    def interrupted_inside(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 15:
            raise KeyboardInterrupt
        return out

    setattr(driver.controller, where, interrupted_inside)
    assert driver.run().interrupted
    ckpt = store.load_checkpoint("s")
    assert ckpt.step == 1 and ckpt.state["feedbacks"] == 10
    store.close()

    store, outcome, _ = _run(tmp_path, _ppo_cfg(), db=db, resume=True)
    assert outcome.trials == 24
    assert {t.index: t.decisions for t in store.trials("s")} == expected
    state = store.load_checkpoint("s").state
    assert state["feedbacks"] == 24
    assert state["controller"]["algorithm"] == expected_state["controller"]["algorithm"]


class _DriverCrash(Exception):
    pass


@pytest.mark.tf
def test_ppo_resume_replays_the_updates_its_checkpoint_lacks_bit_exactly(ray_cluster, tmp_path):
    # Checkpoints may lag updates (checkpoint_interval_s); a resume must still rebuild the very same policy.
    def cfg(trials):
        return _cfg(controller="ppo", trials=trials, workers=1, reuse_workers=True, checkpoint_interval_s=3600.0)

    ref, _, _ = _run(tmp_path, cfg(25), name="ref", db=f"sqlite:///{tmp_path / 'ref.db'}")
    expected = {t.index: t.decisions for t in ref.trials("ref")}
    expected_state = ref.load_checkpoint("ref").state
    ref.close()

    db = f"sqlite:///{tmp_path / 'r.db'}"
    store, _, _ = _run(tmp_path, cfg(13), db=db)  # one update (at 10), stored at the end with 13 feedbacks
    store.close()
    # Continued to 25 trials, the driver dies while recording the 23rd: its update at 20 was never stored.
    store = ResultStore(db)
    driver = SearchDriver(cfg(25), name="s", store=store, run_dir=str(tmp_path / "runs" / "s"), resume=True,
                          out=lambda _: None)
    finish, calls = store.finish_trial, []

    def crash_at_the_tenth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 10:
            raise _DriverCrash
        return finish(*args, **kwargs)

    store.finish_trial = crash_at_the_tenth
    driver.start()
    with pytest.raises(_DriverCrash):
        driver.run()
    store.close()
    store = ResultStore(db)
    assert store.load_checkpoint("s").state["feedbacks"] == 13
    assert sum(t.status == "completed" for t in store.trials("s")) == 22
    store.close()

    store, outcome, lines = _run(tmp_path, cfg(25), db=db, resume=True)
    assert any("its update 1 checkpoint, 9 trials replayed" in line for line in lines), lines
    assert outcome.trials == 25 and outcome.completed == 25
    assert {t.index: t.decisions for t in store.trials("s")} == expected
    state = store.load_checkpoint("s").state
    assert state["feedbacks"] == expected_state["feedbacks"] == 25
    assert state["controller"]["algorithm"] == expected_state["controller"]["algorithm"]  # weights, Adam, baseline


def test_known_architectures_are_not_trained_again(ray_cluster, tmp_path):
    store, _, _ = _run(tmp_path, _cfg(trials=5), name="first")
    first = {t.arch_key: t for t in store.trials("first")}
    store.close()
    # The same controller and seed propose the same architectures: every one already has a result.
    store, outcome, lines = _run(tmp_path, _cfg(trials=5), name="second")
    second = store.trials("second")
    assert outcome.cached == 5
    assert all(t.status == "cached" and t.reward == first[t.arch_key].reward for t in second)
    assert all(t.cached_from == first[t.arch_key].id for t in second)
    assert any("cached" in line for line in lines)


def test_failed_trials_are_data(ray_cluster, tmp_path):
    faults = {"raise": [1], "nan": [2]}
    store, outcome, _ = _run(tmp_path, _cfg(trials=5, workers=1), faults=faults)
    by_index = {t.index: t for t in store.trials("s")}
    assert by_index[1].status == "failed" and "injected failure" in by_index[1].error
    assert by_index[2].status == "failed" and by_index[2].reward is None
    assert outcome.failed == 2 and outcome.completed == 3


def test_a_dead_worker_is_retried_without_a_second_row(ray_cluster, tmp_path):
    store, outcome, _ = _run(tmp_path, _cfg(trials=3, workers=1), faults={"crash_once": [1]})
    trials = store.trials("s")
    assert len(trials) == 3 and all(t.status == "completed" for t in trials)
    assert (tmp_path / "runs" / "s" / "faults" / "crashed-1").exists()  # the worker did die once


def test_a_trial_past_its_timeout_is_cancelled_and_failed(ray_cluster, tmp_path):
    start = time.time()
    store, outcome, _ = _run(tmp_path, _cfg(trials=3, workers=2, trial_timeout_s=4.0), faults={"hang": [0]})
    by_index = {t.index: t for t in store.trials("s")}
    assert by_index[0].status == "failed" and "timeout" in by_index[0].error
    assert outcome.completed == 2 and time.time() - start < 60


def _finished(db: str, name: str) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        n = con.execute("select count(*) from trials t join searches s on s.id = t.search_id where s.name = ? and "
                        "t.status in ('completed', 'failed', 'cached')", (name,)).fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return 0


def _spinenas(*argv, **kw):
    return subprocess.run([sys.executable, "-m", "nas.cli", *argv], capture_output=True, text=True, **kw)


def test_resume_after_kill_9_of_the_driver(ray_cluster, tmp_path):
    db = str(tmp_path / "r.db")
    args = ["search", "--evaluator", "surrogate", "--controller", "random", "--trials", "10", "--workers", "2",
            "--cpus-per-trial", "1", "--surrogate-duration", "1.5", "--seed", "5", "--db", db, "--address",
            ray_cluster, "--run-dir", str(tmp_path / "runs")]
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", *args, "--name", "k"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.time() + 120
    while _finished(db, "k") < 4 and time.time() < deadline:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 4 <= _finished(db, "k") < 10
    store = ResultStore(f"sqlite:///{db}")
    before = {t.index: t for t in store.trials("k")}
    store.close()
    running = [i for i, t in before.items() if t.status == "running"]
    assert running, "the driver was killed with trials in flight"

    resumed = _spinenas("search", "--resume", "k", "--db", db, "--address", ray_cluster, "--run-dir",
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
    ],
)
def test_bad_input_exits_before_any_trial_and_leaves_the_database(argv, message, tmp_path):
    db = tmp_path / "r.db"
    store = ResultStore(f"sqlite:///{db}")
    store.create_search("existing", config="{}")
    store.close()
    digest = db.read_bytes()
    args = ["search", "--evaluator", "surrogate", "--name", "new"] if "--resume" not in argv else ["search"]
    if "--db" not in argv:
        args += ["--db", str(db)]
    proc = _spinenas(*args, *argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert db.read_bytes() == digest
    assert not (tmp_path / "runs").exists()


def test_an_existing_name_is_refused(tmp_path):
    db = tmp_path / "r.db"
    store = ResultStore(f"sqlite:///{db}")
    store.create_search("taken", config="{}")
    store.close()
    proc = _spinenas("search", "--evaluator", "surrogate", "--name", "taken", "--db", str(db), cwd=tmp_path)
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "--resume taken" in proc.stderr
    assert json.loads(json.dumps(proc.stderr))  # one printable line
