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
        ("import search_space.space, search_space.spec, search_space.seeds", HEAVY),
        # The CLI parser (every command module) and the TF-free parts of proxy_task and nas.
        ("from nas import cli\ncli.build_parser()\nimport nas.config, nas.presets, nas.config_io", HEAVY),
        ("import proxy_task.config, proxy_task.result, proxy_task.synth, proxy_task.data", HEAVY),
        (
            "import io, contextlib\nfrom nas import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    cli.main(['space', '--family', 'spinenet49'])\n"
            "    cli.main(['space', '--family', 'r0-sp53', '--json'])\n"
            "    cli.main(['spec', 'show', 'spinenet-49'])\n"
            "    cli.main(['spec', 'show', 'spinenet-49', '--format', 'model-garden'])",
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
