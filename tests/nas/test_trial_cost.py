"""The trial-cost model (`nas.export.cost`) and `spinenas proxy cost`, TF-free."""

from __future__ import annotations

import json
import os

import pytest

from nas.export import cost as trial_cost
from nas.cli.commands.common import load_config
from search_space import SPINENET_49
from tests.nas.helpers import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_predict_counts_training_and_evaluation_flops_at_the_device_rate():
    device = trial_cost.Device(name="x", label="x", train_flops_per_s={"float32": 1e9}, setup_s=10.0,
                               first_eval_s=2.0, host_s_per_eval_image=0.01, measured=True, source="hand")
    c = trial_cost.predict(device, flops=1_000_000, batch_size=4, train_steps=100, eval_images=50, evaluations=2)
    assert c.setup_s == 10.0
    assert c.train_s == pytest.approx(100 * 6 * 1e6 * 4 / 1e9)  # 2 FLOPs a multiply-add, 3 passes
    assert c.eval_s == pytest.approx(2 * 50 * (2e6 / 1e9 + 0.01) + 2.0)
    assert c.total_s == pytest.approx(c.setup_s + c.train_s + c.eval_s)
    two = trial_cost.predict(device, flops=1_000_000, batch_size=4, train_steps=100, eval_images=50, evaluations=2,
                             gpus=2)
    assert two.train_s == pytest.approx(c.train_s / 2)
    with pytest.raises(ValueError):
        trial_cost.predict(device, flops=0, batch_size=4, train_steps=1, eval_images=1, evaluations=1)


def test_predict_adds_the_step_overhead_to_every_step():
    device = trial_cost.Device(name="x", label="x", train_flops_per_s={"float32": 1e9}, setup_s=0.0,
                               first_eval_s=0.0, host_s_per_eval_image=0.0, measured=True, source="hand",
                               step_overhead_s=0.05)
    c = trial_cost.predict(device, flops=1_000_000, batch_size=4, train_steps=100, eval_images=50, evaluations=1)
    assert c.train_s == pytest.approx(100 * (0.05 + 6 * 1e6 * 4 / 1e9))
    assert c.eval_s == pytest.approx(50 * 2e6 / 1e9)  # forward passes at the rate, no per-step overhead


def test_fit_steps_recovers_a_line_and_falls_back_to_the_origin():
    assert trial_cost.fit_steps([(4, 0.1 + 4 * 0.02), (8, 0.1 + 8 * 0.02), (16, 0.1 + 16 * 0.02)]) == pytest.approx(
        (0.1, 0.02))
    assert trial_cost.fit_steps([(8, 0.2)]) == pytest.approx((0.0, 0.025))
    # A negative overhead is not physical: the line through the origin instead.
    assert trial_cost.fit_steps([(4, 0.05), (8, 0.2)]) == pytest.approx((0.0, (4 * 0.05 + 8 * 0.2) / 80))
    assert trial_cost.fit_steps([(8, 0.2), (8, 0.4)]) == pytest.approx((0.0, 0.0375))  # one batch: no line
    assert trial_cost.fit_steps([(4, 0.3), (8, 0.2)]) == pytest.approx((0.0, (4 * 0.3 + 8 * 0.2) / 80))  # slope < 0
    for bad in ([], [(0, 0.1)], [(8, float("nan"))], [(8, -1.0)]):
        with pytest.raises(ValueError):
            trial_cost.fit_steps(bad)


@pytest.mark.parametrize("points", [[(8, 0.25)], [(4, 0.16), (8, 0.25), (16, 0.43)]])
def test_a_fit_reproduces_the_trial_it_was_fitted_on(points):
    flops, setup, first, later = 214_951_471, 37.0, 13.6, 4.0
    fitted = trial_cost.fit_cpu(flops=flops, batch_size=8, step_points=points, setup_s=setup, first_eval_s=first,
                                later_eval_s=later, eval_images=300, source="test")
    overhead, per_image = trial_cost.fit_steps(points)
    assert fitted.step_overhead_s == pytest.approx(overhead)
    c = trial_cost.predict(fitted, flops=flops, batch_size=8, train_steps=200, eval_images=300, evaluations=2)
    assert c.train_s == pytest.approx(200 * (overhead + 8 * per_image))
    assert c.eval_s == pytest.approx(first + later)
    assert c.setup_s == setup
    if len(points) > 1:  # four times the pixels: the FLOPs four times, the overhead once
        big = trial_cost.predict(fitted, flops=4 * flops, batch_size=8, train_steps=1, eval_images=0, evaluations=0)
        assert big.train_s == pytest.approx(overhead + 4 * 8 * per_image)


