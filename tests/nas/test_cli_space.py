"""`spinenas space` and `spinenas spec show`: output, exact numbers, one-line errors."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import subprocess
import sys

import pytest

from nas.cli.commands.space import COST_FIELDS
from nas.config.presets import get_preset
from search_space import SPINENET_49, ArchSpec
from search_space.cost import IMAGE_SIZES, SCALINGS, count_cost
from tests.nas.helpers import run_cli
from tests.search_space.test_cost import NAMED


@pytest.mark.parametrize("family", ["r35-sp18", "r23-sp30", "r14-sp39", "r0-sp53", "spinenet49"])
def test_space_json_has_exact_integers(capsys, family):
    code, out, _ = run_cli(capsys, "space", "--family", family, "--json")
    assert code == 0
    s = json.loads(out)
    n, m = s["N"], s["m"]
    assert s["permutations"] == math.factorial(n - 5) * 120
    assert s["connections"] == math.prod(math.comb(i, 2) for i in range(m, n + m))
    assert isinstance(s["connections"], int)
    for key in ("connections_windowed", "level_adjustments", "block_types", "log10_total"):
        assert key in s


def test_space_numbers_per_family(capsys):
    expected = {"r35-sp18": (6, 4), "r23-sp30": (10, 4), "r14-sp39": (13, 4), "r0-sp53": (15, 2), "spinenet49": (15, 2)}
    for family, (n, m) in expected.items():
        _, out, _ = run_cli(capsys, "space", "--family", family, "--json")
        s = json.loads(out)
        assert (s["N"], s["m"]) == (n, m)
    _, out, _ = run_cli(capsys, "space", "--family", "spinenet49", "--json")
    s = json.loads(out)
    assert s["level_adjustments"] == 4**10 and s["block_types"] == 2**15
    _, out, _ = run_cli(capsys, "space", "--family", "r0-sp53", "--json")
    s = json.loads(out)
    assert s["level_adjustments"] == 1 and s["block_types"] == 1


def test_window_changes_only_the_windowed_count(capsys):
    _, a, _ = run_cli(capsys, "space", "--family", "r0-sp53", "--json", "--window", "5")
    _, b, _ = run_cli(capsys, "space", "--family", "r0-sp53", "--json", "--window", "4")
    a, b = json.loads(a), json.loads(b)
    assert a["connections"] == b["connections"]
    assert a["connections_windowed"] > b["connections_windowed"]


def test_space_table(capsys):
    code, out, _ = run_cli(capsys, "space", "--family", "spinenet49")
    assert code == 0
    assert "N = 15" in out and "m = 2" in out and "permutations" in out


def test_spec_show_formats(capsys):
    code, out, _ = run_cli(capsys, "spec", "show", "spinenet-49", "--format", "model-garden")
    assert code == 0
    assert ast.literal_eval(out) == SPINENET_49.to_model_garden()
    code, out, _ = run_cli(capsys, "spec", "show", "spinenet-49", "--format", "json")
    assert ArchSpec.from_dict(json.loads(out)) == SPINENET_49
    code, out, _ = run_cli(capsys, "spec", "show", "spinenet-49")
    assert SPINENET_49.key in out and "dead" in out and "spinenet49" in out


def test_spec_show_reads_files(capsys, tmp_path):
    path = tmp_path / "a.json"
    path.write_text(SPINENET_49.canonical().to_json())
    code, out, _ = run_cli(capsys, "spec", "show", str(path), "--format", "json")
    assert code == 0 and ArchSpec.from_dict(json.loads(out)) == SPINENET_49.canonical()


@pytest.mark.parametrize("scale", list(NAMED))
def test_spec_show_cost_at_a_scale_is_what_export_measures(capsys, scale):
    # NAMED: Model Garden's count_params() and count_flops of the detector `spinenas export --scale` builds.
    code, out, _ = run_cli(capsys, "spec", "show", "spinenet-49", "--cost", "--scale", scale, "--format", "json")
    assert code == 0
    f = json.loads(out)
    assert (f["params"], f["backbone_params"], f["head_params"], f["flops"], f["backbone_flops"],
            f["head_flops"]) == NAMED[scale]
    assert (f["scale"], f["preset"], f["image_size"], f["num_classes"], f["use_sync_bn"]) == (
        scale, None, IMAGE_SIZES[scale], 91, True)
    assert {k: f[k] for k in dataclasses.asdict(SCALINGS[scale])} == dataclasses.asdict(SCALINGS[scale])


def test_spec_show_cost_of_spinenet49(capsys):
    code, out, _ = run_cli(capsys, "spec", "show", "spinenet-49", "--cost", "--scale", "49", "--format", "json")
    f = json.loads(out)
    assert code == 0 and (f["params"], f["flops"]) == (28_652_567, 85_566_955_418)
    assert tuple(f) == COST_FIELDS
    code, out, _ = run_cli(capsys, "spec", "show", "spinenet-49", "--cost", "--scale", "49")
    assert code == 0
    lines = out.splitlines()
    assert "`spinenas export --scale 49`" in lines[0] and "640 px, 91 classes" in lines[0]
    assert "synchronized batch norm" in lines[1]
    detector = next(ln for ln in lines if ln.startswith("detector"))
    assert "28,652,567" in detector and "85,566,955,418" in detector
    assert "multiply-adds per image" in lines[-1]


def test_spec_show_cost_defaults_to_what_a_demo_trial_stores(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "spec", "show", "spinenet-49", "--cost", "--format", "json")
    f = json.loads(out)
    # What tests/proxy_task/test_trial.py's real trial stores: SpineNet-49 at 128 px on the synthetic 5 classes.
    assert code == 0 and (f["params"], f["flops"]) == (1_543_057, 214_951_471)
    assert (f["scale"], f["preset"], f["image_size"], f["num_classes"], f["use_sync_bn"]) == (None, "demo", 128, 5,
                                                                                              False)
    proxy = get_preset("demo").proxy
    assert (f["filter_size_scale"], f["head_num_filters"], f["activation"]) == (0.25, 64, proxy.activation)
    _, table, _ = run_cli(capsys, "spec", "show", "spinenet-49", "--cost")
    assert "preset demo" in table and "1,543,057" in table and "fused batch norm" in table
    # A spec file, another preset, and the overrides.
    path = tmp_path / "a.json"
    path.write_text(SPINENET_49.canonical().to_json())
    _, out, _ = run_cli(capsys, "spec", "show", str(path), "--cost", "--format", "json")
    assert json.loads(out) == f
    _, out, _ = run_cli(capsys, "spec", "show", "spinenet-49", "--cost", "--preset", "paper", "--format", "json")
    paper = get_preset("paper").proxy
    g = json.loads(out)
    assert (g["preset"], g["image_size"]) == ("paper", paper.image_size)
    assert g["params"] == paper.cost(SPINENET_49, g["num_classes"]).params
    _, out, _ = run_cli(capsys, "spec", "show", "spinenet-49", "--cost", "--image-size", "256", "--num-classes", "91",
                    "--format", "json")
    h = json.loads(out)
    big = dataclasses.replace(proxy, image_size=256).cost(SPINENET_49, 91)
    assert (h["image_size"], h["num_classes"], h["params"], h["flops"]) == (256, 91, big.params, big.flops)
    _, out, _ = run_cli(capsys, "spec", "show", "spinenet-49", "--cost", "--scale", "96", "--image-size", "512",
                    "--num-classes", "2", "--format", "json")
    k = json.loads(out)
    c = count_cost(SPINENET_49, image_size=512, num_classes=2, scaling=SCALINGS["96"], use_sync_bn=True)
    assert (k["image_size"], k["num_classes"], k["params"], k["flops"]) == (512, 2, c.params, c.flops)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["space", "--family", "r50"], "unknown family 'r50'"),
        (["space", "--family", "r0-sp53", "--window", "1"], "--window must be"),
        (["space"], "the following arguments are required: --family"),
        (["spec", "show", "resnet-50"], "unknown architecture 'resnet-50'"),
        (["spec", "show", "missing.json"], "spec file not found"),
        (["spec", "show", "spinenet-49", "--format", "yaml"], "invalid choice: 'yaml'"),
        (["spec", "show", "spinenet-49", "--cost", "--scale", "50"], "unknown scale '50'; expected one of 49S, 49,"),
        (["spec", "show", "spinenet-49", "--cost", "--image-size", "200"], "--image-size must be a positive multiple"),
        (["spec", "show", "spinenet-49", "--cost", "--scale", "49", "--image-size", "0"], "multiple of 128, got 0"),
        (["spec", "show", "spinenet-49", "--cost", "--num-classes", "0"], "--num-classes must be at least 1, got 0"),
        (["spec", "show", "spinenet-49", "--cost", "--preset", "nope"], "unknown preset 'nope'"),
        (["spec", "show", "spinenet-49", "--cost", "--scale", "49", "--preset", "demo"], "not allowed with"),
        (["spec", "show", "spinenet-49", "--scale", "49"], "--scale goes with --cost"),
        (["spec", "show", "spinenet-49", "--cost", "--format", "model-garden"], "not --format model-garden"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "nas.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "malformed JSON"),
        ('{"blocks": [[3, "bottleneck", [0, 1], true]]}', "no output block at level(s) L4"),
        ('{"blocks": [[3, "bottleneck", [0, 7], true]]}', "blocks[0].input_offsets"),
    ],
)
def test_invalid_spec_files(content, message, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "nas.cli", "spec", "show", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert message in proc.stderr


def _with_dead_blocks(n: int) -> str:
    # SpineNet-49, then blocks that feed no endpoint, up to n blocks.
    dead = [[2, "residual", [2, 3], False]] * (n - 16)
    return json.dumps([[lvl, fn, list(o), out] for lvl, fn, o, out in SPINENET_49.to_model_garden()] + dead)


@pytest.mark.parametrize(
    "content, message",
    [
        (_with_dead_blocks(8_017), "blocks: too many blocks: a spec has at most 256 (MAX_BLOCKS), got 8,017"),
        ('{"blocks": ' + "[" * 100_000 + "]" * 100_000 + "}", "spec JSON nested too deeply: at most 32 levels"),
        (_with_dead_blocks(256) + " " * (1 << 20), "spec file too large: at most 1,048,576 bytes (MAX_SPEC_BYTES)"),
    ],
    ids=["8017-blocks", "deep", "over-1-MiB"],
)
def test_spec_files_beyond_a_limit_get_one_line(content, message, tmp_path):
    path = tmp_path / "big.json"
    path.write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "nas.cli", "spec", "show", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"spinenas: error: {path}: {message}")


def test_spec_show_of_max_blocks_keeps_spinenet49_membership(capsys, tmp_path):
    # 256 blocks, 241 of them dead: its canonical form is SpineNet-49's 15 blocks, so it is in spinenet49 as
    # Model Garden's 16-block SpineNet-49 is.
    path = tmp_path / "a.json"
    path.write_text(_with_dead_blocks(256))
    code, out, _ = run_cli(capsys, "spec", "show", str(path))
    assert code == 0 and SPINENET_49.key in out
    assert out.strip().splitlines()[-1] == "in search space(s): spinenet49"
