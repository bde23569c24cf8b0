"""Output paths of `report --out`, `export --out` and `show --image`: an unwritable one is one line naming the path
and the OS's reason, exit code 2, before any work is done, and nothing is left half-written."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

from nas.cli.commands.common import check_output_path, writing_output
from nas.cli.ui import UserError
from tests.nas.helpers import run_cli


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _argv(command, db, key, out):
    return {
        "report": ["report", "--db", db, "--search", "ppo-1", "--out", out],
        "export": ["export", "spinenet-49", "--out", out],
        "show": ["show", key, "--db", db, "--image", out],
    }[command]


FLAGS = {"report": "--out", "export": "--out", "show": "--image"}


def _permissions_bind() -> bool:
    """False for root with CAP_DAC_OVERRIDE (the usual container), who writes into read-only directories."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o555)
        try:
            os.mkdir(os.path.join(d, "x"))
        except PermissionError:
            return True
        finally:
            os.chmod(d, 0o755)
    return False


# Each case: (name, the output path under tmp_path ('/...' is absolute), the OS's reason in the message, which
# depends on who runs the tests for /proc: root gets ENOENT from procfs, others EACCES). 'file' is a regular file.
PROC = "(No such file or directory|Permission denied)"
CASES = [
    ("under /proc", "/proc/x", PROC),
    ("nested under /proc", "/proc/x/y", PROC),
    ("under a regular file", "file/sub", "Not a directory"),
    ("deep under a regular file", "file/a/b", "Not a directory"),
]


@pytest.mark.parametrize("command", ["report", "export", "show"])
@pytest.mark.parametrize("name, where, reason", CASES, ids=[c[0] for c in CASES])
def test_unwritable_output_is_one_line_and_writes_nothing(capsys, db, tmp_path, command, name, where, reason):
    path, facts = db
    (tmp_path / "file").write_text("keep")
    out = where if where.startswith("/") else str(tmp_path / where)
    if command == "show":
        out += ".png"
    before = _listing(tmp_path)
    code, stdout, err = run_cli(capsys, *_argv(command, path, facts["key49"], out))
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("building ")]
    assert len(lines) == 1 and f"cannot write {FLAGS[command]} {out}: " in lines[0], err
    assert re.search(reason, lines[0]), err
    assert "Traceback" not in err and stdout == ""  # refused before any work: nothing printed
    assert _listing(tmp_path) == before and (tmp_path / "file").read_text() == "keep"


@pytest.mark.parametrize("command", ["report", "export", "show"])
def test_a_file_where_a_directory_is_expected_and_the_reverse(capsys, db, tmp_path, command):
    path, facts = db
    (tmp_path / "file").write_text("keep")
    (tmp_path / "dir.png").mkdir()
    out = str(tmp_path / ("dir.png" if command == "show" else "file"))
    code, _, err = run_cli(capsys, *_argv(command, path, facts["key49"], out))
    why = "it is a directory" if command == "show" else "it exists and is not a directory"
    assert code == 2 and err.count("\n") == 1 and f"cannot write {FLAGS[command]} {out}: {why}" in err, err
    assert _listing(tmp_path) == ["dir.png", "file"] and (tmp_path / "file").read_text() == "keep"


@pytest.mark.skipif(not _permissions_bind(), reason="root writes into read-only directories")
@pytest.mark.parametrize("command", ["report", "export", "show"])
def test_a_directory_without_write_permission(capsys, db, tmp_path, command):
    path, facts = db
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        out = str(locked / ("x.png" if command == "show" else "x"))
        code, _, err = run_cli(capsys, *_argv(command, path, facts["key49"], out))
        assert code == 2 and err.count("\n") == 1 and "Permission denied" in err and out in err, err
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_missing_parents_are_made_by_report_only(tmp_path):
    deep = str(tmp_path / "a" / "b" / "c")
    check_output_path(deep, "--out", directory=True, parents=True)  # report: made when written
    for kwargs in ({"directory": True}, {"directory": False}):
        with pytest.raises(UserError, match=f"cannot write --out {deep}: {tmp_path / 'a' / 'b'}: No such file"):
            check_output_path(deep, "--out", **kwargs)
    assert _listing(tmp_path) == []  # the probe leaves nothing behind


def test_export_refuses_a_directory_in_the_way_of_a_file_before_building(capsys, tmp_path):
    out = tmp_path / "out"
    (out / "sn.png").mkdir(parents=True)
    code, _, err = run_cli(capsys, "export", "spinenet-49", "--out", str(out), "--name", "sn", "--force")
    assert code == 2 and f"cannot write --out {out}: {out / 'sn.png'} is a directory" in err, err
    assert _listing(tmp_path) == ["out", "out/sn.png"]


def test_a_failed_write_removes_the_directories_it_made(tmp_path):
    out = tmp_path / "a" / "b"
    with pytest.raises(UserError, match=f"cannot write --out {out}: No space left on device"):
        with writing_output(str(out), "--out", directory=True):
            out.mkdir(parents=True)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert _listing(tmp_path) == []


def test_show_image_failing_while_drawing_leaves_no_file(capsys, db, tmp_path, monkeypatch):
    path, facts = db

    def half_draw(arch, target, title=None):
        Path(target).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), target)

    monkeypatch.setattr("nas.cli.diagram.draw_arch", half_draw)
    image = tmp_path / "arch.png"
    code, _, err = run_cli(capsys, "show", facts["key49"], "--db", path, "--image", str(image))
    assert code == 2 and err.count("\n") == 1 and f"cannot write --image {image}: No space left on device" in err
    assert _listing(tmp_path) == []


@pytest.mark.slow
def test_report_failing_at_the_write_leaves_no_partial_file(capsys, db, tmp_path):
    path, _ = db
    out = tmp_path / "report"
    (out / "index.html").mkdir(parents=True)  # passes the up-front check; the final rename fails
    code, _, err = run_cli(capsys, "report", "--db", path, "--search", "ppo-1", "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and f"cannot write --out {out}: Is a directory" in err, err
    assert _listing(tmp_path) == ["report", "report/index.html"]
