"""The PPO controller's own behaviour: its policy, its updates, its state (the protocol is in test_protocol)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from controller import PPOConfig, build_controller
from tests.controller.conftest import ToySpace, target_reward

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
