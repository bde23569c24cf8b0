"""Text from a database shown on a terminal: control characters stored in names, errors and hosts are shown as
escapes (`nas.cli.ui.printable`), never sent to the terminal as they are (`searches` and `top` printed them raw)."""

from __future__ import annotations

import io
import sys

import pytest

from nas import cli
from nas.cli.ui import printable
from results_db import ResultStore
from search_space import seeds

# Set the terminal's title, clear the screen, ring the bell; then a bidirectional override.
EVIL = "evil\x1b]0;pwned\x07\x1b[2J\u202e"
RAW = ("\x1b]0;pwned", "\x07", "\x1b[2J", "\u202e")


@pytest.mark.parametrize(
    "text, shown",
    [
        ("plain name-1.2_x", "plain name-1.2_x"),
        ("a\x1b[31mb", "a\\x1b[31mb"),
        ("one\ntwo\r\tthree", "one\\ntwo\\r\\tthree"),
        ("\x00\x7f\x9b", "\\x00\\x7f\\x9b"),  # NUL, DEL, the one-byte CSI
        ("abc\u202edef\u2066", "abc\\u202edef\\u2066"),
        ("é ü 日本 ✓", "é ü 日本 ✓"),  # printable text is left alone
        (12.5, "12.5"),
    ],
)
def test_printable_escapes_what_a_terminal_would_act_on(text, shown):
    assert printable(text) == shown


def test_printable_can_keep_line_breaks():
    assert printable("Traceback\n  line\x1b[0m", newlines=True) == "Traceback\n  line\\x1b[0m"


@pytest.fixture
def evil_db(tmp_path):
    """Two searches, one named with escape sequences, whose trials' host and error hold them too."""
    import numpy as np

    from search_space import SearchSpace

    path = tmp_path / "r.db"
    space = SearchSpace("spinenet49")
    archs = (seeds.SPINENET_49.canonical(), space.decode(space.random(np.random.default_rng(0))))
    with ResultStore(f"sqlite:///{path}") as store:
        for name, reward, arch in ((EVIL, 0.4, archs[0]), ("clean", 0.3, archs[1])):
            key = store.register_arch(arch, family="spinenet49", flops=2_000_000_000, params=4_000_000)
            store.create_search(name, config="{}", controller="ppo" + EVIL, family="spinenet49", fingerprint="fp")
            [done, failed] = store.add_trials(name, [(key, [0]), (key, [1])], status="running", host="h" + EVIL,
                                              fingerprint="fp")
            store.finish_trial(done, status="completed", reward=reward, metrics={"ap": reward})
            store.finish_trial(failed, status="failed", error="boom" + EVIL + "\nsecond line")
    return str(path), archs[0].key


def _out(argv, capsys, monkeypatch=None, tty=False) -> str:
    if tty:
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert cli.main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("tty", [False, True])  # a plain table (a pipe), and rich's (a terminal)
def test_searches_and_top_show_stored_escapes_as_text(evil_db, tty, capsys, monkeypatch):
    db, key = evil_db
    monkeypatch.setenv("COLUMNS", "500")  # rich folds no cell
    for argv in (["searches", "--db", db], ["top", "--db", db], ["show", key, "--db", db]):
        out = _out(argv, capsys, monkeypatch, tty)
        assert not any(raw in out for raw in RAW), (argv, out)
        assert "\\x1b]0;pwned\\x07\\x1b[2J\\u202e" in out, (argv, out)


def test_top_csv_is_exact_in_a_pipe_and_escaped_on_a_terminal(evil_db, capsys, monkeypatch):
    db, _ = evil_db
    assert EVIL in _out(["top", "--db", db, "--csv"], capsys)  # data for a program, as stored
    out = _out(["top", "--db", db, "--csv"], capsys, monkeypatch, tty=True)
    assert not any(raw in out for raw in RAW) and "evil\\x1b" in out


def test_the_search_console_shows_lines_printable():
    from rich.console import Console

    from nas.cli.console import LiveView, PlainView

    lines: list[str] = []
    PlainView(lines.append).line("trial 3 failed: " + EVIL + "\nnext")
    assert lines == ["trial 3 failed: evil\\x1b]0;pwned\\x07\\x1b[2J\\u202e\\nnext"]
    buf = io.StringIO()
    view = LiveView(Console(file=buf, force_terminal=True, width=200))
    view.line("trial 3 failed: " + EVIL)
    view.close()
    assert not any(raw in buf.getvalue() for raw in RAW) and "pwned" in buf.getvalue()