def test_the_vertex_figures_are_spinenet_49s_and_the_v100_row_reproduces_them():
    v = trial_cost.VERTEX_512
    cfg = load_config("vertex-gpu", ["proxy.image_size=512", "proxy.filter_size_scale=0.5"])
    assert cfg.proxy.cost(SPINENET_49.canonical(), 91).flops == v["flops"]
    c = trial_cost.predict(trial_cost.DEVICES["v100"], flops=v["flops"], batch_size=v["batch_size"],
                           train_steps=v["train_steps"], eval_images=v["eval_images"], evaluations=1,
                           precision="float16", gpus=v["gpus"])
    assert c.train_s == pytest.approx(v["trial_s"])  # by construction: the utilization comes from this figure
    assert 0.01 < trial_cost.GPU_UTILIZATION < 0.1
    assert not trial_cost.DEVICES["v100"].measured and trial_cost.DEVICES["cpu"].measured


def test_the_cpu_constants_are_the_recorded_fit():
    with open(os.path.join(ROOT, "scripts", "bench", "results", "trial_cost.json"), encoding="utf-8") as fh:
        fit = json.load(fh)["fit"]
    cpu = trial_cost.CPU
    assert cpu.train_flops_per_s["float32"] == pytest.approx(fit["train_flops_per_s"], rel=0.01)
    assert cpu.step_overhead_s == pytest.approx(fit["step_overhead_s"], abs=0.002)
    assert cpu.setup_s == pytest.approx(fit["setup_s"], abs=0.5)
    assert cpu.first_eval_s == pytest.approx(fit["first_eval_s"], abs=0.5)
    assert cpu.host_s_per_eval_image == pytest.approx(fit["host_s_per_eval_image"], abs=5e-4)


def test_proxy_cost_json_decides_auto_per_device(capsys):
    code, out, err = run_cli(capsys, "proxy", "cost", "--preset", "vertex-gpu", "--json")
    assert code == 0, err
    rows = {r["device"]: r for r in json.loads(out)["rows"]}
    assert set(rows) == {"cpu", "v100", "a10g", "a100", "h100"}
    assert {k: r["precision"] for k, r in rows.items()} == {"cpu": "float32", "v100": "float16",
                                                             "a10g": "bfloat16", "a100": "bfloat16",
                                                             "h100": "bfloat16"}
    assert rows["cpu"]["measured"] and not rows["v100"]["measured"]
    assert rows["a100"]["trial_s"] < rows["v100"]["trial_s"] < rows["cpu"]["trial_s"]
    v = rows["v100"]
    assert v["search_device_hours"] == pytest.approx(v["trial_hours"] * 1000)  # 1,000 trials, one GPU each
    code, out, _ = run_cli(capsys, "proxy", "cost", "--preset", "demo", "--device", "cpu")
    assert code == 0 and "measured" in out and "float32" in out


@pytest.mark.parametrize("argv, message", [
    (["--preset", "nope"], "unknown preset"),
    (["--gpus", "0"], "--gpus must be at least 1"),
    (["--arch", "nope.json"], "nope.json"),
    (["--set", "proxy.image_size=100"], "image_size must be a multiple of 128"),
])
def test_bad_proxy_cost_input_is_one_line(argv, message, capsys):
    code, _, err = run_cli(capsys, "proxy", "cost", *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], lines


def test_proxy_cost_counts_the_schedulers_rungs_as_evaluations(capsys):
    def eval_s(*argv):
        code, out, err = run_cli(capsys, "proxy", "cost", "--device", "cpu", "--json", *argv)
        assert code == 0, err
        return json.loads(out)["rows"][0]["eval_s"]

    plain = eval_s()
    with_rungs = eval_s("--set", "scheduler.type=asha", "--set", "scheduler.asha.rungs=[200,400]")
    per_eval = 300 * (2 * 214_951_471 / trial_cost.CPU.rate("float32") + trial_cost.CPU.host_s_per_eval_image)
    assert with_rungs == pytest.approx(plain + 2 * per_eval)


