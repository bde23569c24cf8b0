"""A trial's devices without a GPU: the precision rule, GPU memory shares, and the settings that depend on them."""

from __future__ import annotations

import os
import sqlite3

import pytest

from nas.config.schema import NasConfig
from nas.config.codec import resolve
from nas.engine.fingerprint import fingerprint
from nas.config.presets import get_preset
from proxy_task.config import ProxyConfig
from proxy_task.devices import choose_precision, gpu_memory_limits, keras_policy, parse_gpu_totals

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize(
    "gpus, expected",
    [
        ([], "float32"),  # a CPU trial
        ([(7, 0)], "float16"),  # V100
        ([(7, 5)], "float16"),  # T4
        ([(8, 0)], "bfloat16"),  # A100
        ([(8, 6)], "bfloat16"),  # A10G
        ([(8, 9)], "bfloat16"),  # L4
        ([(9, 0)], "bfloat16"),  # H100
        ([(6, 0)], "float32"),  # P100: no tensor cores
        ([(3, 7)], "float32"),  # K80
        ([(8, 0), (7, 0)], "float16"),  # mixed GPUs: what the oldest supports
        ([None], "float32"),  # a GPU whose capability TensorFlow does not report
    ],
)
def test_auto_follows_the_tensor_cores(gpus, expected):
    assert choose_precision("auto", gpus) == expected


@pytest.mark.parametrize("setting", ["float32", "float16", "bfloat16"])
def test_an_explicit_precision_is_kept_on_any_device(setting):
    for gpus in ([], [(7, 0)], [(8, 0)]):
        assert choose_precision(setting, gpus) == setting
    assert keras_policy(setting) == {"float32": "float32", "float16": "mixed_float16",
                                     "bfloat16": "mixed_bfloat16"}[setting]


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        choose_precision("half", [])
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        ProxyConfig(mixed_precision="half")


def test_mixed_precision_needs_an_nms_that_takes_its_scores():
    with pytest.raises(ValueError, match="needs nms_version 'v2'"):
        ProxyConfig(mixed_precision="float16")  # the default NMS is 'batched'
    for setting in ("auto", "float16", "bfloat16"):
        assert ProxyConfig(mixed_precision=setting, nms_version="v2").mixed_precision == setting


def test_gpu_memory_is_capped_only_for_a_fraction_of_a_gpu():
    assert gpu_memory_limits(0, [16000]) == [None]  # no share given: memory growth
    assert gpu_memory_limits(1, [16000, 16000]) == [None, None]
    # Each process's CUDA context (CONTEXT_RESERVE_MB) is left out of the shares.
    assert gpu_memory_limits(0.5, [16000, None]) == [(16000 - 2 * 512) // 2, None]
    assert gpu_memory_limits(0.25, [24564]) == [(24564 - 4 * 512) // 4]
    with pytest.raises(ValueError):
        gpu_memory_limits(-1, [16000])


def test_gpu_totals_follow_cuda_visible_devices():
    csv = "0, 16160\n1, 16160\n2, 40960\n"
    assert parse_gpu_totals(csv, None, 3) == [16160, 16160, 40960]
    assert parse_gpu_totals(csv, "2", 1) == [40960]  # Ray gives the trial GPU 2: TensorFlow sees it as GPU 0
    assert parse_gpu_totals(csv, "2,0", 2) == [40960, 16160]
    assert parse_gpu_totals("", None, 2) == [None, None]  # no nvidia-smi output
    assert parse_gpu_totals("garbage\n", "0", 1) == [None]


def test_the_gpu_presets_decide_in_the_trial_and_the_cpu_demo_stays_float32():
    assert get_preset("demo").proxy.mixed_precision == "float32"
    for name in ("paper", "vertex-gpu"):
        cfg = get_preset(name)
        assert cfg.proxy.mixed_precision == "auto" and cfg.proxy.nms_version == "v2", name
        # One GPU per trial, as the trainer uses and the cluster's workers have (scripts/cluster/aws-gpu.yaml).
        assert cfg.search.gpus_per_trial == 1.0, name


def test_float32_keeps_every_stored_fingerprint_and_another_precision_gets_its_own():
    # The (800-step) demo's fingerprint as stored by a search before `proxy.mixed_precision` existed
    # (results/es-pool.db).
    demo = resolve(NasConfig, get_preset("demo"), ["proxy.train_steps=800"])
    con = sqlite3.connect(f"file:{os.path.join(ROOT, 'scripts/bench/results/es-pool.db')}?mode=ro", uri=True)
    try:
        [(stored,)] = con.execute("SELECT fingerprint FROM searches WHERE name = 'es-pool'").fetchall()
    finally:
        con.close()
    assert fingerprint(demo) == stored
    v2 = resolve(NasConfig, demo, ["proxy.nms_version=v2"])
    prints = {fingerprint(resolve(NasConfig, v2, [f"proxy.mixed_precision={p}"])) for p in ("auto", "float16",
                                                                                          "bfloat16")}
    assert len(prints) == 3 and fingerprint(v2) not in prints


def test_more_than_one_gpu_per_trial_is_one_line_before_anything_exists(tmp_path, monkeypatch, capsys):
    from tests.nas.helpers import run_cli

    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "search", "--preset", "vertex-gpu", "--gpus-per-trial", "2", "--name", "g",
                           "--db", str(tmp_path / "r.db"), "--set", "proxy.data.path=/nonexistent")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "a trial trains on one GPU" in lines[0], lines
    assert list(tmp_path.iterdir()) == []


def test_a_trial_records_its_cpu_as_numbers_a_float_holds_exactly(monkeypatch):
    from proxy_task import devices

    metrics = devices.cpu_metrics()
    assert metrics["cpus"] == devices.usable_cpus() >= 1
    model = devices.cpu_model()
    if model:  # the id is the model's, exactly, as the store's JSON float keeps it
        assert int(metrics["cpu_model_id"]) == devices.cpu_model_id(model) < 2**48
        assert float(devices.cpu_model_id(model)) == devices.cpu_model_id(model)
    assert devices.cpu_model_id("AMD EPYC") != devices.cpu_model_id("AMD EPYC 7B13")
    monkeypatch.setattr(devices, "cpu_model", lambda: "")
    assert "cpu_model_id" not in devices.cpu_metrics()  # an unknown model is not recorded as the id of ''
