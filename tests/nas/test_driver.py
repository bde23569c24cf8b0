"""The search driver without Ray: the loop, dedup by key and fingerprint, failures, checkpoints, Ctrl-C, resume and
learning curves, through the local runner (in the driver's process, and in child processes)."""

from __future__ import annotations

import dataclasses
import os
import re

import pytest

from nas.config.schema import NasConfig
from nas.engine.driver import SearchDriver
from results_db import ResultStore
from tests.nas.helpers import cfg_of, run_search, stop_one_trial, worker_pids


def test_search_end_to_end_stores_every_trial_and_its_curve(tmp_path):
    cfg = cfg_of(trials=8, proxy={"eval_at_steps": (100,)})
    store, outcome, lines = run_search(tmp_path, cfg)
    trials = store.trials("s")
    assert outcome.trials == 8 and len(trials) == 8
    assert all(t.status == "completed" for t in trials)
    assert sorted(t.index for t in trials) == list(range(8))
    assert all(0 < t.reward <= 1 and t.metrics["ap"] == t.reward for t in trials)
    assert outcome.best_reward == max(t.reward for t in trials)
    assert store.open_search("s").status == "completed"
    assert store.load_checkpoint("s") is not None
    curves = store.reports([t.id for t in trials])
    for t in trials:
        steps = [r.step for r in curves[t.id]]
        assert steps == [50, 100, 150, 200], steps
        by_step = {r.step: r.metrics for r in curves[t.id]}
        assert {"loss", "learning_rate", "images_per_s"} <= set(by_step[50])
        assert "ap" in by_step[100] and by_step[200]["ap"] == pytest.approx(t.metrics["ap"])
    # TensorBoard: the search's scalars and one curve per trial.
    tb = tmp_path / "runs" / "s" / "tensorboard"
    assert len(os.listdir(tb / "trials")) == 8
    assert any(line.startswith("[8/8]") for line in lines)
    # Every trial carries the search's fingerprint.
    assert {t.fingerprint for t in trials} == {store.open_search("s").fingerprint} != {None}


def test_known_architectures_are_reused_only_within_a_fingerprint(tmp_path):
    store, _, _ = run_search(tmp_path, cfg_of(trials=5), name="first")
    first = {t.arch_key: t for t in store.trials("first")}
    store.close()
    # The same controller and seed propose the same architectures: each has a result with this fingerprint.
    store, outcome, lines = run_search(tmp_path, cfg_of(trials=5), name="second")
    second = store.trials("second")
    assert outcome.cached == 5
    assert all(t.status == "cached" and t.reward == first[t.arch_key].reward for t in second)
    assert all(t.cached_from == first[t.arch_key].id for t in second)
    assert any("cached" in line for line in lines)
    store.close()
    # Another proxy schedule scores differently: nothing of the first two searches is reused.
    store, outcome, _ = run_search(tmp_path, cfg_of(trials=5, proxy={"train_steps": 400}), name="third")
    assert outcome.cached == 0 and outcome.completed == 5
    assert store.open_search("third").fingerprint != store.open_search("first").fingerprint


def test_failed_trials_are_data(tmp_path):
    store, outcome, _ = run_search(tmp_path, cfg_of(trials=5, workers=1), faults={"raise": [1], "nan": [2]})
    by_index = {t.index: t for t in store.trials("s")}
    assert by_index[1].status == "failed" and "injected failure" in by_index[1].error
    assert by_index[2].status == "failed" and by_index[2].reward is None
    assert outcome.failed == 2 and outcome.completed == 3


def test_the_in_process_runner_refuses_faults_that_would_end_the_driver(tmp_path):
    with pytest.raises(ValueError, match="cannot inject crash_once"):
        run_search(tmp_path, cfg_of(trials=2), faults={"crash_once": [0]})


def test_checkpoints_follow_updates_at_most_once_per_interval_and_at_the_end(tmp_path):
    # The random controller updates on every feedback: interval 0 stores all 6, a long interval only the last.
    store, every, _ = run_search(tmp_path, cfg_of(trials=6, workers=1, checkpoint_interval_s=0.0), name="every")
    assert every.checkpoints == 6
    store.close()
    store, held, _ = run_search(tmp_path, cfg_of(trials=6, workers=1, checkpoint_interval_s=3600.0), name="held")
    assert held.checkpoints == 1
    ckpt = store.load_checkpoint("held")
    assert ckpt.step == 6 and ckpt.state["feedbacks"] == 6


