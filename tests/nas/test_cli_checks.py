"""Flags and config files the commands refuse before they create anything: one line, exit code 2, no traceback,
nothing written (no database, no run folder, no log). In-process: each case takes milliseconds."""

from __future__ import annotations

import contextlib
import io

import pytest

from nas import cli


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as e:  # argparse's own errors (the console script prints them on one line too)
            code = e.code
    return code, err.getvalue()


def _refused(argv: list[str], message: str, tmp_path) -> None:
    code, err = _run(argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err and len(lines[0]) < 300
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seed", "-1"], "--seed: search.seed must be an integer in [0, 2147483647], got -1"),
        (["--seed", str(2**40)], "--seed: search.seed must be an integer in [0, 2147483647]"),
        (["--cpus-per-trial", "nan"], "--cpus-per-trial: search.cpus_per_trial must be a finite number > 0, got nan"),
        (["--cpus-per-trial", "inf"], "search.cpus_per_trial must be a finite number > 0, got inf"),
        (["--gpus-per-trial", "nan"], "--gpus-per-trial: search.gpus_per_trial must be a finite number >= 0"),
        (["--trial-timeout", "nan"], "--trial-timeout: search.trial_timeout_s must be a finite number >= 0"),
        (["--trial-timeout", "-1"], "(seconds; 0: no limit), got -1.0"),
        (["--workers", "0"], "--workers: search.workers must be an integer in [1, 10000], got 0"),
        (["--surrogate-duration", "inf"], "evaluator.surrogate.duration_s must be a finite number in [0, 1e+06]"),
        (["--set", "search.reward_for_failure=nan"], "search.reward_for_failure must be a finite number in [-1, 1]"),
        (["--set", "search.reward_for_failure=1e309"], "search.reward_for_failure must be a finite number"),
        (["--set", "search.reward_for_failure=inf"], "got inf"),
        (["--set", "proxy.l2_weight_decay=nan"], "proxy.l2_weight_decay must be a finite number >= 0, got nan"),
        (["--set", "proxy.divergence_factor=nan"], "proxy.divergence_factor must be a finite number > 1, got nan"),
        (["--set", "proxy.filter_size_scale=nan"], "proxy.filter_size_scale must be a finite number in (0, 8]"),
        (["--set", "proxy.resample_alpha=inf"], "proxy.resample_alpha must be a finite number in (0, 8]"),
        (["--set", "proxy.seed=-1"], "proxy.seed must be an integer in [0, 2147483647], got -1"),
        (["--set", "evaluator.surrogate.noise=inf"], "evaluator.surrogate.noise must be a finite number in [0, 1]"),
        (["--set", "controller.ppo.learning_rate=nan"], "PPOConfig.learning_rate: expected a number in (0, 1]"),
        (["--set", "search.family=" + "x" * 10_000], "unknown family 'xxxxx"),
        # --name '' silently took the default name; --resume '' started a new search.
        (["--name", ""], "--name must be letters, digits, '.', '_' or '-'"),
        (["--resume", ""], "--resume needs the name of a stored search"),
        (["--name", "bad\x1bname"], r"got 'bad\x1bname'"),
        (["--top", "-1"], "--top must be at least 0 (0: no list at the end), got -1"),
        # A flag of a setting that is not in force is refused, not ignored (ignored, a real training would start).
        (["--evaluator", "retinanet", "--surrogate-duration", "5"],
         "--surrogate-duration is a setting of the surrogate evaluator, but the evaluator is 'retinanet'"),
        (["--target-flops", "1e9"], "--target-flops is the target of the ap-flops reward, but the reward is 'ap'"),
        (["--reward", "ap-flops", "--target-flops", "nan"], "search.target_flops must be a finite number >= 0"),
        # A resume's flags are checked before its database is opened.
        (["--resume", "old", "--workers", "0"], "--workers: search.workers must be an integer in [1, 10000], got 0"),
        (["--resume", "old", "--cpus-per-trial", "nan"], "search.cpus_per_trial must be a finite number > 0"),
        (["--resume", "old", "--name", ""], "give either --resume NAME or --name NAME, not both"),
    ],
)
def test_bad_search_flags_are_one_line_and_create_nothing(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["search", "--db", str(tmp_path / "r.db")]
    if "--evaluator" not in argv and "--resume" not in argv:
        base += ["--evaluator", "surrogate"]
    _refused([*base, *argv], message, tmp_path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seed", "-1"], "--seed must be an integer in [0, 2147483647], got -1"),  # was a ValueError traceback
        (["--archs", "1000000"], "--archs must be at most 1000"),  # drew a million candidates first (minutes)
        (["--repeats", "1000000"], "--repeats must be at most 100 seeds"),
        (["--top", "0", "--from-search", "s"], "--top must be an integer in [1, 1000], got 0"),
        (["--target-tau", "nan"], "--target-tau must be in [-1, 1], got nan"),
        (["--trial-timeout", "inf"], "search.trial_timeout_s must be a finite number >= 0"),
        (["--name", ""], "--name must be letters, digits"),
        (["--resume", ""], "--resume needs the name of a stored study"),
    ],
)
def test_bad_calibrate_flags_are_one_line_and_create_nothing(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(["calibrate", "--db", str(tmp_path / "r.db"), "--set", "evaluator.type=surrogate", *argv], message,
             tmp_path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "synth", "--out", "d", "--seed", "-1"], "--seed must be an integer in [0, 2147483647], got -1"),
        (["data", "synth", "--out", "d", "--images", "1000000000"], "--images must be between 2 and 1,000,000"),
        (["data", "synth", "--out", "d", "--size", "100000"], "--size must be at most 4096 pixels"),
        (["data", "coco", "--coco-dir", "c", "--out", "d", "--seed", "-1"], "--seed must be an integer in [0, "),
        (["proxy", "run", "--arch", "spinenet-49", "--seed", "-1"], "proxy.seed must be an integer in [0, "),
        (["proxy", "cost", "--set", "proxy.filter_size_scale=nan"], "proxy.filter_size_scale must be a finite"),
    ],
)
def test_bad_data_and_proxy_flags_are_one_line_and_create_nothing(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(argv, message, tmp_path)


def _laughs(levels: int = 9, width: int = 9) -> str:
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("search:\n  family: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested deeper than 32 levels"),
        (_laughs(), "more than 32 aliases"),
        ("search: &s {trials: *s}\n", "inside the node it names"),
        ("search:\n  seed: -1\n", "p.yaml: search.seed must be an integer in [0, 2147483647], got -1"),
        ("search:\n  trials: [[[[[" + ", ".join(["9"] * 20_000) + "]]]]]\n", "search.trials: expected an integer"),
    ],
)
@pytest.mark.parametrize("command", ["search", "calibrate"])
def test_a_preset_file_past_its_bounds_is_one_line(text, message, command, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    preset = tmp_path / "p.yaml"
    preset.write_text(text)
    _refused([command, "--db", str(work / "r.db"), "--preset", str(preset)], message, work)


def test_a_huge_preset_file_is_refused_unread(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    preset = tmp_path / "big.yaml"
    with open(preset, "wb") as fh:
        fh.truncate(50 << 20)
    _refused(["search", "--db", str(work / "r.db"), "--preset", str(preset)], "larger than 1,048,576 bytes", work)


@pytest.mark.parametrize("text, message", [
    (None, "larger than 1,048,576 bytes"),
    ("a: &a [" + ", ".join(["b"] * 9) + "]\n" + "".join(f"a{i}: &a{i} [{', '.join(['*a' if i == 0 else f'*a{i - 1}'] * 9)}]\n"
                                                        for i in range(40)), "aliases"),
])
def test_train_refuses_a_config_past_its_bounds_before_model_garden_reads_it(text, message, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config = tmp_path / "x.yaml"
    if text is None:
        with open(config, "wb") as fh:
            fh.truncate(50 << 20)
    else:
        config.write_text(text)
    _refused(["train", "--config", str(config), "--model-dir", str(work / "m")], message, work)


def test_ctrl_c_while_the_commands_load_is_one_line(monkeypatch):
    """Ctrl-C in the ~50 ms in which main() imports the commands' modules printed Python's KeyboardInterrupt
    traceback (found by the chaos bench's interrupted `db upgrade`)."""

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert _run(["db", "upgrade"]) == (130, "spinenas: interrupted\n")


def test_more_local_workers_than_cpus_is_one_warning(tmp_path, monkeypatch, capsys):
    import os

    from tests.nas.helpers import run_cli

    monkeypatch.chdir(tmp_path)
    workers = (os.cpu_count() or 1) + 1
    code, _, err = run_cli(capsys, "search", "--preset", "demo", "--evaluator", "surrogate", "--runner", "local",
                           "--set", "runner.local.in_process=true", "--controller", "random", "--trials", "1",
                           "--workers", str(workers), "--name", "w", "--db", str(tmp_path / "r.db"), "--plain",
                           "--top", "0")
    assert code == 0
    assert err.count(f"warning: --workers {workers} on this machine's {os.cpu_count()} CPUs") == 1
