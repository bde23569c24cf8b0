"""Every `--set` key of the config, given values that are wrong (NaN, infinities, negatives, huge, wrong types) or at
the edge (0), through the CLI in-process: no traceback, exit code 0 or 2, a refusal is one line and creates nothing,
and what is accepted is a value the key documents (0 meaning 'no limit', a budget that is merely large, ...)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import typing

import pytest

from nas import cli
from nas.cli.commands import search as search_command
from nas.config.schema import NasConfig
from nas.config.sections import OneOf


class _Accepted(Exception):
    """Raised where the search would open its database: every check passed."""


def _leaves(cls: type, prefix: str = "") -> list[tuple[str, typing.Any]]:
    """(dotted key, type hint) of every leaf of a config class, every registered choice of its OneOf sections too."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint, key = hints[f.name], f"{prefix}{f.name}"
        if isinstance(hint, type) and issubclass(hint, OneOf):
            out.append((f"{key}.type", "type"))
            for name, settings in hint.choices().items():
                if settings is not None:
                    out += [(k, h) for k, h in _leaves(settings, f"{key}.{name}.")
                            if k.rsplit(".", 1)[-1] not in hint.excluded]
        elif dataclasses.is_dataclass(hint):
            out += _leaves(hint, f"{key}.")
        else:
            out.append((key, hint))
    return out


def _kind(hint: typing.Any) -> str:
    if hint == "type":
        return "type"
    if typing.get_origin(hint) is tuple:
        return "steps"
    args = [a for a in typing.get_args(hint) if a is not type(None)]  # X | None
    return {int: "int", float: "float", bool: "bool", str: "str"}[args[0] if args else hint]


def _optional(hint: typing.Any) -> bool:
    return type(None) in typing.get_args(hint)


# Values tried per kind of key, as `--set KEY=VALUE` text (parsed as YAML, as the CLI does).
BAD_NUMBERS = ["nan", ".nan", "inf", "-inf", "1e309", "-1", "abc", "[1]", "{a: 1}", "true"]
EDGE_NUMBERS = ["0", "1e18", "1000000000000000000", "100000000000000000000000"]
VALUES = {
    "int": BAD_NUMBERS + EDGE_NUMBERS + ["null", "1.5"],
    "float": BAD_NUMBERS + EDGE_NUMBERS + ["null"],
    "bool": ["maybe", "2", "null", "[]"],
    "str": ["nosuch", "''", "123", "[1]", "null", "x" * 5000, "'bad\\x1b[31mname'"],
    "type": ["nosuch", "''", "1", "null"],
    "steps": ["[.nan]", "[-1]", "[0]", "[1e18]", "abc", "[[1]]", "[100, 50]"],
}

# What is accepted, by value: the keys documented to take it (everything else must be refused).
ZERO_OK = {
    "search.window", "search.gpus_per_trial", "search.trial_timeout_s", "search.target_flops", "search.flops_exponent",
    "search.max_flops", "search.reward_for_failure", "search.trials_per_worker", "search.seed",
    "search.checkpoint_interval_s", "controller.ppo.adam_beta1", "controller.ppo.adam_beta2",
    "controller.ppo.entropy_weight", "controller.ppo.baseline_decay", "controller.ppo.elite_size",
    "controller.ppo.elite_weight", "evaluator.surrogate.noise",
    "evaluator.surrogate.duration_s", "evaluator.surrogate.target_seed", "evaluator.surrogate.rate_spread",
    "runner.ray.worker_retries", "runner.local.worker_retries", "proxy.data.seed", "proxy.eval_images",
    "proxy.warmup_steps", "proxy.l2_weight_decay", "proxy.seed", "proxy.threads", "scheduler.median.warmup_steps",
}
# 10**18 (and 1e18): budgets and limits, where so large a one means 'no limit' or merely a long search; and rates
# whose trials then diverge (a failed trial is data).
HUGE_OK = {
    "search.window", "search.trials", "search.trial_timeout_s", "search.target_flops", "search.max_flops",
    "search.trials_per_worker", "search.checkpoint_interval_s", "controller.ppo.max_consecutive_failures",
    "controller.ppo.adam_epsilon", "controller.ppo.batch_size", "controller.ppo.entropy_weight",
    "controller.ppo.max_grad_norm", "controller.ppo.elite_weight", "controller.ppo.learning_rate_halflife",
    "controller.evolution.max_consecutive_failures", "controller.evolution.population_size", "controller.random.max_consecutive_failures",
    "evaluator.surrogate.full_steps", "proxy.train_steps", "proxy.eval_images", "proxy.learning_rate",
    "proxy.clipnorm", "proxy.l2_weight_decay", "proxy.divergence_factor", "proxy.log_every", "scheduler.asha.eta",
    "scheduler.asha.min_results", "scheduler.median.warmup_trials", "scheduler.median.warmup_steps",
}
NEGATIVE_OK = {"search.reward_for_failure"}  # a reward of -1 teaches the controller to avoid what fails
# null: where None means something documented.
NULL_OK = {
    "search.reward_for_failure", "controller.ppo.max_consecutive_failures", "controller.ppo.max_grad_norm",
    "controller.ppo.entropy_target", "controller.ppo.learning_rate_halflife",
    "controller.evolution.max_consecutive_failures", "controller.random.max_consecutive_failures",
    "evaluator.surrogate.target_seed", "proxy.clipnorm", "scheduler.asha.min_results",
}
# A string key's value that is not one of its choices is refused, but for a free path ('' means the default cache).
STR_OK = {("proxy.data.path", v) for v in ("nosuch", "''", "x" * 5000, "'bad\\x1b[31mname'")}
# Step lists (proxy.eval_at_steps, scheduler.asha.rungs) take increasing integers before the last step only.
STEPS_OK: set[tuple[str, str]] = set()


