"""`spinenas space` and `spinenas spec show`: output, exact numbers, one-line errors."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys

import pytest

from nas import cli
from search_space import SPINENET_49, ArchSpec


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("family", ["r35-sp18", "r23-sp30", "r14-sp39", "r0-sp53", "spinenet49"])
def test_space_json_has_exact_integers(capsys, family):
    code, out, _ = run(capsys, "space", "--family", family, "--json")
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
        _, out, _ = run(capsys, "space", "--family", family, "--json")
        s = json.loads(out)
        assert (s["N"], s["m"]) == (n, m)
    _, out, _ = run(capsys, "space", "--family", "spinenet49", "--json")
    s = json.loads(out)
    assert s["level_adjustments"] == 4**10 and s["block_types"] == 2**15
    _, out, _ = run(capsys, "space", "--family", "r0-sp53", "--json")
    s = json.loads(out)
    assert s["level_adjustments"] == 1 and s["block_types"] == 1


def test_window_changes_only_the_windowed_count(capsys):
    _, a, _ = run(capsys, "space", "--family", "r0-sp53", "--json", "--window", "5")
    _, b, _ = run(capsys, "space", "--family", "r0-sp53", "--json", "--window", "4")
    a, b = json.loads(a), json.loads(b)
    assert a["connections"] == b["connections"]
    assert a["connections_windowed"] > b["connections_windowed"]


def test_space_table(capsys):
    code, out, _ = run(capsys, "space", "--family", "spinenet49")
    assert code == 0
    assert "N = 15" in out and "m = 2" in out and "permutations" in out


def test_spec_show_formats(capsys):
    code, out, _ = run(capsys, "spec", "show", "spinenet-49", "--format", "model-garden")
    assert code == 0
    assert ast.literal_eval(out) == SPINENET_49.to_model_garden()
    code, out, _ = run(capsys, "spec", "show", "spinenet-49", "--format", "json")
    assert ArchSpec.from_dict(json.loads(out)) == SPINENET_49
    code, out, _ = run(capsys, "spec", "show", "spinenet-49")
    assert SPINENET_49.key in out and "dead" in out and "spinenet49" in out


def test_spec_show_reads_files(capsys, tmp_path):
    path = tmp_path / "a.json"
    path.write_text(SPINENET_49.canonical().to_json())
    code, out, _ = run(capsys, "spec", "show", str(path), "--format", "json")
    assert code == 0 and ArchSpec.from_dict(json.loads(out)) == SPINENET_49.canonical()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["space", "--family", "r50"], "unknown family 'r50'"),
        (["space", "--family", "r0-sp53", "--window", "1"], "--window must be"),
        (["space"], "the following arguments are required: --family"),
        (["spec", "show", "resnet-50"], "unknown architecture 'resnet-50'"),
        (["spec", "show", "missing.json"], "spec file not found"),
        (["spec", "show", "spinenet-49", "--format", "yaml"], "invalid choice: 'yaml'"),
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
    # SpineNet-49, then blocks that feed no endpoint, up to n blocks (the shape of issue 15's 8,017-block file).
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
    code, out, _ = run(capsys, "spec", "show", str(path))
    assert code == 0 and SPINENET_49.key in out
    assert out.strip().splitlines()[-1] == "in search space(s): spinenet49"
