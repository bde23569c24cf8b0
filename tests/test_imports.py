"""Import boundaries: the read-only side of the project loads neither TensorFlow nor Ray (DESIGN.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "ray", "official", "tf_keras", "sqlalchemy")


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(','.join(sorted(m for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.strip().splitlines()[-1].split(","))


@pytest.mark.parametrize(
    "code, forbidden",
    [
        ("import search_space", HEAVY),
        ("import search_space.space, search_space.spec, search_space.seeds, search_space.cost", HEAVY),
        # The CLI parser (every command module) and the TF-free parts of proxy_task and nas.
        ("from nas import cli\ncli.build_parser()\nimport nas.config.schema, nas.config.presets, "
         "nas.config.codec", HEAVY),
        ("import proxy_task.config, proxy_task.result, proxy_task.synth, proxy_task.data", HEAVY),
        # results_db loads SQLAlchemy only when a store is first used, so the CLI can read its default location.
        ("import results_db\nfrom results_db import DEFAULT_URL, resolve_url", HEAVY),
        ("import results_db.reader, results_db.queries, results_db.version", HEAVY),
        (
            "import results_db.store, results_db.models, results_db.migrate, nas.cli.commands.db, nas.cli.diagram",
            ("tensorflow", "ray", "official", "tf_keras"),
        ),
        (
            "import io, contextlib\nfrom nas import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    cli.main(['space', '--family', 'spinenet49'])\n"
            "    cli.main(['space', '--family', 'r0-sp53', '--json'])\n"
            "    cli.main(['spec', 'show', 'spinenet-49'])\n"
            "    cli.main(['spec', 'show', 'spinenet-49', '--format', 'model-garden'])\n"
            "    assert cli.main(['spec', 'show', 'spinenet-49', '--cost']) == 0\n"
            "    assert cli.main(['spec', 'show', 'spinenet-49', '--cost', '--preset', 'paper']) == 0\n"
            "    assert cli.main(['spec', 'show', 'spinenet-49', '--cost', '--scale', '190', '--format', 'json']) "
            "== 0\n"
            "    assert cli.main(['proxy', 'cost', '--preset', 'paper']) == 0",
            ("tensorflow", "ray", "official", "tf_keras"),
        ),
    ],
)
def test_read_only_side_imports_no_tensorflow_or_ray(code, forbidden):
    loaded = _loaded_after(code)
    leaked = sorted(m for m in loaded if m.split(".")[0] in forbidden)
    assert not leaked, f"{code!r} imported {leaked[:5]}"


def test_search_space_imports_only_stdlib_and_numpy():
    loaded = _loaded_after("import search_space")
    project = {"controller", "proxy_task", "results_db", "nas"}
    third_party = {m.split(".")[0] for m in loaded} - set(sys.stdlib_module_names) - {"search_space", "numpy"}
    assert not (third_party & project)
    assert not {m for m in third_party if not m.startswith("_")} - {"numpy"}, third_party


def test_read_commands_import_no_tensorflow_or_ray(tmp_path):
    """`top`, `show`, `searches` and `report` on a real database load neither TensorFlow nor Ray."""
    from tests.results_db.fixtures import make_db

    db = str(tmp_path / "r.db")
    facts = make_db(db)
    code = (
        "import io, contextlib\nfrom nas import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert cli.main(['searches', '--db', {db!r}]) == 0\n"
        f"    assert cli.main(['top', '--db', {db!r}, '-k', '3', '--json']) == 0\n"
        f"    assert cli.main(['show', {facts['key49'][:6]!r}, '--db', {db!r}]) == 0\n"
    )
    loaded = _loaded_after(code)
    leaked = sorted(m for m in loaded if m.split(".")[0] in ("tensorflow", "ray", "official", "tf_keras"))
    assert not leaked, leaked[:5]


@pytest.mark.slow
def test_report_imports_no_tensorflow_or_ray(tmp_path):
    from tests.results_db.fixtures import make_db

    db = str(tmp_path / "r.db")
    make_db(db)
    out = str(tmp_path / "report")
    loaded = _loaded_after(
        f"from nas import cli\nassert cli.main(['report', '--db', {db!r}, '--search', 'ppo-1', '--out', {out!r}]) == 0"
    )
    leaked = sorted(m for m in loaded if m.split(".")[0] in ("tensorflow", "ray", "official", "tf_keras"))
    assert not leaked, leaked[:5]
