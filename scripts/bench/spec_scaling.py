#!/usr/bin/env python
"""How the time to read a spec, key it, canonicalise it and find its families grows with its blocks.

Builds specs of N blocks in three shapes, all seeded:

- ``appended``: Model Garden's SpineNet-49 (16 blocks), then N - 16 random blocks that feed no endpoint;
- ``interleaved``: SpineNet-49's blocks spread over N places, random blocks between them (some stop a merge);
- ``free``: N random blocks with one output per L3..L7 at random places (dead blocks, merges, level-2 outputs).

and times, on each: `ArchSpec.from_json` of its JSON, `key` (the network), `canonical()` and
`SearchSpace(name).contains` for every family (what ``spinenas spec show`` prints), the last three each on a
fresh parse (so canonical() and contains include the network's simulation); each the best of --repeats runs.
Specs above `MAX_BLOCKS` are built with the limit lifted (the limit is for inputs; the algorithm is measured).

    python scripts/bench/spec_scaling.py [--sizes 500,2000,8000] [--shapes appended,interleaved,free] [--repeats 3]

Prints one line per spec and writes scripts/bench/results/spec_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from search_space import FAMILIES, ArchSpec, SearchSpace, spec  # noqa: E402
from search_space.seeds import SPINENET_49_TUPLES  # noqa: E402

RESULTS = os.path.join(ROOT, "scripts", "bench", "results", "spec_scaling.json")
FNS = ("bottleneck", "residual")


def _parents(rng: np.random.Generator, hi: int) -> list[int]:
    # Mostly recent parents, so that random blocks consume each other (chains), sometimes any earlier one.
    a = int(rng.integers(max(0, hi - 4), hi)) if rng.random() < 0.6 else int(rng.integers(0, hi))
    c = int(rng.integers(0, hi - 1))
    return [a, c + 1 if c >= a else c]


def _random_block(rng: np.random.Generator, hi: int) -> list:
    level = int(rng.integers(2, 8))
    return [level, FNS[int(rng.integers(0, 2))], _parents(rng, hi), bool(level == 2 and rng.random() < 0.3)]


def make_spec(n: int, shape: str, seed: int = 0) -> dict:
    """A spec of `n` blocks of the given shape, as `ArchSpec.from_dict` takes it."""
    rng = np.random.default_rng(seed)
    m = 2
    blocks: list[list] = []
    if shape in ("appended", "interleaved"):
        places = range(16) if shape == "appended" else sorted(rng.choice(n, size=16, replace=False).tolist())
        where = {p: k for k, p in enumerate(places)}
        new_offset = {0: 0, 1: 1}  # offset in SPINENET_49_TUPLES -> offset here
        for i in range(n):
            if i in where:
                lvl, fn, (a, c), out = SPINENET_49_TUPLES[where[i]]
                blocks.append([lvl, fn, [new_offset[a], new_offset[c]], out])
                new_offset[m + where[i]] = m + i
            else:
                blocks.append(_random_block(rng, m + i))
    elif shape == "free":
        outputs = dict(zip(sorted(rng.choice(n, size=5, replace=False).tolist()), rng.permutation([3, 4, 5, 6, 7])))
        for i in range(n):
            block = _random_block(rng, m + i)
            if i in outputs:
                block[0], block[3] = int(outputs[i]), True
            elif block[0] != 2:
                block[3] = False
            blocks.append(block)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected appended, interleaved or free")
    return {"stem": [2, 0, 0, 0], "blocks": blocks}


def _timed(make, run, repeats: int):
    """(result, best wall time of `repeats` runs) of run(make()), `make` untimed: the best filters a busy machine."""
    best = float("inf")
    for _ in range(repeats):
        arg = make()
        t0 = time.perf_counter()
        out = run(arg)
        best = min(best, time.perf_counter() - t0)
    return out, best


def measure(n: int, shape: str, repeats: int) -> dict:
    text = json.dumps(make_spec(n, shape))
    spaces = [SearchSpace(name) for name in FAMILIES]

    def parse():  # a fresh spec each time: nothing cached, so canonical() simulates the network too
        return ArchSpec.from_json(text)

    arch, parse_s = _timed(lambda: text, ArchSpec.from_json, repeats)
    key, key_s = _timed(parse, lambda a: a.key, repeats)
    canonical, canonical_s = _timed(parse, lambda a: a.canonical(), repeats)
    families, contains_s = _timed(parse, lambda a: [s.family.name for s in spaces if s.contains(a)], repeats)
    return {"n": n, "shape": shape, "bytes": len(text), "parse_s": parse_s, "key_s": key_s,
            "canonical_s": canonical_s, "contains_all_s": contains_s, "key": key,
            "canonical_blocks": len(canonical.blocks), "dead": len(arch.dead_blocks()), "families": families}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500,2000,8000")
    parser.add_argument("--shapes", default="appended,interleaved,free")
    parser.add_argument("--repeats", type=int, default=3, help="report each time's best of this many runs")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    spec.MAX_BLOCKS = max(sizes + [getattr(spec, "MAX_BLOCKS", 0)])  # measure the algorithm beyond the limit
    rows = []
    for shape in args.shapes.split(","):
        for n in sizes:
            row = measure(n, shape, args.repeats)
            rows.append(row)
            print(f"{shape:12s} n={n:6d}  parse {row['parse_s']:8.3f}s  key {row['key_s']:8.3f}s  "
                  f"canonical {row['canonical_s']:8.3f}s  contains(all) {row['contains_all_s']:8.3f}s  "
                  f"-> {row['canonical_blocks']} blocks, {row['dead']} dead, in {row['families'] or '-'}",
                  flush=True)
    doc = {"command": "python scripts/bench/spec_scaling.py " + " ".join(sys.argv[1:]),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
           "date": time.strftime("%Y-%m-%d %H:%M"), "load_average": os.getloadavg(), "rows": rows}
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