def test_ctrl_c_inside_a_feedback_stores_no_checkpoint_and_the_resume_finishes_the_same_search(tmp_path):
    # Ctrl-C may land inside controller.feedback(): the controller has the reward, the driver has not counted it. A
    # checkpoint then would hold a state that does not match its feedback count, so none is stored; the resume
    # replays the stored trials instead.
    def cfg():
        return cfg_of(trials=8, workers=1, seed=7, checkpoint_interval_s=3600.0)

    ref, _, _ = run_search(tmp_path, cfg(), name="ref", db=f"sqlite:///{tmp_path / 'ref.db'}")
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

    store, outcome, lines = run_search(tmp_path, cfg(), db=db, resume=True)
    assert any("controller from the history, 5 trials replayed" in line for line in lines), lines
    assert outcome.trials == 8 and outcome.completed == 8
    assert {t.index: t.decisions for t in store.trials("s")} == expected
    assert store.load_checkpoint("s").state["feedbacks"] == 8


def test_a_resume_runs_its_requeued_trials_workers_at_a_time_dedups_them_and_finishes_them_past_a_lowered_budget(
        tmp_path, monkeypatch):
    import sqlite3

    db = tmp_path / "r.db"
    store = ResultStore(f"sqlite:///{db}")
    driver = SearchDriver(cfg_of(trials=12, workers=3), name="s", store=store, run_dir=str(tmp_path / "runs" / "s"),
                          out=lambda _: None)
    driver.start()
    feedback, calls = driver.controller.feedback, []

    def crash_after_four(*args, **kwargs):
        feedback(*args, **kwargs)
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt

    driver.controller.feedback = crash_after_four
    assert driver.run().interrupted
    store.close()
    con = sqlite3.connect(db)
    open_ids = [r[0] for r in con.execute("select id from trials where status in ('running', 'queued') order by id")]
    assert len(open_ids) >= 2, open_ids  # in flight when the driver died (the in-process runner runs one per poll)
    # Two of them the same architecture (one waiting on the other when the driver died, as the driver queues them).
    con.execute("update trials set arch_key = (select arch_key from trials where id = ?) where id = ?",
                (open_ids[0], open_ids[1]))
    con.commit()
    con.close()

    most = []
    submit = SearchDriver._submit

    def counting(self, item, **kwargs):
        most.append(len(self.inflight) + 1)
        submit(self, item, **kwargs)

    monkeypatch.setattr(SearchDriver, "_submit", counting)
    # --trials 5 is below the 4 finished + the re-queued: the re-queued ones still finish, one at a time.
    store, outcome, _ = run_search(tmp_path, cfg_of(trials=5, workers=1), resume=True)
    trials = {t.id: t for t in store.trials("s")}
    assert not any(t.status in ("running", "queued") for t in trials.values())
    assert outcome.trials == 4 + len(open_ids) and max(most) == 1
    assert trials[open_ids[1]].status == "cached" and trials[open_ids[1]].cached_from == open_ids[0]
    assert all(trials[i].status == "completed" for i in [open_ids[0], *open_ids[2:]])


def _ppo_cfg(trials=24, interval=0.0) -> NasConfig:
    """PPO updating every 10 rewards (the counts below are of that batch, whatever PPOConfig's default)."""
    from nas.config.schema import ControllerSection

    cfg = cfg_of(controller="ppo", trials=trials, workers=1, checkpoint_interval_s=interval)
    return dataclasses.replace(cfg, controller=ControllerSection.of("ppo", batch_size=10))


@pytest.fixture(scope="module")
def ppo_reference(tmp_path_factory):
    """An uninterrupted PPO search of 24 trials: its decisions and its final controller state."""
    tmp = tmp_path_factory.mktemp("ppo-ref")
    store, _, _ = run_search(tmp, _ppo_cfg(), name="ref")
    out = {t.index: t.decisions for t in store.trials("ref")}, store.load_checkpoint("ref").state
    store.close()
    return out


def _scalar_tags(logdir) -> dict[str, list[float]]:
    # The legacy loader keeps simple_value (the other one migrates it into a tensor).
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    tags: dict[str, list[float]] = {}
    for name in os.listdir(logdir):
        if os.path.isdir(os.path.join(logdir, name)):
            continue
        for event in LegacyEventFileLoader(os.path.join(logdir, name)).Load():
            for v in event.summary.value:
                tags.setdefault(v.tag, []).append(v.simple_value)
    return tags


@pytest.mark.tf
@pytest.mark.slow
def test_ppo_search_writes_every_tensorboard_scalar_and_each_trials_curve(tmp_path):
    # 12 trials: one PPO update (batch 10), so the policy's entropy is written too.
    store, outcome, _ = run_search(tmp_path, dataclasses.replace(_ppo_cfg(12), search=cfg_of(trials=12).search))
    assert outcome.trials == 12
    tb = tmp_path / "runs" / "s" / "tensorboard"
    tags = _scalar_tags(tb)
    assert len(tags["search/reward"]) == 12 and len(tags["search/trial_seconds"]) >= 1
    assert sorted(tags["search/reward"]) == pytest.approx(sorted(t.reward for t in store.trials("s")), rel=1e-6)
    assert tags["search/best_reward"] == sorted(tags["search/best_reward"])
    assert len(tags["controller/policy_entropy"]) == 1 and tags["controller/policy_entropy"][0] > 0
    first = sorted(os.listdir(tb / "trials"))[0]
    curve = _scalar_tags(tb / "trials" / first)
    assert len(curve["curve/loss"]) == 4 and len(curve["curve/ap"]) == 1


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("where", ["feedback", "propose"])
def test_ctrl_c_inside_the_ppo_controller_resumes_from_its_stored_checkpoint_exactly(tmp_path, ppo_reference, where):
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

    store, outcome, _ = run_search(tmp_path, _ppo_cfg(), db=db, resume=True)
    assert outcome.trials == 24
    assert {t.index: t.decisions for t in store.trials("s")} == expected
    state = store.load_checkpoint("s").state
    assert state["feedbacks"] == 24
    assert state["controller"]["algorithm"] == expected_state["controller"]["algorithm"]