def _expected(key: str, kind: str, value: str) -> bool:
    """Whether `--set key=value` is to be accepted (on the demo preset, with the surrogate evaluator)."""
    if kind in ("int", "float"):
        if value == "0":
            return key in ZERO_OK
        if value == "1000000000000000000" or (kind == "float" and value in ("1e18", "100000000000000000000000")):
            return key in HUGE_OK
        if value == "-1":
            return key in NEGATIVE_OK
        if value == "null":
            return key in NULL_OK
        return False
    if kind == "str":
        return (key, value) in STR_OK
    if kind == "steps":
        return (key, value) in STEPS_OK
    return False


CASES = [(key, _kind(hint), value) for key, hint in _leaves(NasConfig) for value in VALUES.get(_kind(hint), [])]


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except _Accepted:
            code = 0
        except SystemExit as e:  # argparse's own errors
            code = e.code
    return code, err.getvalue()


@pytest.mark.slow  # about 1,000 CLI runs: 8 s
def test_every_key_refuses_bad_values_in_one_line_and_creates_nothing(tmp_path, monkeypatch):
    def accepted(*args, **kwargs):
        raise _Accepted

    monkeypatch.setattr(search_command, "open_store", accepted)  # the first thing that writes
    monkeypatch.setattr(search_command, "ensure_data", lambda cfg: None)  # evaluator.type=retinanet makes no data
    monkeypatch.chdir(tmp_path)
    keys = {key for key, _, _ in CASES}
    assert len(keys) > 80 and {"controller.evolution.population_size", "runner.local.in_process",
                               "scheduler.asha.rungs", "proxy.data.seed", "evaluator.surrogate.noise"} <= keys
    base = ["search", "--db", str(tmp_path / "r.db"), "--evaluator", "surrogate", "--runner", "local", "--name", "fz"]
    wrong = []
    for key, kind, value in CASES:
        code, err = _run([*base, "--set", f"{key}={value}"])
        assert "Traceback" not in err, (key, value, err)
        assert code in (0, 2), (key, value, code, err)
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("spinenas") and len(lines[0]) < 400, (key, value, err)
        assert not list(tmp_path.iterdir()), (key, value)
        if (code == 0) != _expected(key, kind, value):
            wrong.append((key, value[:20], "accepted" if code == 0 else err.strip()))
    assert not wrong, "\n".join(map(str, wrong))
    assert len(CASES) > 900


def test_edge_values_that_are_accepted_run_a_search(tmp_path, monkeypatch):
    # Values at the ends of what the checks let through, in one real (surrogate, in-process) search of 3 trials.
    monkeypatch.chdir(tmp_path)
    edges = ["search.trial_timeout_s=1e18", "search.reward_for_failure=-1", "search.window=0",
             "search.checkpoint_interval_s=1e18", "search.max_flops=1e18", "search.trials_per_worker=0",
             "search.seed=2147483647", "evaluator.surrogate.full_steps=1000000000000000000",
             "evaluator.surrogate.rate_spread=10", "evaluator.surrogate.noise=1", "proxy.divergence_factor=1e18",
             "proxy.log_every=1000000000000000000", "proxy.warmup_steps=0", "proxy.train_steps=100",
             "proxy.seed=2147483647", "controller.random.max_consecutive_failures=1000000000000000000"]
    argv = ["search", "--db", "r.db", "--evaluator", "surrogate", "--runner", "local", "--controller", "random",
            "--trials", "3", "--name", "edges", "--top", "0", "--set", "runner.local.in_process=true"]
    code, err = _run([*argv, *(a for e in edges for a in ("--set", e))])
    assert code == 0 and "Traceback" not in err, err


@pytest.mark.parametrize("key, value", [
    ("search.family", "[" * 50000),  # nested past any bound
    ("search.family", "&a [*a]"),  # a recursive alias
    ("proxy.data.path", "x" * 100_000),  # past the bound of a --set value
])
def test_a_bounded_set_value_is_one_line(key, value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _run(["search", "--db", str(tmp_path / "r.db"), "--evaluator", "surrogate", "--set", f"{key}={value}"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and len(err) < 200, err
    assert not list(tmp_path.iterdir())
