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


@pytest.fixture(autouse=True)
def _no_default_database(tmp_path, monkeypatch):
    """`proxy cost` reads the default database when there is one: none here, unless a test gives its --db."""
    monkeypatch.setenv("SPINENAS_DB", str(tmp_path / "no-such.db"))


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
    with_rungs = eval_s("--set", "scheduler.type=asha", "--set", "scheduler.asha.rungs=[100,200]")
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


# ------------------------------------------------------------------------------------- fitted on stored trials
# A made-up machine: its steps are the committed model's times SPEED, its fresh setup FRESH_S, a warm worker's WARM_S,
# a later evaluation LATER_S a image besides its forward pass and a first one FIRST_EXTRA_S more; 300 images scored.
SPEED, FRESH_S, WARM_S, HOST_S, FIRST_EXTRA_S, IMAGES = 1.3, 40.0, 20.0, 0.01, 9.0, 300
CONFIG = "proxy:\n  data:\n    kind: synth\n    val_images: 300\n  eval_images: 0\n"


def _machine_trial(flops, *, batch=8, steps=800, warm=False, evaluations=3, cpu="this", host=None, speed=SPEED):
    """(metrics, reports, wall_s, host) of one trial of the made-up machine, as the trainer and the driver store it."""
    from proxy_task.devices import cpu_model_id

    kind = trial_cost.CpuKind.this_machine()
    step = speed * trial_cost.CPU.step_s(flops=flops, batch_size=batch)
    later = IMAGES * (2.0 * flops * speed / trial_cost.CPU.rate("float32") + HOST_S)
    evals = [later + (0.0 if warm else FIRST_EXTRA_S)] + [later] * (evaluations - 1)
    setup = WARM_S if warm else FRESH_S
    metrics = {"worker_trial": 2.0 if warm else 1.0, "import_s": 0.0 if warm else 5.0, "build_s": setup / 2,
               "trace_s": setup / 2 - (0.0 if warm else 5.0), "steps": float(steps), "step_s": step,
               "images_per_s": batch / step, "gflops_per_s": 6.0 * flops * batch / step / 1e9, "train_s": steps * step,
               "eval_s": later, "ap": 0.1, "eval_images": float(IMAGES)}
    if cpu == "this":
        metrics.update(cpu_model_id=float(cpu_model_id(kind.model or "x")), cpus=float(kind.cpus))
    elif cpu is not None:  # another CPU model
        metrics.update(cpu_model_id=float(cpu_model_id(cpu)), cpus=float(kind.cpus))
    marks = [steps * (i + 1) // evaluations for i in range(evaluations)]
    reports = [(s, {"loss": 1.0, "eval_s": e, "elapsed_s": setup + s * step + sum(evals[:i + 1])})
               for i, (s, e) in enumerate(zip(marks, evals))]
    wall = setup + steps * step + sum(evals)
    return metrics, reports, wall, host or kind.host


def _store(path, trials, *, config=CONFIG, status="completed", precision="float32", arch_flops=None):
    """A results database of one search holding `trials` (`_machine_trial`'s), each of a random spinenet49 arch
    (whose FLOPs are `arch_flops`' when given)."""
    import numpy as np

    from results_db import NewTrial, ResultStore
    from search_space import SearchSpace

    space, rng = SearchSpace("spinenet49"), np.random.default_rng(0)
    store = ResultStore(f"sqlite:///{path}")
    store.create_search("s", config=config, seed=0, controller="random", family="spinenet49")
    decisions = [space.random(rng) for _ in trials]
    keys = store.register_archs([space.decode(d) for d in decisions], family="spinenet49")
    ids = store.add_trials("s", [NewTrial(k, d) for k, d in zip(keys, decisions)], status="queued")
    for i, (tid, (metrics, reports, wall, host)) in enumerate(zip(ids, trials)):
        store.start_trial(tid, host=host)
        store.finish_trial(tid, status=status, reward=0.1, metrics=metrics, wall_s=wall, host=host,
                           precision=precision, reports=reports, flops=arch_flops[i] if arch_flops else None)
    store.close()
    return str(path)


FLOPS = [214_951_471, 205_000_000, 225_000_000, 210_000_000, 220_000_000, 216_000_000]


def _read(db, **kw):
    from results_db.reader import ResultReader

    with ResultReader(db) as reader:
        return trial_cost.read_measured_trials(reader, **kw)


def test_a_fit_on_stored_trials_gives_back_the_machine_that_ran_them(tmp_path):
    trials = [_machine_trial(f, warm=i % 3 == 2) for i, f in enumerate(FLOPS)]
    db = _store(tmp_path / "r.db", trials)
    measured = _read(db, kind=trial_cost.CpuKind.this_machine())
    assert [m.flops for m in measured] == pytest.approx(FLOPS, abs=1) and {m.batch_size for m in measured} == {8}
    assert [m.warm for m in measured] == [False, False, True, False, False, True]
    assert all(len(m.eval_s) == 3 and m.eval_images == IMAGES for m in measured)
    fit = trial_cost.fit_measured(measured, source="test")
    cpu, d = trial_cost.CPU, fit.device
    assert (fit.steps, fit.trials, fit.setup_trials, fit.eval_trials) == ("scaled", 6, 4, 6)
    assert fit.speed == pytest.approx(SPEED)
    assert d.step_overhead_s == pytest.approx(SPEED * cpu.step_overhead_s)  # the committed line, scaled
    assert d.rate("float32") == pytest.approx(cpu.rate("float32") / SPEED)
    assert (d.setup_s, d.first_eval_s, d.host_s_per_eval_image) == pytest.approx((FRESH_S, FIRST_EXTRA_S, HOST_S))
    assert (fit.warm_device.setup_s, fit.warm_device.first_eval_s) == pytest.approx((WARM_S, 0.0))
    for m in measured:  # every trial's seconds, as the made-up machine spent them
        assert trial_cost.predict_measured(fit.device_for(m), m).total_s == pytest.approx(m.wall_s)
        assert m.reported_s == pytest.approx(m.wall_s)


def test_a_fit_takes_the_line_from_the_trials_when_their_work_spans_enough(tmp_path):
    # Batches 4, 8 and 16 of a machine 0.1 s a step + 0.02 s an image at the smallest FLOPs: its own line back.
    flops = 200_000_000
    trials = []
    for batch in (4, 8, 16):
        m, r, wall, host = _machine_trial(flops, batch=batch)
        step = 0.1 + 0.02 * batch
        m.update(step_s=step, images_per_s=batch / step, gflops_per_s=6.0 * flops * batch / step / 1e9)
        trials.append((m, r, wall, host))
    fit = trial_cost.fit_measured(_read(_store(tmp_path / "r.db", trials)), source="test")
    assert fit.steps == "line"
    assert fit.device.step_overhead_s == pytest.approx(0.1)
    assert fit.device.rate("float32") == pytest.approx(6.0 * flops / 0.02)


def test_only_timed_cpu_trainings_of_this_kind_are_read(tmp_path):
    from proxy_task.devices import cpu_model_id

    kind = trial_cost.CpuKind.this_machine()
    surrogate = ({"ap": 0.2, "distance": 1.0, "steps": 800.0}, [], 1.0, kind.host)
    on_gpu = _machine_trial(FLOPS[0])
    on_gpu[0]["gpus"] = 1.0
    db = _store(tmp_path / "r.db", [_machine_trial(FLOPS[1]), surrogate, on_gpu,
                                    _machine_trial(FLOPS[2], cpu="Another CPU 9000"),
                                    _machine_trial(FLOPS[3], cpu=None),  # from before trials recorded their CPU
                                    _machine_trial(FLOPS[4], cpu=None, host="elsewhere")])
    assert len(_read(db)) == 4  # the surrogate's and the GPU's are not CPU trainings
    matched = _read(db, kind=kind)
    assert [kind.match(m) for m in matched] == ["cpu", "host"]
    assert [m.cpu_model_id for m in matched] == [cpu_model_id(kind.model or "x"), None]
    assert [kind.match(m, any_host=True) for m in _read(db, kind=kind, any_host=True)] == ["cpu", "host", "any"]
    assert len(_read(db, kind=kind, newest=1)) == 1
    mixed = _store(tmp_path / "bf16.db", [_machine_trial(FLOPS[0])], precision="bfloat16")
    assert _read(mixed) == []


def test_a_trial_without_its_flop_rate_takes_its_archs_flops(tmp_path):
    trials = [_machine_trial(f) for f in FLOPS[:2]]
    for m, *_ in trials:
        del m["gflops_per_s"]
    assert [m.flops for m in _read(_store(tmp_path / "r.db", trials, arch_flops=FLOPS[:2]))] == FLOPS[:2]
    assert _read(_store(tmp_path / "none.db", trials)) == []  # no FLOPs at all: nothing to fit a rate on


def test_old_trials_take_their_image_count_from_the_stored_config(tmp_path):
    trials = [_machine_trial(f) for f in FLOPS[:2]]
    for m, *_ in trials:
        del m["eval_images"]
    db = _store(tmp_path / "r.db", trials, config=CONFIG.replace("eval_images: 0", "eval_images: 120"))
    assert {m.eval_images for m in _read(db)} == {120}
    made = CONFIG.replace("kind: synth", "kind: dir")  # a made split's count is its dataset's, not the config's
    assert {m.eval_images for m in _read(_store(tmp_path / "dir.db", trials, config=made))} == {None}


def _cost(capsys, *argv):
    code, out, err = run_cli(capsys, "proxy", "cost", "--device", "cpu", *argv)
    assert code == 0, err
    return out


def test_proxy_cost_fits_the_cpu_row_on_this_machines_trials(tmp_path, capsys):
    db = _store(tmp_path / "r.db", [_machine_trial(f, warm=i % 3 == 2) for i, f in enumerate(FLOPS)])
    label = trial_cost.CpuKind.this_machine().label
    [row] = json.loads(_cost(capsys, "--db", db, "--json"))["rows"]
    assert row["source"] == f"fitted on 6 trials of {label} in {db}"
    assert row["fit"]["trials"] == 6 and row["fit"]["needed"] == trial_cost.MIN_FIT_TRIALS
    assert row["fit"]["matched"] == {"cpu": 6, "host": 0, "any": 0} and row["fit"]["speed"] == pytest.approx(SPEED)
    [committed] = json.loads(_cost(capsys, "--db", str(tmp_path / "none.db"), "--json"))["rows"]
    assert row["train_s"] == pytest.approx(SPEED * committed["train_s"])  # the demo's 800 steps at the measured speed
    assert row["setup_s"] == pytest.approx(FRESH_S)
    assert f"cpu: fitted on 6 trials of {label} in {db}" in _cost(capsys, "--db", db)


def test_proxy_cost_names_the_host_for_trials_that_record_no_cpu(tmp_path, capsys):
    host = trial_cost.CpuKind.this_machine().host
    db = _store(tmp_path / "r.db", [_machine_trial(f, cpu=None) for f in FLOPS])
    [row] = json.loads(_cost(capsys, "--db", db, "--json"))["rows"]
    assert row["source"] == f"fitted on 6 trials of host {host} (no CPU model recorded) in {db}"
    elsewhere = _store(tmp_path / "e.db", [_machine_trial(f, cpu=None, host="elsewhere") for f in FLOPS])
    [row] = json.loads(_cost(capsys, "--db", elsewhere, "--json"))["rows"]
    assert row["source"] == trial_cost.CPU.source and row["fit"]["trials"] == 0
    [row] = json.loads(_cost(capsys, "--db", elsewhere, "--any-host", "--json"))["rows"]
    assert row["source"] == f"fitted on 6 trials of any host (no CPU model recorded) in {elsewhere}"


@pytest.mark.parametrize("trials, why", [
    ([_machine_trial(f) for f in FLOPS[:trial_cost.MIN_FIT_TRIALS - 1]],
     f"{trial_cost.MIN_FIT_TRIALS - 1} trials of {{label}} in {{db}}, {trial_cost.MIN_FIT_TRIALS} needed"),
    ([_machine_trial(f, cpu="Another CPU 9000") for f in FLOPS],
     f"0 trials of {{label}} in {{db}}, {trial_cost.MIN_FIT_TRIALS} needed"),
    (None, "no database at {db}"),
])
def test_proxy_cost_falls_back_to_the_committed_fit(trials, why, tmp_path, capsys):
    db = str(tmp_path / "r.db") if trials is None else _store(tmp_path / "r.db", trials)
    [row] = json.loads(_cost(capsys, "--db", db, "--json"))["rows"]
    assert row["source"] == "committed fit (scripts/bench/results/trial_cost.json: SpineNet-49, 128 px)"
    assert row["setup_s"] == trial_cost.CPU.setup_s
    expected = why.format(label=trial_cost.CpuKind.this_machine().label, db=db)
    assert row["fit"]["why"] == expected
    assert f"cpu: {row['source']} ({expected})" in _cost(capsys, "--db", db)
    if trials is None:
        assert not os.path.exists(db)  # a missing database is not made


def test_proxy_cost_without_db_reads_the_default_database(tmp_path, monkeypatch, capsys):
    db = _store(tmp_path / "r.db", [_machine_trial(f) for f in FLOPS])
    monkeypatch.setenv("SPINENAS_DB", db)
    [row] = json.loads(_cost(capsys, "--json"))["rows"]
    assert row["fit"]["trials"] == 6 and row["source"].endswith(f" in {db}")


def test_proxy_cost_on_a_database_it_cannot_read_is_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    for db, message in ((str(tmp_path), "is not a database file"), (str(junk), "cannot open database"),
                        ("file:x.db", "SQLite URI")):
        code, _, err = run_cli(capsys, "proxy", "cost", "--db", db)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], lines


