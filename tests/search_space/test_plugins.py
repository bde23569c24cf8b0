"""Plug-in modules (`search_space.registry`): their names checked, imported once, their failures one line naming them,
and the ``sys.path`` roots a worker needs to import them where the driver did."""

from __future__ import annotations

import sys

import pytest

from search_space.registry import PluginError, check_plugins, import_plugins, plugin_roots


@pytest.fixture
def clean_path(monkeypatch):
    """`sys.path` and the modules the test imports are as they were afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("spx_"):
            del sys.modules[name]


def _write(root, rel: str, text: str = "") -> None:
    path = root.joinpath(*rel.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("bad", ["plug/in.py", "my_pkg.mod:Evaluator", "", "1abc", "a..b", None, 3])
def test_a_plugin_is_a_dotted_module_name(bad):
    with pytest.raises(PluginError, match="a plug-in is an importable Python module name"):
        check_plugins([bad])


def test_names_keep_their_order_without_repeats():
    assert check_plugins(["b.c", "a", "b.c"]) == ("b.c", "a")
    assert check_plugins("a") == ("a",)


def test_an_import_runs_once_and_its_root_is_found(tmp_path, clean_path):
    _write(tmp_path, "spx_pkg/__init__.py")
    _write(tmp_path, "spx_pkg/sub/__init__.py", "COUNT = []\n")
    _write(tmp_path, "spx_pkg/sub/mod.py", "from spx_pkg.sub import COUNT\nCOUNT.append(1)\n")
    _write(tmp_path, "spx_flat.py")
    assert plugin_roots(["spx_pkg.sub.mod"]) == ()  # not imported: nothing known of it yet
    with pytest.raises(PluginError, match=r"^plug-in 'spx_pkg.sub.mod' cannot be imported: no module named 'spx_pkg'"):
        import_plugins(["spx_pkg.sub.mod"])
    assert import_plugins(["spx_pkg.sub.mod", "spx_flat"], paths=[str(tmp_path)]) == ("spx_pkg.sub.mod", "spx_flat")
    assert sys.path[0] == str(tmp_path)
    import_plugins(["spx_pkg.sub.mod"], paths=[str(tmp_path)])  # again: no second import, no second path entry
    assert sys.modules["spx_pkg.sub"].COUNT == [1] and sys.path.count(str(tmp_path)) == 1
    # A module, a package and a top-level module: each root is the folder its dotted name starts in.
    assert plugin_roots(["spx_pkg.sub.mod", "spx_pkg.sub", "spx_flat"]) == (str(tmp_path),)


def test_a_module_that_sits_elsewhere_than_its_name_says_gives_no_root(tmp_path, clean_path):
    _write(tmp_path, "spx_alias.py")
    import_plugins(["spx_alias"], paths=[str(tmp_path)])
    sys.modules["spx_renamed"] = sys.modules["spx_alias"]
    assert plugin_roots(["spx_renamed"]) == ()


@pytest.mark.parametrize(
    "source, message",
    [
        ("raise RuntimeError('boom\\nsecond line')", "plug-in 'spx_bad' raised when imported: RuntimeError: boom"),
        ("import spx_no_such_dependency",  # its own missing dependency: not "cannot be imported"
         "plug-in 'spx_bad' raised when imported: ModuleNotFoundError: No module named 'spx_no_such_dependency'"),
        ("def broken(:", "plug-in 'spx_bad' raised when imported: SyntaxError: "),
    ],
)
def test_a_plugin_that_fails_at_import_is_one_line_naming_it(tmp_path, clean_path, source, message):
    _write(tmp_path, "spx_bad.py", source + "\n")
    with pytest.raises(PluginError) as e:
        import_plugins(["spx_bad"], paths=[str(tmp_path)])
    assert str(e.value).startswith(message) and "\n" not in str(e.value), str(e.value)
