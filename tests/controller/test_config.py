"""Controller configs: defaults are valid, bad values are named with what was expected and what came."""

from __future__ import annotations

import dataclasses

import pytest

from controller import ControllerConfig, EvolutionConfig, PPOConfig, RandomConfig


@pytest.mark.parametrize("cls", [ControllerConfig, RandomConfig, EvolutionConfig, PPOConfig])
def test_defaults_are_valid_frozen_and_documented(cls):
    cfg = cls()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.reward_for_failure = 0.0  # type: ignore[misc]
    doc = cls.__doc__ or ""
    for f in dataclasses.fields(cls):
        assert f"{f.name}:" in doc or f"{f.name}," in doc, f"{cls.__name__}.{f.name} is not documented"


@pytest.mark.parametrize(
    "cls, field, value, message",
    [
        (ControllerConfig, "reward_for_failure", float("nan"), "a finite number or None"),
        (ControllerConfig, "reward_for_failure", "0", "a finite number or None"),
        (ControllerConfig, "max_consecutive_failures", 0, "an integer >= 1 or None"),
        (EvolutionConfig, "population_size", 1, "an integer >= 2"),
        (EvolutionConfig, "population_size", 10.0, "an integer >= 2"),
        (EvolutionConfig, "tournament_size", 1, r"an integer in \[2, population_size=50\]"),
        (EvolutionConfig, "tournament_size", 51, r"an integer in \[2, population_size=50\]"),
        (PPOConfig, "hidden_size", 0, r"an integer in \[1, 4096\]"),
        (PPOConfig, "hidden_size", 10**18, r"an integer in \[1, 4096\]"),  # a policy no machine builds
        (PPOConfig, "learning_rate", 0.0, r"a number in \(0, 1\]"),
        (PPOConfig, "learning_rate", float("inf"), r"a number in \(0, 1\]"),
        (PPOConfig, "learning_rate", 2.0, r"a number in \(0, 1\]"),
        (PPOConfig, "batch_size", 0, "an integer >= 1"),
        (PPOConfig, "epochs", 0, r"an integer in \[1, 1000\]"),
        (PPOConfig, "epochs", 10**6, r"an integer in \[1, 1000\]"),  # a million optimizer steps per batch
        (PPOConfig, "clip_epsilon", 1.0, r"a number in \(0, 1\)"),
        (PPOConfig, "entropy_weight", -0.1, "a number >= 0"),
        (PPOConfig, "baseline_decay", 1.0, r"a number in \[0, 1\)"),
        (PPOConfig, "adam_beta2", -0.5, r"a number in \[0, 1\)"),
        (PPOConfig, "normalize_advantages", 1, "true or false"),
        (PPOConfig, "max_grad_norm", 0.0, "a number > 0 or None"),
        (PPOConfig, "center_advantages", "yes", "true or false"),
        (PPOConfig, "entropy_target", 1.0, r"a number in \(0, 1\) or None"),
        (PPOConfig, "entropy_target", 0, r"a number in \(0, 1\) or None"),
        (PPOConfig, "entropy_adapt_rate", 0.0, r"a number in \(0, 10\]"),
        (PPOConfig, "dedup_attempts", 0, r"an integer in \[1, 1000\]"),
        (PPOConfig, "dedup_attempts", 2.0, r"an integer in \[1, 1000\]"),
        (PPOConfig, "init_scale", True, r"a number in \(0, 1\]"),
        (EvolutionConfig, "population_size", 10**23, "an integer >= 2"),  # past 64 bits
    ],
)
def test_bad_values_say_what_was_expected_and_what_came(cls, field, value, message):
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field}: expected {message}, got {value!r}"):
        cls(**{field: value})


def test_cross_field_rule_names_both_fields():
    with pytest.raises(ValueError, match="batch_size: expected >= 2 when normalize_advantages is true .* got 1"):
        PPOConfig(batch_size=1)
    with pytest.raises(ValueError, match="batch_size: expected >= 2 when center_advantages is true .* got 1"):
        PPOConfig(batch_size=1, normalize_advantages=False)
    PPOConfig(batch_size=1, normalize_advantages=False, center_advantages=False)