def test_the_held_out_benchmark_fits_part_of_each_database_and_predicts_the_rest(tmp_path, capsys):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("bench_held_out", os.path.join(ROOT, "scripts", "bench",
                                                                                 "trial_cost_held_out.py"))
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    one = _store(tmp_path / "a.db", [_machine_trial(f, warm=i % 3 == 2) for i, f in enumerate(FLOPS)])
    slower = _store(tmp_path / "b.db", [_machine_trial(f, speed=1.6) for f in FLOPS])
    out = tmp_path / "ho.json"
    assert bench.main([one, slower, "--splits", "3", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert {"command", "commit", "machine", "date_utc"} <= set(d) and d["machine"]["cpu"] is not None
    a, b = d["databases"]
    assert a["trials"] == 6 and a["time_split"]["fit_trial_ids"] == [1, 2, 3]
    assert [r["trial_id"] for r in a["time_split"]["held_out"]] == [4, 5, 6]
    assert all(abs(r["error"]) < 1e-9 for r in a["time_split"]["held_out"] + b["time_split"]["held_out"])
    assert a["time_split"]["target_met"] and d["target_met"] and set(a["trials_needed"]) == {"1", "2", "3", "5"}
    assert a["random_halves"]["max_abs"] < 1e-9
    cross = {(x["fit_on"], x["predicted"]): x for x in d["across"]}
    assert len(cross) == 2 and all(x["fitted"]["median_abs"] > 0.1 for x in cross.values())  # another speed
    assert not os.path.exists(one + "-shm")  # read from a copy: nothing made beside the database
    assert "held-out within 20% on every trial of each time split: True" in capsys.readouterr().out
