#!/usr/bin/env python
"""What the `gpu` extra makes a GPU node download: pip's resolution of ``tensorflow[and-cuda]``.

Runs ``pip install --dry-run --ignore-installed --report`` for the extra's requirement against PyPI alone (this
machine's pip settings and local wheel folders left out, as a cluster node has none of them), keeps the CUDA
packages it adds to a CPU install (the ``nvidia-*`` wheels TensorFlow's ``and-cuda`` extra declares), and looks up
each wheel's size in PyPI's JSON simple index (PEP 691/700). Nothing is installed or downloaded but metadata.

    python scripts/bench/gpu_extra.py [--requirement 'tensorflow[and-cuda]==2.20.0'] [--note TEXT]

Writes scripts/bench/results/gpu-extra.json and prints a table. Needs the package index (no GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from scripts.bench.common import machine, provenance  # noqa: E402

RESULTS = os.path.join(ROOT, "scripts", "bench", "results", "gpu-extra.json")
INDEX = "https://pypi.org/simple"


def resolve(requirement: str) -> dict:
    """pip's installation report of `requirement` against PyPI alone, as a fresh node would resolve it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                               "--no-cache-dir", "--index-url", INDEX, "--report", report, requirement],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"pip could not resolve {requirement}:\n{proc.stderr[-2000:]}")
        with open(report, encoding="utf-8") as fh:
            return json.load(fh)


def wheel_size(name: str, filename: str) -> int | None:
    """The size in bytes PyPI's JSON simple index gives for `filename` of project `name` (None if it gives none)."""
    req = urllib.request.Request(f"{INDEX}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        files = json.load(resp).get("files", [])
    return next((f.get("size") for f in files if f.get("filename") == filename), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requirement", default="tensorflow[and-cuda]==2.20.0",
                        help="what the extra pulls (pyproject.toml's `gpu` extra)")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)

    report = resolve(args.requirement)
    installs = report["install"]
    tf = next(i for i in installs if i["metadata"]["name"].lower() == "tensorflow")
    declared = [d.split(";")[0].strip() for d in tf["metadata"].get("requires_dist", []) if "and-cuda" in d]
    cuda_names = {d.split("<")[0].split(">")[0].split("=")[0].strip().lower() for d in declared}
    rows = []
    for item in installs:
        name = item["metadata"]["name"].lower()
        if name not in cuda_names:
            continue
        url = item["download_info"]["url"]
        filename = url.rsplit("/", 1)[-1]
        rows.append({"package": name, "version": item["metadata"]["version"], "wheel": filename,
                     "size_bytes": wheel_size(name, filename)})
    rows.sort(key=lambda r: -(r["size_bytes"] or 0))
    sizes = [r["size_bytes"] for r in rows if r["size_bytes"] is not None]
    out = {
        **provenance(__file__, argv),
        "note": args.note,
        "machine": machine(),
        "requirement": args.requirement,
        "resolved_for": report.get("environment", {}),
        "declared_by_tensorflow": declared,
        "packages": rows,
        "total_bytes": sum(sizes),
        "packages_without_size": [r["package"] for r in rows if r["size_bytes"] is None],
        "all_packages_resolved": len(installs),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=2)
        fh.write("\n")
    for r in rows:
        size = "?" if r["size_bytes"] is None else f"{r['size_bytes'] / 1e6:8.1f} MB"
        print(f"{r['package']:28s} {r['version']:14s} {size}")
    print(f"{'total':28s} {'':14s} {out['total_bytes'] / 1e9:8.2f} GB  -> {os.path.relpath(args.out, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
