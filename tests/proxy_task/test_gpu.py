"""The GPU smoke test: one tiny trial on a GPU with mixed precision on. Skipped, with its reason, where TensorFlow
sees no GPU (every machine this project has run on so far: see the README's GPU section)."""

from __future__ import annotations

import pytest

from proxy_task.config import DataConfig, ProxyConfig
from proxy_task.data import make_synth
from proxy_task.synth import SynthSpec
from search_space import SPINENET_49

pytestmark = [pytest.mark.gpu, pytest.mark.tf, pytest.mark.slow]


def test_a_tiny_trial_trains_on_a_gpu_in_mixed_precision(tmp_path):
    import tensorflow as tf

    from proxy_task.devices import choose_precision, visible_gpus
    from proxy_task.trainer import run_trial

    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow sees no GPU here: the GPU path (CUDA, mixed precision on tensor cores) is not run")
    dataset = make_synth(str(tmp_path / "synth"), SynthSpec(images=48, val_images=8, image_size=128))
    cfg = ProxyConfig(data=DataConfig(kind="dir", path=dataset.root), image_size=128, batch_size=4, train_steps=6,
                      warmup_steps=2, eval_batch_size=4, log_every=2, mixed_precision="auto", nms_version="v2",
                      deterministic=False)
    capabilities = visible_gpus()
    result = run_trial(SPINENET_49.canonical(), cfg, dataset, gpu_share=1.0)
    assert result.error is None, result.error
    assert result.ok and result.precision == choose_precision("auto", capabilities)
    if all(cc is not None and cc >= (7, 0) for cc in capabilities):  # tensor cores: mixed precision is on
        assert result.precision in ("float16", "bfloat16")
    assert tf.config.experimental.get_memory_growth(tf.config.list_physical_devices("GPU")[0])
