"""The controller protocol, called directly (no loop, no Ray): ids, feedback rules, state, recovery."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from controller import ControllerStatus, build_controller, get_config_class, restore_controller
from search_space import InvalidDecisionError
from tests.controller.conftest import ToySpace, target_reward

SPACE = ToySpace((3, 5, 2, 4, 6, 3))
REWARD = target_reward((2, 4, 1, 0, 5, 2))
# Small configs so that PPO's part of the suite stays quick; evolution leaves its random phase early.
SMALL = {
    "ppo": {"hidden_size": 16, "embedding_size": 8, "batch_size": 4, "epochs": 2},
    "evolution": {"population_size": 6, "tournament_size": 3},
    "random": {},
}
NAMES = [
    "random",
    "evolution",
    pytest.param("ppo", marks=[pytest.mark.tf, pytest.mark.slow]),
]


def make(name, seed=0, space=SPACE, **overrides):
    config = get_config_class(name)(**{**SMALL[name], **overrides})
    return build_controller(name, space, seed=seed, config=config)


def async_rounds(ctrl, rounds, script_seed, log=None):
    """Proposes a few trials per round and feeds back a random subset of what is pending, in random order; every
    7th trial fails (None) and every 11th returns NaN. Returns the feedback log (decisions, reward)."""
    rng = np.random.default_rng(script_seed)
    log = [] if log is None else log
    for _ in range(rounds):
        ctrl.propose(int(rng.integers(1, 5)))
        pending = list(ctrl.pending)
        rng.shuffle(pending)
        for p in pending[: int(rng.integers(0, len(pending) + 1))]:
            r = None if p.trial_id % 7 == 3 else math.nan if p.trial_id % 11 == 5 else REWARD(p.decisions)
            ctrl.feedback(p.trial_id, r)
            log.append((p.decisions, r))
    return log


def drain(ctrl, log):
    for p in ctrl.pending:
        r = REWARD(p.decisions)
        ctrl.feedback(p.trial_id, r)
        log.append((p.decisions, r))
    return log


def decisions(proposals):
    return [p.decisions for p in proposals]


# ------------------------------------------------------------------------------------------------ basics
@pytest.mark.parametrize("name", NAMES)
def test_ids_count_up_and_proposals_are_in_range(name):
    ctrl = make(name)
    assert ctrl.status is ControllerStatus.NEW
    props = ctrl.propose(3) + ctrl.propose(2)
    assert [p.trial_id for p in props] == [0, 1, 2, 3, 4]
    assert ctrl.status is ControllerStatus.RUNNING
    for p in props:
        assert len(p.decisions) == len(SPACE.num_choices)
        assert all(0 <= d < n for d, n in zip(p.decisions, SPACE.num_choices))
        json.dumps(p.extras)
    assert [p.trial_id for p in ctrl.pending] == [0, 1, 2, 3, 4]
    assert ctrl.propose(0) == []


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_proposals_and_other_seed_differs(name):
    a, b, c = make(name, seed=3), make(name, seed=3), make(name, seed=4)
    log_a, log_b, log_c = async_rounds(a, 8, 0), async_rounds(b, 8, 0), async_rounds(c, 8, 0)
    assert log_a == log_b
    assert decisions(a.propose(4)) == decisions(b.propose(4))
    assert log_c != log_a


@pytest.mark.parametrize("name", NAMES)
def test_feedback_for_an_unknown_trial_is_an_error(name):
    ctrl = make(name)
    ctrl.propose(2)
    with pytest.raises(
        RuntimeError, match=r"unknown trial 7: expected the id of a pending trial \(2 pending: \[0, 1\]"
    ):
        ctrl.feedback(7, 0.5)
    with pytest.raises(RuntimeError, match="unknown trial -1"):
        ctrl.feedback(-1, 0.5)
    with pytest.raises(ValueError, match="trial_id: expected an integer, got '0'"):
        ctrl.feedback("0", 0.5)


@pytest.mark.parametrize("name", NAMES)
def test_a_second_feedback_warns_and_changes_nothing(name, caplog):
    ctrl = make(name)
    (p,) = ctrl.propose(1)
    ctrl.feedback(p.trial_id, 0.3)
    before = ctrl.state_dict()
    with caplog.at_level(logging.WARNING):
        ctrl.feedback(p.trial_id, 0.9)
    assert "second feedback ignored" in caplog.text and "Trial    0" in caplog.text
    assert ctrl.state_dict() == before


@pytest.mark.parametrize("name", NAMES)
def test_a_reward_that_is_not_a_number_is_refused_and_the_trial_stays_pending(name):
    ctrl = make(name)
    (p,) = ctrl.propose(1)
    for bad in ("0.5", True, [0.5]):
        with pytest.raises(ValueError, match="reward: expected a number or None"):
            ctrl.feedback(p.trial_id, bad)
    assert [q.trial_id for q in ctrl.pending] == [0]
    ctrl.feedback(p.trial_id, np.float32(0.25))  # numpy numbers are fine
    assert ctrl.num_rewards == 1


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [None, math.nan, math.inf, -math.inf])
def test_failures_are_skipped_by_default(name, bad, caplog):
    ctrl = make(name)
    ctrl.propose(2)
    before = ctrl.state_dict()["algorithm"]
    with caplog.at_level(logging.WARNING):
        ctrl.feedback(0, bad)
    assert ctrl.num_rewards == 0
    assert ctrl.state_dict()["algorithm"] == before  # learned nothing
    assert [p.trial_id for p in ctrl.pending] == [1]
    if bad is not None:
        assert "not finite: treated as a failed trial" in caplog.text


@pytest.mark.parametrize("bad", [None, math.nan, math.inf])
def test_failures_get_reward_for_failure_when_set(bad):
    ctrl = make("evolution", reward_for_failure=-1.0)
    ctrl.propose(2)
    ctrl.feedback(0, bad)
    assert ctrl.num_rewards == 1
    assert ctrl.state_dict()["algorithm"]["population"][0][2] == -1.0


@pytest.mark.parametrize("name", NAMES)
def test_consecutive_failures_stop_the_controller_until_a_success(name):
    ctrl = make(name, max_consecutive_failures=3)
    ctrl.propose(5)
    for tid in range(3):
        ctrl.feedback(tid, None if tid != 1 else math.nan)
    assert ctrl.status is ControllerStatus.STOPPED
    with pytest.raises(RuntimeError, match=r"stopped: the last 3 trials failed \(max_consecutive_failures=3\)"):
        ctrl.propose(1)
    ctrl.feedback(3, 0.5)
    assert ctrl.status is ControllerStatus.RUNNING
    assert len(ctrl.propose(1)) == 1


@pytest.mark.parametrize("n", [-1, 1.5, "2", True])
def test_propose_rejects_a_bad_count(n):
    with pytest.raises(ValueError, match=r"propose\(n\): expected an integer >= 0"):
        make("random").propose(n)


# ------------------------------------------------------------------------------------------------ state
@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_continues_exactly_with_pending_trials(name):
    a = make(name)
    async_rounds(a, 10, script_seed=1)
    assert a.pending, "the scenario must leave trials pending"
    state = json.loads(json.dumps(a.state_dict()))  # through JSON: no pickle, nothing lost
    assert state["version"] == 2 and state["controller"] == name
    b = make(name, seed=99)  # everything, the seed included, comes from the state
    b.load_state_dict(state)
    assert b.state_dict() == a.state_dict()
    assert b.pending == a.pending
    # Feedback for the pending trials works after the resume, and both continue identically.
    log_a = drain(a, async_rounds(a, 10, script_seed=2))
    log_b = drain(b, async_rounds(b, 10, script_seed=2))
    assert log_a == log_b
    assert decisions(a.propose(5)) == decisions(b.propose(5))
    assert a.state_dict() == b.state_dict()


@pytest.mark.parametrize("name", NAMES)
def test_restore_controller_rebuilds_from_the_state_alone(name):
    a = make(name)
    async_rounds(a, 6, script_seed=1)
    b = restore_controller(json.loads(json.dumps(a.state_dict())), SPACE)
    assert type(b) is type(a) and b.config == a.config
    assert decisions(b.propose(4)) == decisions(a.propose(4))


def test_load_state_dict_refuses_what_does_not_fit():
    state = make("evolution").state_dict()
    with pytest.raises(ValueError, match=r"expected state version 2 \(or an older one of \[1\], upgraded\), got 3"):
        make("evolution").load_state_dict({**state, "version": 3})
    with pytest.raises(ValueError, match="expected state version 2 .* got True"):
        make("evolution").load_state_dict({**state, "version": True})
    with pytest.raises(ValueError, match="expected the state of a 'evolution' controller, got 'random'"):
        make("evolution").load_state_dict(make("random").state_dict())
    with pytest.raises(ValueError, match=r"another search space: expected num_choices \[3, 5\], got \[3, 5, 2, 4"):
        make("evolution", space=ToySpace((3, 5))).load_state_dict(state)
    with pytest.raises(ValueError, match=r"another config; differing fields .*'population_size': \(7, 6\)"):
        make("evolution", population_size=7).load_state_dict(state)
    with pytest.raises(ValueError, match=r"missing key\(s\) \['rng'\]"):
        make("evolution").load_state_dict({k: v for k, v in state.items() if k != "rng"})


@pytest.mark.parametrize("name", ["random", "evolution"])
def test_a_version_1_state_of_a_controller_whose_layout_stayed_loads_as_it_is(name):
    a = make(name)
    async_rounds(a, 6, script_seed=1)
    b = make(name)
    b.load_state_dict({**json.loads(json.dumps(a.state_dict())), "version": 1})
    assert b.state_dict() == a.state_dict()
    assert decisions(b.propose(4)) == decisions(a.propose(4))


# ------------------------------------------------------------------------------------------------ recovery
@pytest.mark.parametrize("name", NAMES)
def test_recover_from_the_full_history_matches_the_uninterrupted_run(name):
    a = make(name)
    log = drain(a, async_rounds(a, 12, script_seed=5))
    b = make(name)
    assert b.recover(log) == []
    assert b.num_proposed == a.num_proposed and b.num_rewards == a.num_rewards and not b.pending
    assert decisions(b.propose(6)) == decisions(a.propose(6))


@pytest.mark.parametrize("name", NAMES)
def test_recover_from_a_checkpoint_and_the_trials_after_it(name):
    a = make(name)
    async_rounds(a, 6, script_seed=4)
    checkpoint = json.loads(json.dumps(a.state_dict()))
    assert checkpoint["pending"], "the checkpoint must hold pending trials"
    tail = drain(a, async_rounds(a, 6, script_seed=8))
    b = make(name)
    b.load_state_dict(checkpoint)
    b.recover(tail)
    assert not b.pending and b.num_proposed == a.num_proposed
    assert decisions(b.propose(6)) == decisions(a.propose(6))


@pytest.mark.parametrize("name", NAMES)
def test_recover_re_registers_trials_that_were_still_running(name):
    a = make(name)
    log = async_rounds(a, 12, script_seed=9)
    running = a.pending
    assert running
    b = make(name)
    again = b.recover(log, pending=[p.decisions for p in running])
    assert decisions(again) == decisions(running)
    assert [p.decisions for p in b.pending] == decisions(running)
    for old, new in zip(running, again):
        r = REWARD(old.decisions)
        a.feedback(old.trial_id, r)
        b.feedback(new.trial_id, r)
    assert decisions(b.propose(6)) == decisions(a.propose(6))


def test_recover_reports_malformed_history():
    ctrl = make("random")
    with pytest.raises(ValueError, match=r"history\[0\]: expected a \(decisions, reward\) pair"):
        ctrl.recover([((0,) * 6,)])
    with pytest.raises(InvalidDecisionError, match=r"history\[1\]: choice out of range at decision 1: .*0..4, got 5"):
        ctrl.recover([((0,) * 6, 0.1), ((0, 5, 0, 0, 0, 0), 0.2)])
    with pytest.raises(InvalidDecisionError, match=r"pending\[0\]: decision sequence too short: expected 6 .* got 2"):
        ctrl.recover([], pending=[(0, 0)])


# ------------------------------------------------------------------------------------------------ array codec
def test_arrays_round_trip_bit_exactly_and_the_older_zlib_form_still_reads():
    import base64
    import zlib

    from controller.base import array_from_json, array_to_json

    a = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    a[0, 0] = -0.0
    d = json.loads(json.dumps(array_to_json(a)))
    b = array_from_json(d)
    assert b.dtype == a.dtype and b.shape == a.shape and b.tobytes() == a.tobytes()
    old = {"dtype": d["dtype"], "shape": d["shape"],
           "zlib_base64": base64.b64encode(zlib.compress(a.tobytes())).decode("ascii")}
    assert array_from_json(old).tobytes() == a.tobytes()
    with pytest.raises(ValueError, match="malformed"):
        array_from_json({**d, "base64": "not base64!"})
    with pytest.raises(ValueError, match="malformed"):
        array_from_json({"dtype": "<f4", "shape": [2]})