class _DriverCrash(Exception):
    pass


@pytest.mark.tf
@pytest.mark.slow
def test_ppo_resume_replays_the_updates_its_checkpoint_lacks_bit_exactly(tmp_path):
    # Checkpoints may lag updates (checkpoint_interval_s); a resume must still rebuild the very same policy.
    ref, _, _ = run_search(tmp_path, _ppo_cfg(25, 3600.0), name="ref", db=f"sqlite:///{tmp_path / 'ref.db'}")
    expected = {t.index: t.decisions for t in ref.trials("ref")}
    expected_state = ref.load_checkpoint("ref").state
    ref.close()

    db = f"sqlite:///{tmp_path / 'r.db'}"
    store, _, _ = run_search(tmp_path, _ppo_cfg(13, 3600.0), db=db)  # one update (at 10), stored at the end
    store.close()
    # Continued to 25 trials, the driver dies while recording the 23rd: its update at 20 was never stored.
    store = ResultStore(db)
    driver = SearchDriver(_ppo_cfg(25, 3600.0), name="s", store=store, run_dir=str(tmp_path / "runs" / "s"),
                          resume=True, out=lambda _: None)
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

    store, outcome, lines = run_search(tmp_path, _ppo_cfg(25, 3600.0), db=db, resume=True)
    assert any("its update 1 checkpoint, 9 trials replayed" in line for line in lines), lines
    assert outcome.trials == 25 and outcome.completed == 25
    assert {t.index: t.decisions for t in store.trials("s")} == expected
    state = store.load_checkpoint("s").state
    assert state["feedbacks"] == expected_state["feedbacks"] == 25
    assert state["controller"]["algorithm"] == expected_state["controller"]["algorithm"]  # weights, Adam, baseline


@pytest.mark.tf
@pytest.mark.slow
def test_a_controller_setting_reaches_the_controller_and_is_stored(tmp_path):
    from nas.config.codec import from_yaml, resolve

    cfg = resolve(NasConfig, cfg_of(controller="ppo", trials=2, workers=1), ["controller.ppo.learning_rate=0.001"])
    store, outcome, _ = run_search(tmp_path, cfg)
    assert outcome.trials == 2
    stored = from_yaml(NasConfig, store.open_search("s").config)
    assert stored.controller.type == "ppo" and stored.controller.get().learning_rate == 0.001
    assert store.load_checkpoint("s").state["controller"]["config"]["learning_rate"] == 0.001


# ----------------------------------------------------------------------------------------------- child processes
@pytest.mark.slow
def test_child_processes_run_trials_retry_a_dead_one_and_kill_one_past_its_timeout(tmp_path):
    # Child processes: trial 1 kills its process once (retried, then completes); trial 2 hangs until its timeout.
    cfg = cfg_of(trials=4, workers=2, in_process=False, trial_timeout_s=20.0)
    store, outcome, _ = run_search(tmp_path, cfg, faults={"crash_once": [1], "hang": [2]})
    by_index = {t.index: t for t in store.trials("s")}
    assert by_index[1].status == "completed"
    assert (tmp_path / "runs" / "s" / "faults" / "crashed-1").exists()  # its process did die once
    assert by_index[2].status == "failed" and "timeout" in by_index[2].error
    assert outcome.completed == 3 and outcome.failed == 1
    assert store.reports([by_index[0].id])[by_index[0].id]  # reports came back over the pipe


@pytest.mark.slow
@pytest.mark.parametrize("in_process", [True, False])
def test_a_cooperative_stop_ends_a_trial_at_its_next_report_with_what_it_has(in_process):
    # 8 s of simulated training: time enough for the stop to reach a child on a busy machine.
    cfg = cfg_of(in_process=in_process, duration=2.0 if in_process else 8.0,
                 proxy={"train_steps": 400, "eval_at_steps": (100,)})
    result, seen, after = stop_one_trial("local", cfg, stop_at=150)
    # In the driver's process the stop is read at once; a child reads it at its first report after the request
    # reaches it (200, or later on a loaded machine), and ends there.
    assert result["stopped_at"] is not None and seen[-1] == result["stopped_at"], (result, seen)
    assert result["stopped_at"] == 150 if in_process else 150 < result["stopped_at"] < 400
    assert result["error"] is None and result["metrics"]["steps"] == result["stopped_at"]
    assert "ap" in result["metrics"]  # the AP of its step-100 evaluation
    assert after["stopped_at"] is None  # the runner goes on with the next trial


