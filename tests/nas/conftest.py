"""Fixtures the `nas` tests share (functions they share are in helpers.py)."""

from __future__ import annotations

import pytest

from tests.results_db.fixtures import make_db


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """A results database of known searches and trials, made once per module: (its path, `make_db`'s facts)."""
    path = tmp_path_factory.mktemp("db") / "results.db"
    facts = make_db(str(path))
    return str(path), facts