def _bench_module():
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("bench_trial_cost", os.path.join(ROOT, "scripts", "bench",
                                                                                   "trial_cost.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_splits_a_run_into_the_models_parts_and_takes_medians_over_rounds():
    bench = _bench_module()
    run = {"import_s": 5.0, "build_s": 10.0, "trace_s": 20.0, "step_s": 0.3, "train_s": 80.0, "eval_s": 4.0,
           "wall_s": 120.0, "release_s": 0.5,
           "curve": [{"step": 100, "eval_s": 15.0}, {"step": 150, "loss": 1.0}, {"step": 200, "eval_s": 4.0}]}
    parts = bench.measured_parts(run)
    assert parts["setup_s"] == 35.0 and (parts["first_eval_s"], parts["later_eval_s"]) == (15.0, 4.0)
    assert parts["evaluations"] == 2 and parts["other_s"] == pytest.approx(120.0 - (5 + 10 + 80 + 15 + 4))
    assert parts["release_s"] == 0.5
    stalled = {**parts, "trial_s": 170.0, "other_s": 56.0, "release_s": None}
    third = {**parts, "trial_s": 118.0}
    m = bench.median_parts([parts, stalled, third])
    assert m["trial_s"] == 120.0 and m["other_s"] == parts["other_s"]  # a stall in one round of three: ignored
    assert m["release_s"] == 0.5 and m["evaluations"] == 2


def test_the_benchmark_fits_and_checks_from_its_runs(tmp_path, monkeypatch, capsys):
    """Its whole flow on made-up runs (no TensorFlow): a machine whose steps are exactly 0.1 s + 0.02 s an image
    at SpineNet-49's FLOPs, scaled by FLOPs, gives that line back and predicts every run within a few percent (the
    setup and the untimed second are what the model leaves out)."""
    bench = _bench_module()
    calls = []
    base = load_config("demo", []).proxy.cost(SPINENET_49.canonical(), 80).flops

    def fake_run(arch, *, steps, image_size, batch_size=8, mid_eval=True):
        calls.append((arch.key, steps, image_size, batch_size, mid_eval))
        flops = load_config("demo", [f"proxy.image_size={image_size}"]).proxy.cost(arch, 80).flops
        scale = flops / base  # FLOPs against SpineNet-49's at 128 px
        step = 0.1 + 0.02 * batch_size * scale
        later = 300 * (2 * 0.02 / 6 * scale + 0.003)  # forward passes at the line's rate, 3 ms an image besides
        evals = [{"step": steps // 2, "eval_s": later + 8.0}] if mid_eval else []
        evals.append({"step": steps, "eval_s": later})
        train = 20.0 + (steps - 1) * step
        return {"flops": flops, "import_s": 5.0, "build_s": 10.0, "trace_s": 20.0, "step_s": step, "train_s": train,
                "eval_s": later, "wall_s": 15.0 + train + sum(e["eval_s"] for e in evals) + 1.0, "release_s": 0.5,
                "curve": evals, "ap": 0.1}

    monkeypatch.setattr(bench, "run_arch", fake_run)
    out = tmp_path / "tc.json"
    assert bench.main(["--steps", "20", "--fit-steps", "10", "--random", "1", "--rounds", "2", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["fit"]["step_overhead_s"] == pytest.approx(0.1) and d["rounds"] == 2
    assert d["fit"]["train_flops_per_s"] == pytest.approx(6 * base / 0.02)
    assert d["fit"]["host_s_per_eval_image"] == pytest.approx(0.003) and d["fit"]["first_eval_s"] == pytest.approx(8)
    assert [f["batch_size"] for f in d["fit_runs"]] == [4, 16] and all(len(f["rounds"]) == 2 for f in d["fit_runs"])
    assert [r["step_error"] for r in d["runs"]] == pytest.approx([0.0] * 4, abs=1e-9)  # 128 px and 256 px alike
    assert all(abs(r["error"]) < 0.05 for r in d["runs"]) and d["target_met"]
    assert d["runs"][2]["one_rate_step_error"] > 0.3  # without the overhead, 256 px is overestimated
    # One warm-up, then per round: two fit runs without a mid evaluation and four checked runs with one.
    assert len(calls) == 1 + 2 * (2 + 4) and calls[0][1] == 2 and calls[1][4] is False and calls[3][4] is True
    assert "held-out within 20%: True" in capsys.readouterr().out
