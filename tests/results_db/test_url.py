"""`resolve_url`: plain paths, URLs and the spellings that would lose results or name the wrong file."""

from __future__ import annotations

import os

import pytest

from results_db.url import DEFAULT_URL, ENV_VAR, resolve_url, sqlite_path


@pytest.mark.parametrize(("db", "url"), [
    ("r.db", "sqlite:///{cwd}/r.db"),
    ("sqlite:///r.db", "sqlite:///r.db"),
    ("sqlite:///file:r.db?mode=rw&uri=true", "sqlite:///file:r.db?mode=rw&uri=true"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    (":memory:", "sqlite://"),  # as SQLite spells it, not a file called ':memory:'
    ("sqlite://", "sqlite://"),
])  # fmt: skip
def test_urls(db, url, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert resolve_url(db) == url.format(cwd=os.getcwd())


@pytest.mark.parametrize("db", ["sqlite://", ":memory:", "sqlite:///:memory:", "sqlite:///file::memory:?uri=true",
                                "sqlite:///file:x.db?mode=memory&uri=true"])
def test_an_in_memory_database_is_refused_where_results_must_last(db):
    assert sqlite_path(resolve_url(db)) == ""  # the Python API (tests) may still use one
    with pytest.raises(ValueError, match=r"is an in-memory database: it holds nothing before a command and keeps "
                       r"nothing after it, so results written there would vanish; expected a file path or a database "
                       r"URL such as sqlite:///runs/spinenas.db$"):
        resolve_url(db, persistent=True)


def test_an_in_memory_database_from_the_environment_says_so(monkeypatch):
    monkeypatch.setenv(ENV_VAR, ":memory:")
    with pytest.raises(ValueError, match=r"^':memory:' \(from \$SPINENAS_DB\) is an in-memory database"):
        resolve_url(None, persistent=True)
    monkeypatch.delenv(ENV_VAR)
    assert resolve_url(None, persistent=True) == DEFAULT_URL


@pytest.mark.parametrize(("db", "path"), [("file:x.db?mode=rw", "x.db"), ("file:///data/r.db", "/data/r.db"),
                                          ("FILE:x.db", "x.db")])
def test_a_sqlite_uri_given_as_a_path_is_refused_with_the_forms_expected(db, path):
    """As a path it named a file called 'file:x.db' (the query dropped)."""
    with pytest.raises(ValueError) as e:
        resolve_url(db)
    assert str(e.value) == (f"expected a database URL (sqlite:///path.db, postgresql://user@host/db) or a plain file "
                            f"path, got the SQLite URI {db!r}: give its path ({path}) or sqlite:///{path}")


def test_a_sqlite_file_url_without_uri_true_is_refused():
    """SQLAlchemy drops the query of such a URL with a warning and makes a file called 'file:x.db'."""
    with pytest.raises(ValueError, match=r"^expected uri=true in a sqlite:///file:\.\.\. URL \(without it SQLite's "
                       r"parameters are dropped and a file named 'file:x\.db' is made\), got "
                       r"'sqlite:///file:x\.db\?mode=rw': add uri=true to its query, or give sqlite:///x\.db$"):
        resolve_url("sqlite:///file:x.db?mode=rw")