@pytest.mark.slow
def test_a_stopped_trial_leaves_its_child_process_warm_for_the_next():
    cfg = cfg_of(in_process=False, duration=8.0, proxy={"train_steps": 400})
    pids: list[int] = []
    result, _, after = stop_one_trial("local", cfg, stop_at=150, trials_per_worker=2, pids=pids)
    assert result["stopped_at"] is not None and after["stopped_at"] is None
    assert pids[0] == pids[1]


@pytest.mark.slow
@pytest.mark.parametrize("bound, expected", [(1, [0, 1, 2, 3, 4]), (2, [0, 0, 1, 1, 2]), (0, [0, 0, 0, 0, 0])])
def test_child_processes_run_at_most_trials_per_worker_trials_each(bound, expected):
    pids = worker_pids("local", cfg_of(in_process=False), trials=5, trials_per_worker=bound)
    order = list(dict.fromkeys(pids))
    assert [order.index(p) for p in pids] == expected, pids


def test_workers_are_warm_on_cpu_bounded_for_tensorflow_and_fresh_for_gpu_trials():
    from nas.config.schema import EvaluatorSection
    from nas.engine.driver import worker_calls

    def calls(evaluator="surrogate", **search):
        cfg = cfg_of(in_process=False, **search)
        if evaluator != "surrogate":
            cfg = dataclasses.replace(cfg, evaluator=EvaluatorSection(type=evaluator))
        return worker_calls(cfg)

    assert calls(reuse_workers=False) == 1  # a fresh process per trial
    assert calls() == 0  # warm by default; TF-free trials: no bound
    # TensorFlow trials: up to 10 in one process by default (measured: peak RSS within 10% of a fresh process's),
    # as asked otherwise.
    assert calls("retinanet", reuse_workers=True) == 10 and calls("retinanet", reuse_workers=True,
                                                                  trials_per_worker=3) == 3
    assert calls("retinanet", reuse_workers=True, gpus_per_trial=1.0) == 1
    assert calls(reuse_workers=True, gpus_per_trial=1.0) == 0
    with pytest.raises(ValueError, match="trials_per_worker must be an integer >= 0"):
        cfg_of(trials_per_worker=-1)


