"""``--plugin MODULE`` and a config's ``plugins:``: a user's evaluator and controller (tests/nas/plugin_example.py)
run a search in the driver's process, in the local runner's child processes and on Ray, whose workers import the
module from where the driver found it; a resume imports it again from the stored config; a module that cannot be
imported is one line, exit code 2, and nothing is created."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from nas.config.codec import ConfigError, from_dict, from_yaml, to_yaml
from nas.config.schema import NasConfig
from nas.engine.fingerprint import fingerprint
from results_db import ResultStore
from search_space import ArchSpec
from tests.nas.helpers import run_cli, spinenas

SOURCE = Path(__file__).with_name("plugin_example.py")
IN_TREE = "tests.nas.plugin_example"  # importable from the repository's root (the test process's path)
MODULE = "spinenas_toy_plugin"  # the same source copied into a folder only PYTHONPATH names
TOY = ["--evaluator", "toy", "--controller", "toy-random"]  # the plug-in's choices, by the flags
QUIET = ["--cpus-per-trial", "1", "--top", "0", "--plain"]


def _forget(module: str) -> None:
    """Takes a plug-in's entries and module out of this process (the next import registers them again)."""
    from controller import CONTROLLERS
    from proxy_task.evaluator import EVALUATORS

    EVALUATORS.unregister("toy")
    CONTROLLERS.unregister("toy-random")
    sys.modules.pop(module, None)


@pytest.fixture
def toy():
    """The in-tree plug-in's name; whatever the test imported of it is gone afterwards."""
    yield IN_TREE
    _forget(IN_TREE)


@pytest.fixture
def plugin_root(tmp_path) -> Path:
    """A folder holding the plug-in as `MODULE`, on no path of this process or its children."""
    root = tmp_path / "plugins"
    root.mkdir()
    shutil.copy(SOURCE, root / f"{MODULE}.py")
    return root


def _check_rewards(store: ResultStore, name: str, scale: float) -> int:
    """Checks that every trial of a search stored the toy AP of its architecture; returns how many there are."""
    imported = IN_TREE in sys.modules
    from tests.nas.plugin_example import toy_ap

    if not imported:  # importing it registers its entries: later tests' stored configs must not carry them
        _forget(IN_TREE)

    trials = store.trials(name)
    expected = [toy_ap(ArchSpec.from_json(store.get_arch(t.arch_key).spec_json), scale) for t in trials]
    assert [t.status for t in trials] == ["completed"] * len(trials), [t.error for t in trials]
    assert [t.reward for t in trials] == pytest.approx(expected)
    return len(trials)


# ------------------------------------------------------------------------------------------------ config
def test_plugins_are_stored_in_the_config_and_change_no_fingerprint():
    cfg = NasConfig(plugins=("my_pkg.latency", "other"))
    assert from_yaml(NasConfig, to_yaml(cfg)) == cfg
    assert fingerprint(cfg) == fingerprint(NasConfig())
    # A config stored before the key existed reads, with none.
    old = NasConfig.migrate_dict({"search": {"controller": "random", "trials": 3}})
    assert "plugins" not in old and from_dict(NasConfig, old).plugins == ()


