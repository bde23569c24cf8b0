"""The PPO controller's own behaviour: its policy, its updates, its state (the protocol is in test_protocol)."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from controller import PPOConfig, build_controller
from tests.controller.conftest import ToySpace, drive, target_reward

pytestmark = [pytest.mark.tf, pytest.mark.slow]

SPACE = ToySpace((3, 5, 2, 4, 6, 3))
SMALL = PPOConfig(hidden_size=16, embedding_size=8, batch_size=4, epochs=3, learning_rate=0.05)


def test_policy_starts_near_uniform_and_never_samples_a_masked_choice():
    ctrl = build_controller("ppo", SPACE, seed=0, config=SMALL)
    probs = ctrl.probabilities()
    assert [len(p) for p in probs] == list(SPACE.num_choices)
    for p, n in zip(probs, SPACE.num_choices):
        assert p.sum() == pytest.approx(1.0, abs=1e-5)
        assert np.allclose(p, 1.0 / n, atol=0.05)  # small initial weights: close to uniform
    counts = [np.zeros(n) for n in SPACE.num_choices]
    for prop in ctrl.propose(600):
        for t, d in enumerate(prop.decisions):
            counts[t][d] += 1  # an out-of-range choice would raise IndexError
    assert all((c > 0).all() for c in counts)  # every real choice gets sampled


def test_updates_happen_every_batch_size_rewards_and_move_the_policy_towards_good_rewards():
    ctrl = build_controller("ppo", SPACE, seed=0, config=SMALL)
    reward = target_reward((2, 4, 1, 0, 5, 2))
    before = ctrl.probabilities((2, 4, 1, 0, 5, 2))
    props = ctrl.propose(7)
    for p in props[:3]:
        ctrl.feedback(p.trial_id, reward(p.decisions))
    assert ctrl.num_updates == 0
    ctrl.feedback(props[3].trial_id, reward(props[3].decisions))
    assert ctrl.num_updates == 1
    for _ in range(40):
        for p in ctrl.propose(4):
            ctrl.feedback(p.trial_id, reward(p.decisions))
    assert ctrl.num_updates == 41
    after = ctrl.probabilities((2, 4, 1, 0, 5, 2))
    gain = [a[t] - b[t] for a, b, t in zip(after, before, (2, 4, 1, 0, 5, 2))]
    assert np.mean(gain) > 0.2, gain


def test_failures_do_not_count_towards_a_batch_unless_rewarded():
    ctrl = build_controller("ppo", SPACE, seed=0, config=SMALL)
    props = ctrl.propose(8)
    for p in props[:4]:
        ctrl.feedback(p.trial_id, None)
    assert ctrl.num_updates == 0 and ctrl.state_dict()["algorithm"]["batch"] == []
    rewarded = build_controller("ppo", SPACE, seed=0, config=dataclasses.replace(SMALL, reward_for_failure=0.0))
    for p in rewarded.propose(4):
        rewarded.feedback(p.trial_id, float("nan"))
    assert rewarded.num_updates == 1


def test_state_is_json_with_exact_weights_and_a_fresh_controller_continues_bit_for_bit():
    a = build_controller("ppo", SPACE, seed=1, config=SMALL)
    reward = target_reward((0, 0, 0, 0, 0, 0))
    for _ in range(5):
        for p in a.propose(3):
            a.feedback(p.trial_id, reward(p.decisions))
    text = json.dumps(a.state_dict())
    state = json.loads(text)
    assert set(state["algorithm"]) >= {"weights", "adam_m", "adam_v", "adam_step", "baseline", "batch"}
    assert state["algorithm"]["adam_step"] == a.num_updates * SMALL.epochs
    b = build_controller("ppo", SPACE, seed=7, config=SMALL)
    b.load_state_dict(state)
    for name in ("embedding", "lstm_kernel", "head_kernel"):
        assert np.array_equal(a._vars[name].numpy(), b._vars[name].numpy())
    for _ in range(4):
        pa, pb = a.propose(3), b.propose(3)
        assert [p.decisions for p in pa] == [p.decisions for p in pb]
        for p, q in zip(pa, pb):
            a.feedback(p.trial_id, reward(p.decisions))
            b.feedback(q.trial_id, reward(q.decisions))
    assert json.dumps(a.state_dict()) == json.dumps(b.state_dict())


def test_a_state_from_another_policy_size_is_refused():
    a = build_controller("ppo", SPACE, seed=0, config=SMALL)
    state = a.state_dict()
    state["config"] = dict(state["config"], hidden_size=32)  # pretend the config matches...
    b = build_controller("ppo", SPACE, seed=0, config=dataclasses.replace(SMALL, hidden_size=32))
    with pytest.raises(ValueError, match=r"weights.lstm_kernel expected float32 of shape \(40, 128\)"):
        b.load_state_dict(state)  # ...the weights do not


# ------------------------------------------------------------------------------------------------ exploration
# `SMALL` with the settings of state version 1 (before centred advantages, the entropy target and dedup).
LEGACY = dataclasses.replace(SMALL, entropy_weight=0.0001, center_advantages=False, entropy_target=None,
                             dedup_attempts=1, elite_size=0, learning_rate_halflife=None)
# What version 1 of this controller proposed for `LEGACY`, seed 3, two at a time, rewarded by `target_reward` below
# (recorded with that version's code): its policy collapses onto one sequence within 40 proposals.
LEGACY_TARGET = (2, 4, 1, 0, 5, 2)
LEGACY_PROPOSALS = [
    (0, 2, 0, 1, 2, 1), (0, 1, 0, 1, 3, 0), (0, 4, 0, 0, 2, 2), (1, 2, 0, 1, 0, 2), (2, 4, 0, 1, 1, 2),
    (2, 1, 0, 3, 3, 0), (0, 2, 1, 3, 4, 0), (0, 3, 1, 0, 2, 2), (2, 4, 0, 1, 2, 2), (0, 4, 0, 3, 1, 2),
    (2, 4, 0, 3, 0, 2), (2, 3, 0, 0, 1, 0), (2, 0, 0, 0, 0, 2), (0, 1, 1, 3, 2, 2), (0, 0, 0, 1, 2, 2),
    (0, 1, 0, 1, 1, 2), (2, 3, 1, 1, 3, 2), (2, 4, 0, 3, 2, 2), (0, 3, 0, 0, 0, 2), (2, 0, 0, 1, 0, 2),
    (2, 1, 0, 3, 4, 2), (2, 3, 0, 3, 0, 2), (2, 3, 0, 3, 5, 2), (2, 3, 0, 0, 2, 2), (2, 4, 0, 3, 5, 2),
    (2, 2, 0, 0, 2, 0), (2, 4, 0, 3, 2, 2), (0, 4, 0, 0, 2, 2), (2, 2, 0, 1, 2, 2), (2, 4, 0, 3, 2, 2),
    (2, 4, 0, 3, 2, 2), (2, 4, 0, 3, 4, 2), (2, 4, 0, 3, 2, 2), (2, 3, 0, 3, 1, 2), (2, 4, 0, 3, 0, 2),
    (2, 4, 0, 3, 2, 2), (2, 4, 0, 3, 2, 2), (2, 4, 0, 3, 2, 2), (2, 4, 0, 3, 2, 2), (2, 4, 0, 3, 2, 2),
]


def test_the_version_1_settings_propose_what_version_1_did():
    ctrl = build_controller("ppo", SPACE, seed=3, config=LEGACY)
    log = drive(ctrl, target_reward(LEGACY_TARGET), budget=40, batch=2)
    assert [d for d, _ in log] == LEGACY_PROPOSALS


def test_dedup_resamples_known_proposals_and_accepts_a_repeat_only_after_every_attempt():
    ctrl = build_controller("ppo", SPACE, seed=3, config=SMALL)
    log = drive(ctrl, target_reward(LEGACY_TARGET), budget=40, batch=2)
    assert len({d for d, _ in log}) == 40  # version 1 proposed 17 distinct sequences here
    # A policy that puts (nearly) all its mass on one sequence: the attempts are all known, a repeat is accepted.
    peaked = build_controller("ppo", ToySpace((2, 2)), seed=0, config=dataclasses.replace(SMALL, dedup_attempts=3))
    bias = np.full(4, -50.0, np.float32)
    bias[[0, 2]] = 50.0  # head rows: step 0 choices 0-1, step 1 choices 0-1
    peaked._vars["head_bias"].assign(bias)
    first, second = peaked.propose(2)
    assert first.decisions == second.decisions == (0, 0)
    assert first.extras == {"attempts": 1} and second.extras == {"attempts": 3, "repeat": True}
    assert peaked.state_dict()["algorithm"]["num_repeats"] == 1


def test_the_entropy_weight_rises_while_the_entropy_is_under_its_target_and_falls_while_over():
    cfg = dataclasses.replace(SMALL, entropy_target=0.5, entropy_weight=0.01, entropy_adapt_rate=1.0)
    ctrl = build_controller("ppo", SPACE, seed=0, config=cfg)
    (p0, *rest) = ctrl.propose(4)
    for p in (p0, *rest):
        ctrl.feedback(p.trial_id, target_reward(LEGACY_TARGET)(p.decisions))
    stats = ctrl.last_update_stats  # a near-uniform policy: entropy over the target, the weight goes down
    assert stats["entropy_weight"] == 0.01 and stats["entropy_before"] > 0.9 * np.mean(np.log(SPACE.num_choices))
    assert ctrl.state_dict()["algorithm"]["entropy_weight"] < 0.01
    peaked = np.full(sum(SPACE.num_choices), -20.0, np.float32)
    peaked[np.concatenate([[0], np.cumsum(SPACE.num_choices)[:-1]])] = 20.0  # each step's first choice
    ctrl._vars["head_bias"].assign(peaked)
    weight = ctrl.state_dict()["algorithm"]["entropy_weight"]
    for p in ctrl.propose(4):
        ctrl.feedback(p.trial_id, target_reward(LEGACY_TARGET)(p.decisions))
    assert ctrl.last_update_stats["entropy_before"] < 0.1
    assert ctrl.state_dict()["algorithm"]["entropy_weight"] > weight


def _as_version_1(state):
    """`state` as version 1 stored it: no dedup keys, adapted weight, repeat count or the config fields of them."""
    new = ("center_advantages", "entropy_target", "entropy_adapt_rate", "dedup_attempts", "elite_size", "elite_weight",
           "learning_rate_halflife")
    algorithm = {k: v for k, v in state["algorithm"].items()
                 if k not in ("entropy_weight", "known", "num_repeats", "elites")}
    return {**state, "version": 1, "config": {k: v for k, v in state["config"].items() if k not in new},
            "algorithm": algorithm}


def test_a_version_1_state_loads_and_continues_as_version_1_did_with_its_settings(caplog):
    reward = target_reward(LEGACY_TARGET)
    a = build_controller("ppo", SPACE, seed=3, config=LEGACY)
    drive(a, reward, budget=22, batch=2)
    old = json.loads(json.dumps(_as_version_1(a.state_dict())))
    b = build_controller("ppo", SPACE, seed=0, config=LEGACY)
    with caplog.at_level("WARNING"):
        b.load_state_dict(old)
    assert "a version-1 state: its config lacks" in caplog.text and "'dedup_attempts'" in caplog.text
    assert b.state_dict() == a.state_dict()
    log_a, log_b = drive(a, reward, budget=40, batch=2), drive(b, reward, budget=40, batch=2)
    assert [d for d, _ in log_a] == [d for d, _ in log_b] == LEGACY_PROPOSALS[22:]


def test_a_version_1_state_resumes_with_todays_settings_knowing_no_earlier_proposal():
    a = build_controller("ppo", SPACE, seed=3, config=LEGACY)
    drive(a, target_reward(LEGACY_TARGET), budget=20, batch=2)
    today = dataclasses.replace(SMALL, entropy_weight=LEGACY.entropy_weight)  # the added fields at today's defaults
    b = build_controller("ppo", SPACE, seed=0, config=today)
    b.load_state_dict(_as_version_1(a.state_dict()))
    state = b.state_dict()
    assert state["version"] == 2 and state["config"] == dataclasses.asdict(today)
    assert state["algorithm"]["known"]["shape"] == [0] and state["algorithm"]["entropy_weight"] == today.entropy_weight
    assert len(b.propose(3)) == 3
    with pytest.raises(ValueError, match=r"another config; differing fields .*'dedup_attempts': \(1, 10\)"):
        build_controller("ppo", SPACE, seed=0, config=LEGACY).load_state_dict(b.state_dict())


# ------------------------------------------------------------------------------------------------ recorded version 1
# A state saved by version 1's code, two trials pending, and what that code proposed next (make_ppo_state_v1.py).
with open(os.path.join(os.path.dirname(__file__), "ppo_state_v1.json"), encoding="utf-8") as _fh:
    RECORDED_V1 = json.load(_fh)


def _finish(ctrl, reward, budget):
    """Rewards the pending trials (in id order), then drives `ctrl` to `budget`; returns every decisions proposed."""
    pending = sorted((int(t), tuple(d)) for t, d in RECORDED_V1["state"]["pending"])
    for tid, decisions in pending:
        ctrl.feedback(tid, reward(decisions))
    return [d for _, d in pending] + [d for d, _ in drive(ctrl, reward, budget=budget, batch=2)]


def test_a_recorded_version_1_state_continues_as_version_1_did_with_its_settings():
    reward = target_reward(RECORDED_V1["target"])
    old = PPOConfig(**RECORDED_V1["state"]["config"])
    cfg = dataclasses.replace(old, center_advantages=False, entropy_target=None, dedup_attempts=1, elite_size=0,
                              learning_rate_halflife=None)
    ctrl = build_controller("ppo", ToySpace(RECORDED_V1["space"]), seed=0, config=cfg)
    ctrl.load_state_dict(RECORDED_V1["state"])
    assert ctrl.state_dict()["version"] == 2 and ctrl.num_proposed == 24 and len(ctrl.pending) == 2
    assert _finish(ctrl, reward, 40) == [tuple(d) for d in RECORDED_V1["continuation"]]


def test_a_recorded_version_1_state_upgrades_to_todays_settings_and_resumes_exactly():
    reward = target_reward(RECORDED_V1["target"])
    cfg = PPOConfig(**RECORDED_V1["state"]["config"])  # the fields added since take today's defaults
    ctrl = build_controller("ppo", ToySpace(RECORDED_V1["space"]), seed=0, config=cfg)
    ctrl.load_state_dict(RECORDED_V1["state"])
    state = ctrl.state_dict()
    assert state["version"] == 2 and state["config"] == dataclasses.asdict(cfg)
    assert state["algorithm"]["known"]["shape"] == [0] and state["algorithm"]["entropy_weight"] == cfg.entropy_weight
    proposed = _finish(ctrl, reward, 34)
    assert len(set(proposed[2:])) == len(proposed) - 2  # deduped from the upgrade on
    again = build_controller("ppo", ToySpace(RECORDED_V1["space"]), seed=1, config=cfg)
    again.load_state_dict(json.loads(json.dumps(ctrl.state_dict())))
    log_a, log_b = drive(ctrl, reward, budget=48, batch=2), drive(again, reward, budget=48, batch=2)
    assert log_a == log_b and ctrl.state_dict() == again.state_dict()
