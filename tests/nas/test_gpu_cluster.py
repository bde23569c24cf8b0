"""The GPU path as far as a CPU machine checks it: the `gpu` extra, the cluster file that installs it, its record."""

from __future__ import annotations

import copy
import json
import os
import re
import tomllib

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER = os.path.join(ROOT, "scripts", "cluster", "aws-gpu.yaml")


def _pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        return tomllib.load(fh)


def test_the_gpu_extra_pins_the_tensorflow_of_the_base_install():
    project = _pyproject()["project"]
    [base] = [d for d in project["dependencies"] if re.match(r"tensorflow\b(?!-)", d)]
    [extra] = project["optional-dependencies"]["gpu"]
    assert extra == base.replace("tensorflow", "tensorflow[and-cuda]", 1) == "tensorflow[and-cuda]==2.20.0"


def test_the_resolution_record_is_of_that_extra():
    with open(os.path.join(ROOT, "scripts", "bench", "results", "gpu-extra.json"), encoding="utf-8") as fh:
        record = json.load(fh)
    assert record["requirement"] == _pyproject()["project"]["optional-dependencies"]["gpu"][0]
    names = {p["package"] for p in record["packages"]}
    assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12"} <= names
    assert record["total_bytes"] == sum(p["size_bytes"] for p in record["packages"] if p["size_bytes"])
    assert 1e9 < record["total_bytes"] < 1e10


@pytest.mark.slow
def test_the_cluster_file_is_valid_for_ray_and_installs_cuda_on_gpu_workers_only():
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    with open(CLUSTER, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    validate_config(fillout_defaults(copy.deepcopy(cfg)))  # Ray 2.60's own schema
    gpu = cfg["available_node_types"]["gpu-worker"]
    assert gpu["resources"]["GPU"] == 1
    # A node type's worker_setup_commands replace setup_commands on its nodes (Ray's schema says so).
    assert any('pip install -e ".[gpu]"' in c for c in gpu["worker_setup_commands"])
    # The head keeps the global ones: the project without CUDA.
    assert "worker_setup_commands" not in cfg["available_node_types"]["head"]
    assert any("pip install -e ." in c for c in cfg["setup_commands"])
    assert not any("[gpu]" in c for c in cfg["setup_commands"] + cfg.get("head_setup_commands", []))
    # The presets that run there ask for what a worker has.
    from nas.config.presets import get_preset

    for name in ("paper", "vertex-gpu"):
        assert get_preset(name).search.gpus_per_trial <= gpu["resources"]["GPU"], name