@pytest.mark.slow
def test_show_and_report_give_the_curves_of_a_search(tmp_path, capsys):
    import json
    import re

    from nas import cli

    store, _, _ = run_search(tmp_path, cfg_of(trials=4, proxy={"eval_at_steps": (100,)}))
    key = store.trials("s")[0].arch_key
    store.close()
    db = str(tmp_path / "r.db")
    assert cli.main(["show", key, "--db", db, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    curve = shown["trials"][0]["curve"]
    assert [p["step"] for p in curve] == [50, 100, 150, 200] and "ap" in curve[1] and "loss" in curve[0]
    assert cli.main(["show", key, "--db", db]) == 0
    assert "curve of trial 0 of search s (4 reports)" in capsys.readouterr().out
    assert cli.main(["report", "--search", "s", "--db", db, "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Learning curves of the top architectures" in page
    assert 'alt="training loss and AP against proxy steps"' in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 7  # the curves plot beside the six of every report


# --------------------------------------------------------------------------------------------------- max_flops
def _flops(cfg: NasConfig, decisions) -> int:
    """What the driver counts for a proposal: the proxy's FLOPs of its architecture (`ProxyConfig.cost`)."""
    from proxy_task.data import num_classes_of
    from search_space import SearchSpace

    arch = SearchSpace(cfg.search.family, window=cfg.search.window or None).decode(decisions)
    return cfg.proxy.cost(arch, num_classes_of(cfg.proxy.data)).flops


def _probe(tmp_path, cfg: NasConfig, name: str = "probe"):
    """The proposals of an unlimited run of `cfg` (its own database), their FLOPs, and a limit between them."""
    store, _, _ = run_search(tmp_path, cfg, name=name, db=f"sqlite:///{tmp_path / (name + '.db')}")
    proposed = [t.decisions for t in store.trials(name)]
    store.close()
    flops = [_flops(cfg, d) for d in proposed]
    values = sorted(set(flops))
    assert len(values) >= 2
    return proposed, flops, (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2


def _limited(cfg: NasConfig, limit: float) -> NasConfig:
    return dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, max_flops=limit))


@pytest.fixture
def evaluated(monkeypatch):
    """Keys of the architectures the surrogate evaluator scores (the in-process runner runs it in this process)."""
    from proxy_task.surrogate import SurrogateTrialEvaluator

    keys: list[str] = []
    evaluate = SurrogateTrialEvaluator.evaluate

    def counting(self, arch, **kwargs):
        keys.append(arch.key)
        return evaluate(self, arch, **kwargs)

    monkeypatch.setattr(SurrogateTrialEvaluator, "evaluate", counting)
    return keys


def test_proposals_over_max_flops_are_rejected_untrained_fed_back_as_failures_and_count_toward_the_budget(
        tmp_path, evaluated):
    proposed, flops, limit = _probe(tmp_path, cfg_of(trials=12, workers=2))
    over = {i for i, f in enumerate(flops) if f > limit}
    assert 0 < len(over) < 12
    evaluated.clear()
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    lines: list[str] = []
    driver = SearchDriver(_limited(cfg_of(trials=12, workers=2), limit), name="s", store=store,
                          run_dir=str(tmp_path / "runs" / "s"), out=lines.append)
    driver.start()
    fed: dict[int, float | None] = {}
    feedback = driver.controller.feedback

    def recording(trial_id, reward):
        fed[trial_id] = reward
        feedback(trial_id, reward)

    driver.controller.feedback = recording
    outcome = driver.run()
    trials = store.trials("s")
    assert [t.decisions for t in trials] == proposed  # the random controller ignores rewards: the probe's proposals
    assert {t.index for t in trials if t.status == "rejected"} == over
    assert all(t.status == "completed" for t in trials if t.index not in over)
    assert (outcome.trials, outcome.rejected, outcome.completed) == (12, len(over), 12 - len(over))
    # Never sent to the runner: the evaluator scored exactly the accepted ones.
    assert sorted(evaluated) == sorted(t.arch_key for t in trials if t.status == "completed")
    for t in trials:
        if t.status != "rejected":
            continue
        assert t.reward is None and t.wall_s == 0.0 and t.attempt == 0 and "max_flops" in t.error
        assert t.metrics == {"flops": flops[t.index], "params": t.metrics["params"], "max_flops": limit}
        arch = store.get_arch(t.arch_key)
        assert (arch.flops, arch.params) == (flops[t.index], t.metrics["params"])
    # The controller got each rejection as a failed trial: reward None, turned into reward_for_failure (0.0).
    assert {i for i, r in fed.items() if r is None} == over and len(fed) == 12
    state = driver.controller.state_dict()
    assert state["num_failures"] == len(over) and state["num_rewards"] == 12
    assert any("REJECTED untrained" in line for line in lines)
    assert f"rejected {len(over)} running 0" in lines[-1]
    # `top` ranks the trained architectures only; `searches` counts the rejected ones.
    assert {r.arch_key for r in store.top(k=50)} == {t.arch_key for t in trials if t.status == "completed"}
    assert store.search_summaries()[0].counts == {"completed": 12 - len(over), "rejected": len(over)}


def test_an_architecture_proposed_again_is_rejected_again_without_counting_it_again(tmp_path, evaluated,
                                                                                     monkeypatch):
    import sys

    import numpy as np

    from proxy_task.config import ProxyConfig
    from search_space import SearchSpace

    base = cfg_of(trials=5, workers=1)
    decisions = SearchSpace(base.search.family, window=base.search.window).random(np.random.default_rng(0))
    flops = _flops(base, decisions)
    counted = []
    cost = ProxyConfig.cost

    def counting(self, arch, num_classes):
        if sys._getframe(1).f_code.co_name == "_detector_cost":  # the driver's (the surrogate counts its own)
            counted.append(arch.key)
        return cost(self, arch, num_classes)

    monkeypatch.setattr(ProxyConfig, "cost", counting)
    for name, limit, statuses in (("over", flops - 1, ["rejected"] * 5),
                                  ("at", flops, ["completed"] + ["cached"] * 4)):  # a limit is inclusive
        counted.clear()
        store = ResultStore(f"sqlite:///{tmp_path / (name + '.db')}")
        driver = SearchDriver(_limited(base, limit), name=name, store=store, run_dir=str(tmp_path / "runs" / name),
                              out=lambda _: None)
        driver.start()
        driver.controller._propose = lambda n: [(decisions, {}) for _ in range(n)]  # the same proposal every time
        assert driver.run().trials == 5
        assert [t.status for t in store.trials(name)] == statuses
        if name == "over":
            assert len(counted) == 1 and evaluated == []
        else:
            assert len(counted) == 5 and len(evaluated) == 1  # counted each time, trained once, then cached
        store.close()


def test_a_resume_replays_rejected_trials_as_failures_and_rejects_again_one_a_crash_left_queued(tmp_path, evaluated):
    import sqlite3

    from nas.config.schema import ControllerSection

    def cfg(limit: float = 0.0) -> NasConfig:
        # Evolution with a small population: after 4 trials its proposals depend on every reward it got, the
        # rejections' reward_for_failure included, so a resume that replayed them otherwise would propose otherwise.
        c = dataclasses.replace(cfg_of(trials=14, workers=1, seed=11, checkpoint_interval_s=3600.0),
                                controller=ControllerSection.of("evolution", population_size=4, tournament_size=2))
        return _limited(c, limit)

    _, _, limit = _probe(tmp_path, cfg())
    ref, _, _ = run_search(tmp_path, cfg(limit), name="ref", db=f"sqlite:///{tmp_path / 'ref.db'}")
    expected = [(t.decisions, t.status) for t in ref.trials("ref")]
    ref.close()
    rejected = [i for i, (_, status) in enumerate(expected) if status == "rejected"]
    assert rejected and rejected[-1] > 5, expected

    db = tmp_path / "r.db"
    store = ResultStore(f"sqlite:///{db}")
    driver = SearchDriver(cfg(limit), name="s", store=store, run_dir=str(tmp_path / "runs" / "s"), out=lambda _: None)
    driver.start()
    feedback, calls = driver.controller.feedback, []

    def interrupted_after_a_rejection(trial_id, reward):
        feedback(trial_id, reward)
        calls.append(reward)
        if len(calls) > 5 and reward is None:
            raise KeyboardInterrupt

    driver.controller.feedback = interrupted_after_a_rejection
    assert driver.run().interrupted
    store.close()
    # A driver that died between storing that rejected proposal and rejecting it left it queued.
    con = sqlite3.connect(db)
    [(last, status)] = con.execute("select id, status from trials order by finish_order desc limit 1").fetchall()
    assert status == "rejected"
    con.execute("update trials set status = 'queued', finish_order = null, finished_at = null, error = null, "
                "metrics = null, wall_s = null where id = ?", (last,))
    con.commit()
    con.close()
    done = len(calls) - 1
    evaluated.clear()

    store, outcome, lines = run_search(tmp_path, cfg(limit), db=f"sqlite:///{db}", resume=True)
    assert any(f"resuming search 's': {done} trials done, 1 to run again; controller from the history, {done} "
               "trials replayed" in line for line in lines), lines
    trials = store.trials("s")
    assert [(t.decisions, t.status) for t in trials] == expected
    assert store.get_trial(last).status == "rejected" and store.get_trial(last).arch_key not in evaluated
    assert sorted(evaluated) == sorted(t.arch_key for t in trials if t.status == "completed" and t.index > done)
    assert outcome.trials == 14 and outcome.rejected == len(rejected)


def test_max_flops_keeps_the_fingerprint_so_results_are_shared_but_a_rejection_is_never_reused(tmp_path, evaluated):
    proposed, flops, limit = _probe(tmp_path, cfg_of(trials=8))
    over = {i for i, f in enumerate(flops) if f > limit}
    db = f"sqlite:///{tmp_path / 'r.db'}"
    store, _, _ = run_search(tmp_path, _limited(cfg_of(trials=8), limit), name="limited", db=db)
    assert {t.index for t in store.trials("limited") if t.status == "rejected"} == over
    store.close()
    # The same search without a limit: the trained archs come from the store, the rejected ones are trained now.
    evaluated.clear()
    store, outcome, _ = run_search(tmp_path, cfg_of(trials=8), name="free", db=db)
    assert store.open_search("free").fingerprint == store.open_search("limited").fingerprint
    free = store.trials("free")
    assert {t.index for t in free if t.status == "completed"} == over and outcome.cached == 8 - len(over)
    assert sorted(evaluated) == sorted(free[i].arch_key for i in over)
    store.close()
    # With the limit again: what is under it is cached, what is over it rejected, though it has a result now.
    evaluated.clear()
    store, outcome, _ = run_search(tmp_path, _limited(cfg_of(trials=8), limit), name="again", db=db)
    assert {t.index for t in store.trials("again") if t.status == "rejected"} == over
    assert outcome.cached == 8 - len(over) and evaluated == []


# --------------------------------------------------------------------------------------------------- asha
def _asha_cfg(**kw) -> NasConfig:
    """A surrogate search whose architectures' curves differ (rate_spread), judged at steps 50 and 100 of 200."""
    kw.setdefault("trials", 24)
    kw.setdefault("workers", 1)
    kw.setdefault("asha", {"rungs": (50, 100), "eta": 3})
    kw.setdefault("noise", 0.01)
    return cfg_of(**kw)


def _replay_asha(cfg: NasConfig, store, name: str):
    """What ASHA and the reward rule should have done, recomputed from the stored curves in finish order (one trial
    at a time): (trial, expected continue-at-every-rung, expected reward) per trained trial."""
    from nas.config.schema import scheduler_rungs
    from nas.engine.schedulers import pruned_reward
    from nas.engine.schedulers.asha import AshaScheduler

    asha = cfg.scheduler.get()
    s = AshaScheduler(rungs=scheduler_rungs(cfg), eta=asha.eta, min_results=asha.min_results or asha.eta)
    trials = sorted((t for t in store.trials(name) if t.status in ("completed", "pruned")),
                    key=lambda t: t.finish_order)
    curves = store.reports([t.id for t in trials])
    finals, out = [], []
    for t in trials:
        aps = {r.step: r.metrics["ap"] for r in curves[t.id] if r.step in s.rungs and r.metrics.get("ap") is not None}
        kept, reward = True, t.metrics.get("ap")
        for rung in s.rungs:
            if rung not in aps:
                break
            if not s.on_result(t.id, rung, aps[rung]):
                kept, reward = False, pruned_reward(aps[rung], s.rewards(rung), finals)
                break
        if kept:
            finals.append(t.reward)
        out.append((t, kept, reward))
    return out


def test_asha_prunes_trials_below_the_top_third_at_a_rung_and_the_search_finishes_its_budget(tmp_path, evaluated):
    from nas.engine.fingerprint import fingerprint
    from nas.engine.driver import trial_spec

    cfg = _asha_cfg()
    assert fingerprint(cfg) == fingerprint(dataclasses.replace(cfg, scheduler=cfg_of().scheduler))
    assert trial_spec(cfg).proxy["eval_at_steps"] == [50, 100]  # the rungs imply intermediate evaluations
    store, outcome, lines = run_search(tmp_path, cfg)
    trials = store.trials("s")
    pruned = [t for t in trials if t.status == "pruned"]
    assert outcome.trials == len(trials) == 24 and outcome.pruned == len(pruned)
    assert outcome.completed == 24 - len(pruned)
    assert 6 <= len(pruned) <= 20, [t.status for t in trials]
    assert {t.metrics["rung"] for t in pruned} == {50, 100}  # pruned at both rungs
    curves = store.reports([t.id for t in trials])
    for t in pruned:
        # Stopped at its rung: it trained no further, and stored what it had.
        assert t.metrics["stopped_at"] == t.metrics["rung"] == t.metrics["steps"]
        assert max(r.step for r in curves[t.id]) == t.metrics["rung"]
        assert t.metrics["rung_reward"] == t.metrics["ap"] and t.reward is not None
    assert all(t.metrics["steps"] == 200 for t in trials if t.status == "completed")
    # Every decision and every fed reward is what ASHA and the documented rule give on the stored curves.
    for t, kept, reward in _replay_asha(cfg, store, "s"):
        assert (t.status == "completed") == kept, t.index
        assert t.reward == pytest.approx(reward), t.index
    pruned_lines = [line for line in lines if "PRUNED at step" in line]
    assert len(pruned_lines) == len(pruned)
    # Each says the trial's AP at its rung and the rung's cut it fell below.
    assert all(re.search(r"PRUNED at step \d+ \(AP \d\.\d{4} < the rung's cut \d\.\d{4}; fed reward", line)
               for line in pruned_lines), pruned_lines[:2]
    # `top` ranks trials that reached the last step only, unless asked.
    ranked = {r.trial_id for r in store.top(k=50)}
    assert ranked and not ranked & {t.id for t in pruned}
    assert {t.id for t in pruned} & {r.trial_id for r in store.top(k=50, include_pruned=True)}
    assert store.search_summaries()[0].counts["pruned"] == len(pruned)


def test_a_pruned_architecture_is_known_to_the_dedup_unless_retry_pruned(tmp_path, evaluated):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    store, _, _ = run_search(tmp_path, _asha_cfg(trials=12), name="first", db=db)
    pruned = {t.arch_key: t for t in store.trials("first") if t.status == "pruned"}
    assert pruned
    store.close()
    # The same proposals again (same seed): a pruned arch is not trained again, its fed reward is reused.
    evaluated.clear()
    store = ResultStore(db)
    driver = SearchDriver(_asha_cfg(trials=12), name="again", store=store, run_dir=str(tmp_path / "runs"),
                          out=lambda _: None)
    driver.start()
    outcome = driver.run()
    again = store.trials("again")
    assert evaluated == [] and outcome.cached == 12
    # Cached trials count with their stored curves: every first-search trial reached rung 50, once each.
    first = store.trials("first")
    assert sorted(driver.scheduler.rewards(50)) == sorted(
        r.metrics["ap"] for t in first for r in store.reports([t.id])[t.id] if r.step == 50)
    assert len(driver.scheduler.rewards(50)) == len({t.arch_key for t in first})
    assert all(t.reward == pruned[t.arch_key].reward for t in again if t.arch_key in pruned)
    store.close()
    evaluated.clear()
    store, _, _ = run_search(tmp_path, _asha_cfg(trials=12, retry_pruned=True), name="retry", db=db)
    assert set(pruned) <= set(evaluated)
    assert {t.arch_key for t in store.trials("retry") if t.status == "cached"}.isdisjoint(pruned)


@pytest.mark.parametrize("controller", ["random", "evolution",
                                        pytest.param("ppo", marks=[pytest.mark.tf, pytest.mark.slow])])
def test_each_controller_is_fed_the_stored_reward_of_every_pruned_trial(tmp_path, controller):
    from nas.config.schema import ControllerSection

    cfg = _asha_cfg(trials=30, controller=controller)
    if controller == "evolution":
        cfg = dataclasses.replace(cfg, controller=ControllerSection.of("evolution", population_size=6,
                                                                        tournament_size=3))
    if controller == "ppo":
        cfg = dataclasses.replace(cfg, controller=ControllerSection.of("ppo", batch_size=5))
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    driver = SearchDriver(cfg, name="s", store=store, run_dir=str(tmp_path / "runs"), out=lambda _: None)
    driver.start()
    fed = []
    feedback = driver.controller.feedback

    def recording(trial_id, reward):
        fed.append(reward)
        feedback(trial_id, reward)

    driver.controller.feedback = recording
    outcome = driver.run()
    assert outcome.pruned > 0 and outcome.trials == 30
    stored = [t.reward for t in sorted(store.trials("s"), key=lambda t: t.finish_order)]
    assert fed == stored and None not in fed
    assert driver.controller.num_rewards == 30


@pytest.mark.parametrize("scheduler", ["asha", "median"])
def test_a_resume_after_ctrl_c_reruns_no_pruned_trial_and_replays_the_stored_rewards(tmp_path, evaluated, scheduler):
    """The scheduler of the resumed search is told of the stored trials and decides as the uninterrupted one did."""
    from nas.config.schema import ControllerSection

    def cfg() -> NasConfig:
        # Evolution with a small population: its proposals depend on every reward it got, pruned ones included.
        kw = {} if scheduler == "asha" else {"asha": None, "median": {"rungs": (50, 100), "warmup_trials": 3}}
        return dataclasses.replace(_asha_cfg(trials=20, seed=5, checkpoint_interval_s=3600.0, **kw),
                                   controller=ControllerSection.of("evolution", population_size=4, tournament_size=2))

    ref, _, _ = run_search(tmp_path, cfg(), name="ref", db=f"sqlite:///{tmp_path / 'ref.db'}")
    expected = [(t.decisions, t.status, t.reward) for t in ref.trials("ref")]
    ref.close()

    db = f"sqlite:///{tmp_path / 'r.db'}"
    store = ResultStore(db)
    driver = SearchDriver(cfg(), name="s", store=store, run_dir=str(tmp_path / "runs" / "s"), out=lambda _: None)
    driver.start()
    feedback, calls = driver.controller.feedback, []

    def interrupted(trial_id, reward):
        feedback(trial_id, reward)
        calls.append(reward)
        if len(calls) == 11:
            raise KeyboardInterrupt

    driver.controller.feedback = interrupted
    assert driver.run().interrupted
    before = {t.id: t for t in store.trials("s")}
    assert any(t.status == "pruned" for t in before.values())
    store.close()
    evaluated.clear()

    from controller import Controller

    replayed = []
    recover = Controller.recover

    def spying(self, history, **kwargs):
        replayed.extend(reward for _, reward in history)
        return recover(self, history, **kwargs)

    import unittest.mock

    with unittest.mock.patch.object(Controller, "recover", spying):
        store, outcome, lines = run_search(tmp_path, cfg(), db=db, resume=True)
    trials = store.trials("s")
    done = [t for t in before.values() if t.finish_order is not None]
    # The replay fed the stored rewards (the pruned trials' too), and nothing that had finished ran again.
    assert replayed == [t.reward for t in sorted(done, key=lambda t: t.finish_order)]
    assert not {t.arch_key for t in done if t.status in ("completed", "pruned")} & set(evaluated)
    assert all(store.get_trial(t.id).reward == t.reward for t in done)
    assert [(t.decisions, t.status, t.reward) for t in trials] == expected
    assert outcome.trials == 20 and outcome.pruned == sum(s == "pruned" for _, s, _ in expected)


@pytest.mark.slow
def test_asha_prunes_trials_running_in_child_processes(tmp_path):
    # Trials that take a while (1.5 s): a stop sent down the pipe reaches them while they run.
    cfg = _asha_cfg(trials=10, workers=2, in_process=False, duration=1.5)
    store, outcome, _ = run_search(tmp_path, cfg)
    trials = store.trials("s")
    pruned = [t for t in trials if t.status == "pruned"]
    assert outcome.trials == 10 and pruned, [t.status for t in trials]
    curves = store.reports([t.id for t in pruned])
    for t in pruned:
        # The stop is read at the trial's next report (log_every later) at the latest: it trained no further.
        assert t.metrics["rung"] in (50, 100) and t.metrics["rung"] <= t.metrics["stopped_at"] < 200
        assert t.metrics["steps"] == t.metrics["stopped_at"] == max(r.step for r in curves[t.id])
