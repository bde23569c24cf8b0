"""`spinenas data` and `spinenas proxy run`: bad input gets one line and exit code 2, and writes nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(argv, cwd):
    return subprocess.run([sys.executable, "-m", "nas.cli", *argv], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["proxy", "run", "--arch", "spinenet-49", "--preset", "nope"], "unknown preset 'nope'"),
        (["proxy", "run", "--arch", "resnet", "--preset", "demo"], "unknown architecture 'resnet'"),
        (["proxy", "run", "--arch", "spinenet-49", "--set", "proxy.nope=1"], "unknown key 'proxy.nope'"),
        (["proxy", "run", "--arch", "spinenet-49", "--set", "proxy.image_size=100"], "multiple of 128"),
        (["proxy", "run", "--arch", "spinenet-49", "--set", "proxy.data.kind=dir"], "data.path is required"),
        (["proxy", "run", "--arch", "spinenet-49", "--set", "proxy.data.kind=dir", "--set",
          "proxy.data.path=missing"], "no dataset folder missing"),
        (["proxy", "run", "--arch", "spinenet-49", "--preset", "paper"], "no dataset folder"),
        (["proxy", "run", "--arch", "spinenet-49", "--steps", "0"], "train_steps must be an integer >= 1"),
        (["proxy", "run", "--arch", "spinenet-49", "--set", "proxy.eval_at_steps=[4,2]"], "must be increasing"),
        (["proxy", "run", "--arch", "spinenet-49", "--steps", "4", "--set", "proxy.eval_at_steps=[2,4]"],
         "not before the last training step"),
        (["proxy", "run"], "the following arguments are required: --arch"),
        (["data", "synth", "--out", "full"], "is not empty"),
        (["data", "synth", "--out", "x", "--images", "10", "--val-images", "10"], "val-images must be between"),
        (["data", "synth", "--out", "x", "--size", "8"], "--size must be at least 32"),
        (["data", "coco", "--coco-dir", "nope", "--out", "x"], "--coco-dir nope does not exist"),
        (["data", "coco", "--coco-dir", "empty", "--out", "x"], "missing COCO annotation file"),
        (["data", "synth", "--out", "/proc/x", "--images", "4"], "cannot write --out /proc/x: /proc: "),
        (["data", "synth", "--out", "full/keep/x", "--images", "4"], "cannot write --out full/keep/x: "),
    ],
)
def test_bad_input(argv, message, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("x")
    (tmp_path / "empty").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    proc = _run(argv, tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_a_bad_coco_image_is_one_line_naming_it_and_writes_nothing(tmp_path):
    from tests.proxy_task.test_data import _fake_coco_with_bad

    coco, (name,) = _fake_coco_with_bad(tmp_path / "coco", ["truncated_jpeg"])
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    proc = _run(["data", "coco", "--coco-dir", str(coco), "--out", "out", "--val-images", "2"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    *progress, error = proc.stderr.strip().splitlines()
    assert progress[-1].startswith("checking 8 images") and "Traceback" not in proc.stderr, proc.stderr
    assert error.startswith("spinenas: error: bad image ")
    assert f"bad image {coco / 'train2017' / name}: truncated JPEG" in error and "--skip-bad-images" in error
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_help_explains():
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "proxy", "run", "--help"], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "COCO AP" in proc.stdout and "--steps" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "data", "synth", "--help"], capture_output=True,
                          text=True)
    assert "byte-identical" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "data", "coco", "--help"], capture_output=True,
                          text=True)
    assert "--verify-images" in proc.stdout and "--skip-bad-images" in proc.stdout


def test_eval_at_steps_is_a_yaml_list_on_the_command_line():
    from nas.cli.commands.proxy import load_config

    assert load_config("demo", ["proxy.eval_at_steps=[2,4]"]).proxy.eval_at_steps == (2, 4)


def test_a_report_is_one_progress_line():
    from nas.cli.commands.proxy import _curve_line

    line = _curve_line(40, 450, {"loss": 1.23456, "learning_rate": 0.00187, "images_per_s": 37.2})
    assert line.endswith("step 40/450  loss 1.2346  lr 0.00187  37.2 img/s")
    line = _curve_line(50, 450, {"loss": 1.2, "learning_rate": 0.001, "images_per_s": 37.2, "ap": 0.1234,
                                 "ap50": 0.25, "eval_s": 12.0})
    assert line.endswith("AP 0.1234 AP50 0.2500")
    assert _curve_line(45, 450, {"ap": 0.1, "ap50": 0.2}).endswith("step 45/450  AP 0.1000 AP50 0.2000")
