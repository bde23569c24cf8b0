"""Keys, canonical forms and family membership stay what they were when keys.json was written.

Keys are stored in results databases (and the canonical spec beside them), so a change to the network simulation
or to `canonical` must give every stored spec the same answers. fixtures/make_keys.py wrote the fixture from the
code before canonicalisation became linear; see its docstring for what the entries cover.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from search_space import FAMILIES, ArchSpec, SearchSpace

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "keys.json")
FN = {"b": "bottleneck", "r": "residual"}

with open(DATA, encoding="utf-8") as _fh:
    ENTRIES = json.load(_fh)["entries"]


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _parse(spec: dict) -> ArchSpec:
    blocks = [[lvl, FN[fn], [a, c], bool(out)] for lvl, fn, a, c, out in spec["blocks"]]
    return ArchSpec.from_json(json.dumps({"stem": spec["stem"], "blocks": blocks}))


@pytest.fixture(scope="module")
def spaces() -> dict[str, SearchSpace]:
    return {f"{name}@{w}": SearchSpace(name, window=w) for name in FAMILIES for w in (5, 4, None)}


def test_the_fixture_covers_what_it_claims():
    sources = " ".join(e["source"] for e in ENTRIES)
    for name in FAMILIES:
        assert f"{name}@5 random" in sources
    assert "spinenet-49 parents reversed" in sources and "calibration-demo.db" in sources
    assert sum(1 for e in ENTRIES if e["dead"]) > 100
    assert any(len(e["spec"]["blocks"]) > 200 for e in ENTRIES)
    assert os.path.getsize(DATA) < 200_000


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["source"] for e in ENTRIES])
def test_key_canonical_form_and_membership_are_unchanged(entry, spaces):
    arch = _parse(entry["spec"])
    assert arch.key == entry["key"]
    assert list(arch.dead_blocks()) == entry["dead"]
    canonical = arch.canonical()
    assert _h(canonical.to_json()) == entry["canonical"]
    assert canonical.key == entry["key"]
    members = {name: _h(json.dumps(list(s.encode(arch)))) for name, s in spaces.items() if s.contains(arch)}
    assert members == entry["in"]
