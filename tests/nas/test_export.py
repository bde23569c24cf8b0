"""`spinenas export` and `spinenas train`: Model Garden builds and trains what we export."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from search_space import SPINENET_49, SearchSpace

pytestmark = [pytest.mark.tf, pytest.mark.slow]


def _spinenas(*argv, cwd=None):
    return subprocess.run([sys.executable, "-m", "nas.cli", *argv], capture_output=True, text=True, cwd=cwd)


def test_spinenet49_at_scale_49_matches_model_gardens_own_model(tmp_path):
    from official.core import exp_factory

    from nas.export.modelgarden import build_config, measure

    ours = build_config(SPINENET_49, scale="49", image_size=256, num_classes=5)
    theirs = exp_factory.get_exp_config("retinanet_spinenet_coco")
    theirs.override({"task": {"model": {"input_size": [256, 256, 3], "num_classes": 5}}}, is_strict=True)
    p_ours, f_ours = measure(ours)
    p_theirs, f_theirs = measure(theirs)
    assert p_ours == p_theirs
    assert f_ours == f_theirs > 0


def test_export_writes_the_four_files_and_the_yaml_loads_strictly(tmp_path):
    out = tmp_path / "out"
    proc = _spinenas("export", "spinenet-49", "--out", str(out), "--name", "sn49", "--scale", "49S",
                     "--image-size", "256", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    for key in ("params", "flops", "image_size", "scale", "files"):
        assert key in summary
    assert summary["scale"] == "49S" and summary["image_size"] == 256 and summary["params"] > 1_000_000
    assert sorted(os.listdir(out)) == ["sn49.md", "sn49.png", "sn49.spec.json", "sn49.yaml"]
    spec = json.loads((out / "sn49.spec.json").read_text())
    assert spec["key"] == SPINENET_49.key
    from proxy_task import builder

    exp = builder.get_experiment_config()
    exp.override(yaml.safe_load((out / "sn49.yaml").read_text()), is_strict=True)
    exp.validate()
    c = exp.task.model.backbone.spinenet_nas
    assert (c.filter_size_scale, c.endpoints_num_filters, exp.task.model.head.num_filters) == (0.65, 128, 128)
    assert builder.config_to_arch(c) == SPINENET_49.canonical()
    assert "spinenas train --config sn49.yaml" in (out / "sn49.md").read_text()


def test_export_into_an_existing_empty_folder_leaves_only_its_files(tmp_path):
    # Staged inside --out (its parent may be read-only, as / is for `--out /tmp`); nothing else is left there.
    out = tmp_path / "out"
    out.mkdir()
    proc = _spinenas("export", "spinenet-49", "--out", str(out), "--name", "sn", "--scale", "49S",
                     "--image-size", "128")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["sn.md", "sn.png", "sn.spec.json", "sn.yaml"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def _searched_db(tmp_path) -> tuple[str, list]:
    """A database with one search of three random spinenet49 architectures, rewards 0.1, 0.3, 0.2."""
    from results_db import ResultStore

    space = SearchSpace("spinenet49")
    rng = np.random.default_rng(11)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = ResultStore(url)
    store.create_search("s", config={"proxy": {"image_size": 128}}, seed=0, controller="random",
                        family="spinenet49")
    archs = []
    for reward in (0.1, 0.3, 0.2):
        d = space.random(rng)
        arch = space.decode(d)
        key = store.register_arch(arch, family="spinenet49")
        [tid] = store.add_trials("s", [(key, d)], status="running", host="h")
        store.finish_trial(tid, status="completed", reward=reward, metrics={"ap": reward}, wall_s=1.0)
        archs.append(arch)
    store.close()
    return url, archs


def test_export_best_of_a_search_and_a_key_prefix(tmp_path):
    url, archs = _searched_db(tmp_path)
    proc = _spinenas("export", "best", "--search", "s", "--db", url, "--out", str(tmp_path / "best"),
                     "--image-size", "128", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    spec = json.loads((tmp_path / "best" / f"spinenet-{archs[1].key[:8]}.spec.json").read_text())
    assert spec["key"] == archs[1].key
    assert spec["provenance"]["search"] == "s" and spec["provenance"]["reward"] == 0.3
    proc = _spinenas("export", archs[2].key[:6], "--db", url, "--out", str(tmp_path / "k"), "--image-size", "128")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Its own lines only: TensorFlow's start-up lines, Model Garden's deprecation warnings and Grappler's session
    # notice stay off the console (make search ends with an export).
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert [ln.split(" (")[0] for ln in lines] == [f"building spinenet-{archs[2].key[:8]}"], proc.stderr
    assert json.loads((tmp_path / "k" / f"spinenet-{archs[2].key[:8]}.spec.json").read_text())["key"] == archs[2].key
    proc = _spinenas("export", "best", "--search", "nope", "--db", url, "--out", str(tmp_path / "n"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "n").exists()


def test_train_runs_two_steps_on_synthetic_tfrecords_and_checkpoints(tmp_path):
    from proxy_task.data import make_synth
    from proxy_task.synth import SynthSpec

    data = make_synth(str(tmp_path / "data"), SynthSpec(images=20, val_images=4))
    space = SearchSpace("spinenet49")
    arch = space.decode(space.random(np.random.default_rng(3)))
    (tmp_path / "a.json").write_text(arch.to_json())
    out = tmp_path / "export"
    proc = _spinenas("export", str(tmp_path / "a.json"), "--out", str(out), "--name", "mine", "--scale", "49S",
                     "--image-size", "128", "--num-classes", "5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    override = ",".join([
        f"task.train_data.input_path={data.train_pattern}", f"task.validation_data.input_path={data.val_pattern}",
        f"task.annotation_file={data.val_annotation_file}", "task.train_data.global_batch_size=2",
        "task.validation_data.global_batch_size=2", "trainer.train_steps=2", "trainer.steps_per_loop=1",
        "trainer.checkpoint_interval=2", "trainer.summary_interval=1", "trainer.validation_steps=1",
        "runtime.mixed_precision_dtype=float32", "task.model.norm_activation.use_sync_bn=false",
        "task.train_data.dtype=float32", "task.validation_data.dtype=float32",
        "trainer.optimizer_config.warmup.linear.warmup_steps=1",
    ])
    model_dir = tmp_path / "model"
    proc = _spinenas("train", "--config", str(out / "mine.yaml"), "--model-dir", str(model_dir), "--mode", "train",
                     "--params-override", override)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert result["checkpoint"] and os.path.basename(result["checkpoint"]).startswith("ckpt-2")
    assert (model_dir / "params.yaml").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ffffffffffff", "--out", "o"], "no database"),
        (["nope.json", "--out", "o"], "spec file not found"),
        (["bad.json", "--out", "o"], "malformed JSON"),
        (["spinenet-49", "--out", "o", "--scale", "50"], "unknown scale '50'"),
        (["spinenet-49", "--out", "full"], "is not empty"),
        (["spinenet-49", "--out", "o", "--image-size", "100"], "multiple of 128"),
        (["spinenet-49", "--out", "/proc/x/o"], "cannot write"),
    ],
)
def test_bad_input_writes_nothing(argv, message, tmp_path):
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("x")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    proc = _spinenas("export", *argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("building ")]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before

