#!/usr/bin/env python
"""Analytic cost (`search_space.cost`) against Model Garden's built model.

For each architecture it counts parameters and FLOPs twice: TF-free from the spec (`search_space.cost.count_cost`)
and by building the RetinaNet with Model Garden (`proxy_task.measure.measure`: ``model.count_params()`` after one
forward pass, and TF's profiler on the frozen graph of backbone and head, halved, i.e. what
`proxy_task.trainer.count_flops` reports), then compares them part by part (backbone, head, whole detector).

The architectures:

- the named models: SpineNet-49's spec at the SpineNet-49S/49/96/143/190 scalings (Model Garden's
  ``SCALING_MAP`` and the paper's heads, built through `modelgarden.build_config`, as ``spinenas export`` builds
  them: synchronized batch norms, 91 classes) at their paper image sizes; ``--max-named-size`` caps the image
  size (memory);
- ``--per-family`` random specs of every family in `search_space.FAMILIES` (decoded as the search decodes them,
  dead blocks included) at the proxy's defaults (`proxy_task.config.ProxyConfig()`: 128 px, filter scale 0.25,
  alpha 0.25, endpoints 64, head 4 x 64, swish) and the synthetic set's 5 classes, built like a proxy trial
  (`proxy_task.trainer.build_experiment`).

Writes scripts/bench/results/cost.json (after every model, so an interrupted run keeps what it measured) with the
machine, the commit and the command: the max and mean relative FLOPs error, the count of exact parameter matches,
and the analytic count's time per spec. The Model Garden builds take the shared CPU lock (/tmp/spinenas-cpu.lock)
for the whole run, one model at a time in this one process.

    python scripts/bench/cost.py [--per-family 40] [--named 49S,49,96,143,190] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sys
import time
import timeit
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from proxy_task.config import ProxyConfig  # noqa: E402
from scripts.bench.common import LOCK, machine, provenance, versions  # noqa: E402
from search_space import FAMILIES, SPINENET_49, ArchSpec, SearchSpace  # noqa: E402
from search_space.cost import IMAGE_SIZES, SCALINGS, Cost, Scaling, count_cost  # noqa: E402

RESULTS = Path(ROOT) / "scripts" / "bench" / "results" / "cost.json"
SYNTH_CLASSES = 5  # the synthetic set's Model Garden num_classes (4 shapes, ids 1..4, + background)
COCO_CLASSES = 91  # Model Garden's retinanet_spinenet_coco
TARGET_REL_ERROR = 0.005


@contextlib.contextmanager
def cpu_lock() -> Iterator[None]:
    """The lock every TF process of the benchmarks takes (`flock /tmp/spinenas-cpu.lock`)."""
    with open(LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _rel(ours: int, theirs: int) -> float:
    return abs(ours - theirs) / theirs if theirs else float(ours != 0)


def compare(cost: Cost, ref: Any) -> dict[str, Any]:
    """Analytic against measured, part by part."""
    return {
        "analytic": {"params": cost.params, "backbone_params": cost.backbone_params, "head_params": cost.head_params,
                     "flops": cost.flops, "backbone_flops": cost.backbone_flops, "head_flops": cost.head_flops,
                     "ops_by_type": dict(cost.ops_by_type)},
        "model_garden": {"params": ref.params, "backbone_params": ref.backbone_params,
                         "decoder_params": ref.decoder_params, "head_params": ref.head_params, "flops": ref.flops,
                         "backbone_flops": ref.backbone_ops // 2, "head_flops": ref.head_ops // 2,
                         "ops_by_type": dict(sorted(ref.ops_by_type.items()))},
        "params_exact": cost.params == ref.params,
        "parts_params_exact": (cost.backbone_params, cost.head_params) == (ref.backbone_params, ref.head_params),
        "flops_rel_error": _rel(cost.flops, ref.flops),
        "backbone_flops_rel_error": _rel(cost.backbone_ops, ref.backbone_ops),
        "head_flops_rel_error": _rel(cost.head_ops, ref.head_ops),
    }


def random_specs(per_family: int, seed: int) -> list[tuple[str, ArchSpec]]:
    """`per_family` decoded random specs of every family (the search's default window)."""
    rng = np.random.default_rng(seed)
    out = []
    for name in FAMILIES:
        space = SearchSpace(name)
        out.extend((name, space.decode(space.random(rng))) for _ in range(per_family))
    return out


def time_analytic(items: list[tuple[ArchSpec, dict[str, Any]]], repeats: int = 5) -> float:
    """Seconds per `count_cost` call, on fresh copies of the specs (so `ArchSpec.network()` is not cached)."""
    best = float("inf")
    for _ in range(repeats):
        fresh = [(ArchSpec(blocks=a.blocks, stem=a.stem), kw) for a, kw in items]
        t0 = timeit.default_timer()
        for a, kw in fresh:
            count_cost(a, **kw)
        best = min(best, (timeit.default_timer() - t0) / len(fresh))
    return best


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [r["flops_rel_error"] for r in rows]
    return {
        "specs": len(rows),
        "params_exact": sum(r["params_exact"] for r in rows),
        "max_rel_flops_error": max(errors) if errors else None,
        "mean_rel_flops_error": sum(errors) / len(errors) if errors else None,
        "within_target": sum(e <= TARGET_REL_ERROR for e in errors),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-family", type=int, default=40,
                        help=f"random specs per family ({len(FAMILIES)} families; default 40, i.e. 200 in all)")
    parser.add_argument("--named", default=",".join(SCALINGS),
                        help="named scalings of SpineNet-49's spec to build (comma-separated; '' for none)")
    parser.add_argument("--max-named-size", type=int, default=0,
                        help="cap the named models' image size at this (0: the paper sizes)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random specs")
    parser.add_argument("--note", default="", help="a remark stored with the results")
    parser.add_argument("--no-save", action="store_true", help=f"do not write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    named = [n for n in args.named.split(",") if n]
    unknown = [n for n in named if n not in SCALINGS]
    if unknown:
        parser.error(f"unknown scaling(s) {unknown}; expected some of {', '.join(SCALINGS)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

    proxy = ProxyConfig()
    proxy_scaling = Scaling(proxy.filter_size_scale, proxy.resample_alpha, proxy.block_repeats,
                            proxy.endpoints_num_filters, proxy.head_num_convs, proxy.head_num_filters)
    proxy_kw = {"image_size": proxy.image_size, "num_classes": SYNTH_CLASSES, "scaling": proxy_scaling,
                "activation": proxy.activation}
    specs = random_specs(args.per_family, args.seed)
    record: dict[str, Any] = {
        **provenance(__file__, argv),
        "note": args.note,
        "machine": machine(**versions("tensorflow", "tf-models-official", "tf-keras")),
        "target": {"params": "exact", "max_rel_flops_error": TARGET_REL_ERROR},
        "flops": "multiply-adds per image of backbone and head: TF profiler float ops / 2 (proxy_task.trainer."
                 "count_flops); analytic: search_space.cost.count_cost",
        "settings": {"per_family": args.per_family, "seed": args.seed, "proxy": {**proxy_kw,
                     "scaling": vars(proxy_scaling)}, "named_classes": COCO_CLASSES},
        "analytic_s_per_spec": {
            "random": time_analytic([(a, proxy_kw) for _, a in specs]),
            "named": time_analytic([(SPINENET_49, {"image_size": IMAGE_SIZES[n], "num_classes": COCO_CLASSES,
                                                   "scaling": SCALINGS[n], "use_sync_bn": True}) for n in SCALINGS]),
        },
        "named": [],
        "random": {"specs": []},
    }

    def save() -> None:
        record["summary"] = {"named": summarize(record["named"]), "random": summarize(record["random"]["specs"])}
        record["random"]["per_family"] = {f: summarize([r for r in record["random"]["specs"] if r["family"] == f])
                                          for f in FAMILIES}
        record["machine"]["loadavg_after"] = list(os.getloadavg())
        if not args.no_save:
            tmp = RESULTS.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(record, indent=1) + "\n")
            os.replace(tmp, RESULTS)

    with cpu_lock():
        import tf_keras

        from nas.export import modelgarden as export
        from proxy_task import measure

        for name in named:
            size = IMAGE_SIZES[name] if not args.max_named_size else min(IMAGE_SIZES[name], args.max_named_size)
            exp = export.build_config(SPINENET_49, scale=name, image_size=size)
            # Model Garden's retinanet_spinenet_coco keeps synchronized batch norms (the proxy turns them off).
            sync = bool(exp.task.model.norm_activation.use_sync_bn)
            cost = count_cost(SPINENET_49, image_size=size, num_classes=COCO_CLASSES, scaling=SCALINGS[name],
                              use_sync_bn=sync)
            t0 = time.time()
            ref = measure.measure(exp)
            row = {"name": f"SpineNet-{name}", "image_size": size, "num_classes": COCO_CLASSES,
                   "scaling": vars(SCALINGS[name]), "use_sync_bn": sync, **compare(cost, ref),
                   "build_s": round(time.time() - t0, 1)}
            record["named"].append(row)
            print(f"SpineNet-{name} @{size}: params {cost.params} vs {ref.params}, FLOPs {cost.flops} vs {ref.flops} "
                  f"(rel {row['flops_rel_error']:.2e}), {row['build_s']} s", flush=True)
            save()
            tf_keras.backend.clear_session()

        for i, (family, arch) in enumerate(specs):
            cost = count_cost(arch, **proxy_kw)
            t0 = time.time()
            ref = measure.measure(measure.proxy_experiment(arch, proxy, SYNTH_CLASSES))
            row = {"family": family, "key": arch.key, "arch": arch.to_json(), "live_blocks": len(arch.network().live),
                   "blocks": len(arch.blocks), **compare(cost, ref), "build_s": round(time.time() - t0, 1)}
            del row["analytic"]["ops_by_type"], row["model_garden"]["ops_by_type"]
            record["random"]["specs"].append(row)
            print(f"[{i + 1}/{len(specs)}] {family} {arch.key}: params {cost.params} vs {ref.params}, FLOPs "
                  f"{cost.flops} vs {ref.flops} (rel {row['flops_rel_error']:.2e}), {row['build_s']} s", flush=True)
            save()
            tf_keras.backend.clear_session()
    save()
    print(json.dumps(record["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
