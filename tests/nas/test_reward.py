"""The reward function: AP, the MnasNet-style FLOPs constraint, failures."""

from __future__ import annotations

import math

import pytest

from nas.config.schema import SearchConfig
from nas.engine.reward import compute_reward
from proxy_task.result import ProxyResult


def r(ap, flops=1_000_000, error=None):
    return ProxyResult(metrics={} if ap is None else {"ap": ap}, flops=flops, params=10, wall_s=1.0, error=error)


def test_ap_reward_is_the_ap():
    assert compute_reward(r(0.25), SearchConfig()) == 0.25


@pytest.mark.parametrize("result", [r(0.3, error="loss became nan"), r(None), r(float("nan")), r(float("inf"))])
def test_failures_have_no_reward(result):
    assert compute_reward(result, SearchConfig()) is None


def test_flops_constrained_reward():
    cfg = SearchConfig(reward="ap-flops", target_flops=1e6, flops_exponent=0.07)
    assert compute_reward(r(0.4, flops=500_000), cfg) == 0.4  # under target: no bonus (capped)
    assert compute_reward(r(0.4, flops=1_000_000), cfg) == 0.4
    twice = compute_reward(r(0.4, flops=2_000_000), cfg)
    assert twice == pytest.approx(0.4 * 0.5**0.07)
    assert math.isclose(1 - twice / 0.4, 0.0474, abs_tol=1e-3)
    assert compute_reward(r(0.4, flops=4_000_000), cfg) < twice  # monotone in FLOPs over the target
    assert compute_reward(r(0.4, flops=None), cfg) is None  # cannot be scored without FLOPs


def test_flops_reward_needs_a_target():
    with pytest.raises(ValueError, match="target_flops"):
        SearchConfig(reward="ap-flops")