@pytest.mark.parametrize(
    "value, message",
    [
        ("my_pkg", "plugins: expected a list"),
        (["plugins/toy.py"], "a plug-in is an importable Python module name such as my_pkg.my_evaluator"),
        (["a", "a"], "plugins must name each module once"),
    ],
)
def test_a_bad_plugins_list_is_refused(value, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(NasConfig, {"plugins": value})


# ------------------------------------------------------------------------------------------------ errors
def test_a_plugin_that_cannot_be_imported_is_one_line_and_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spx_raises.py").write_text("raise ValueError('bad setting in the plug-in')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "preset.yaml").write_text("plugins: [spx_missing_too]\n")
    cases = [
        (["search", "--plugin", "spx_no_such_module"],
         "spinenas: error: plug-in 'spx_no_such_module' cannot be imported: no module named 'spx_no_such_module' "
         "(the directory that holds it must be on PYTHONPATH)"),
        (["search", "--plugin", "spx_raises", "--evaluator", "surrogate"],
         "spinenas: error: plug-in 'spx_raises' raised when imported: ValueError: bad setting in the plug-in"),
        (["search", "--plugin", "./plugin.py"], "a plug-in is an importable Python module name"),
        (["search", "--preset", "preset.yaml"],
         "preset file preset.yaml: plug-in 'spx_missing_too' cannot be imported"),
        (["search", "--resume", "old", "--plugin", "spx_no_such_module"], "plug-in 'spx_no_such_module' cannot be"),
        (["calibrate", "--plugin", "spx_no_such_module"], "plug-in 'spx_no_such_module' cannot be imported"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(capsys, *argv, "--db", str(tmp_path / "r.db"))
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (argv, err)
        assert sorted(os.listdir(tmp_path)) == ["preset.yaml", "spx_raises.py"], argv  # no database, no runs/


# ------------------------------------------------------------------------------------------------ runs
def test_a_search_with_a_plugin_in_the_drivers_process_and_its_resume_without_the_flag(tmp_path, toy, monkeypatch,
                                                                                       capsys):
    monkeypatch.chdir(tmp_path)
    db = str(tmp_path / "r.db")
    common = ["--db", db, "--runner", "local", *QUIET]
    code, out, err = run_cli(capsys, "search", "--plugin", toy, *TOY, "--set", "runner.local.in_process=true",
                             "--set", "evaluator.toy.scale=0.5", "--trials", "3", "--name", "p", *common)
    assert code == 0, err
    assert "with the toy-random controller" in out and "evaluator toy" in out
    store = ResultStore(f"sqlite:///{db}")
    stored = from_yaml(NasConfig, store.open_search("p").config)
    assert stored.plugins == (toy,) and stored.evaluator.get().scale == 0.5
    assert _check_rewards(store, "p", 0.5) == 3
    store.close()
    # A new process knows nothing of the plug-in: the resume imports it from the stored config.
    _forget(toy)
    code, out, err = run_cli(capsys, "search", "--resume", "p", "--trials", "5", *common)
    assert code == 0, err
    assert toy in sys.modules and "resuming search 'p': 3 trials done" in out
    store = ResultStore(f"sqlite:///{db}")
    assert _check_rewards(store, "p", 0.5) == 5
    store.close()


@pytest.mark.slow
def test_a_calibration_with_a_plugin_and_its_resume_import_it(tmp_path, toy, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    db = str(tmp_path / "r.db")
    code, out, err = run_cli(capsys, "calibrate", "--plugin", toy, "--set", "evaluator.type=toy", "--runner", "local",
                             "--set", "runner.local.in_process=true", "--archs", "3", "--repeats", "1",
                             "--variance-archs", "0", "--name", "c", "--db", db, "--plain")
    assert code == 0, err
    store = ResultStore(f"sqlite:///{db}")
    trials = store.trials("c")
    assert len(trials) == 6 and all(t.status == "completed" for t in trials)
    store.close()
    _forget(toy)
    code, out, err = run_cli(capsys, "calibrate", "--resume", "c", "--db", db, "--plain")
    assert code == 0, err
    assert "calibration 'c' is complete" in out and toy in sys.modules


@pytest.mark.slow
def test_a_search_with_a_plugin_on_the_local_runners_child_processes_and_its_resume(tmp_path, plugin_root):
    """The driver finds the plug-in through PYTHONPATH; every trial runs in a child process, which has only the
    built-in evaluators until the trial imports the plug-in itself."""
    db = str(tmp_path / "r.db")
    env = dict(os.environ, PYTHONPATH=str(plugin_root))
    common = ["--db", db, "--run-dir", str(tmp_path / "runs"), *QUIET]
    proc = spinenas("search", "--plugin", MODULE, *TOY, "--runner", "local", "--workers", "2", "--trials",
                    "4", "--set", "evaluator.toy.scale=0.25", "--name", "loc", *common, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # Without the folder on its path the resume cannot import what the stored config names: one line, nothing run.
    gone = spinenas("search", "--resume", "loc", "--trials", "6", *common, cwd=tmp_path)
    assert gone.returncode == 2 and gone.stderr.strip() == (
        f"spinenas: error: search 'loc': plug-in '{MODULE}' cannot be imported: no module named '{MODULE}' (the "
        "directory that holds it must be on PYTHONPATH)"), gone.stderr
    resumed = spinenas("search", "--resume", "loc", "--trials", "6", *common, cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    store = ResultStore(f"sqlite:///{db}")
    assert _check_rewards(store, "loc", 0.25) == 6
    assert "in_process: false" in store.open_search("loc").config
    store.close()


# ------------------------------------------------------------------------------------------------ ray
@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray of the test's process: its workers know neither PYTHONPATH nor the path of a driver that joins it."""
    import ray

    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.slow
def test_ray_workers_import_the_plugin_from_where_the_driver_found_it(tmp_path, plugin_root, ray_cluster):
    import ray

    @ray.remote(num_cpus=0)
    def importable(name: str) -> bool:
        import importlib.util

        return importlib.util.find_spec(name) is not None

    assert not ray.get(importable.remote(MODULE))  # a worker on its own cannot import it
    db = str(tmp_path / "r.db")
    proc = spinenas("search", "--plugin", MODULE, *TOY, *QUIET, "--trials", "3", "--workers", "1", "--name", "ray",
                    "--set", "evaluator.toy.scale=0.5", "--address", ray_cluster, "--db", db, "--run-dir",
                    str(tmp_path / "runs"), cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(plugin_root)))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "on the ray runner" in proc.stdout
    store = ResultStore(f"sqlite:///{db}")
    assert _check_rewards(store, "ray", 0.5) == 3
    store.close()
