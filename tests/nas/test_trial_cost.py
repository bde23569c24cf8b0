"""The trial-cost model (`nas.trial_cost`) and `spinenas proxy cost`, TF-free."""

from __future__ import annotations

import json
import os

import pytest

from nas import trial_cost
from nas.commands.common import load_config
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
                               step_overhead_s=0.05, eval_flops_per_s={"float32": 5e8})
    c = trial_cost.predict(device, flops=1_000_000, batch_size=4, train_steps=100, eval_images=50, evaluations=1)
    assert c.train_s == pytest.approx(100 * (0.05 + 6 * 1e6 * 4 / 1e9))
    assert c.eval_s == pytest.approx(50 * 2e6 / 5e8)  # the evaluation's own rate, no overhead


def test_fit_steps_recovers_a_line_and_falls_back_to_the_origin():
    assert trial_cost.fit_steps([(4, 0.1 + 4 * 0.02), (8, 0.1 + 8 * 0.02), (16, 0.1 + 16 * 0.02)]) == pytest.approx(
        (0.1, 0.02))
    assert trial_cost.fit_steps([(8, 0.2)]) == pytest.approx((0.0, 0.025))
    # A negative overhead is not physical: the line through the origin instead.
    assert trial_cost.fit_steps([(4, 0.05), (8, 0.2)]) == pytest.approx((0.0, (4 * 0.05 + 8 * 0.2) / 80))
    with pytest.raises(ValueError):
        trial_cost.fit_steps([(0, 0.1)])


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
    assert cpu.eval_rate("float32") == pytest.approx(fit["eval_flops_per_s"], rel=0.01)
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
    per_eval = 300 * (2 * 214_951_471 / trial_cost.CPU.eval_rate("float32") + trial_cost.CPU.host_s_per_eval_image)
    assert with_rungs == pytest.approx(plain + 2 * per_eval)
