"""The runner seam around a job (`nas.engine.runners`): a runner registered as a plug-in brings its own check of the
per-trial request, called before anything of the job is created, and its own backend, entered and exited around the
job at the point its ``before_writes`` names; a runner that brings neither has nothing to check and nothing to
start. No Ray: the probe runner is the local runner in the driver's process."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import pytest

from nas.cli.ui import UserError
from nas.engine.runners import RUNNERS, Backend, Runner, build_backend, check_request, register_runner
from nas.engine.runners.config import LocalRunnerConfig
from nas.engine.runners.local import LocalRunner
from tests.nas.helpers import cfg_of, run_cli

# What the probe saw, in order: (event, what of the job existed then).
EVENTS: list[tuple[str, dict[str, bool]]] = []
REFUSAL = "the probe runner cannot serve --cpus-per-trial 1 here"


def _created() -> dict[str, bool]:
    """What of the job exists (the test runs in its tmp_path): the database, the run folder, the search's row."""
    row = False
    if os.path.exists("r.db"):
        con = sqlite3.connect("file:r.db?mode=ro", uri=True)
        try:
            row = con.execute("select count(*) from searches where name = 'p'").fetchone()[0] == 1
        except sqlite3.Error:  # no tables yet
            pass
        finally:
            con.close()
    return {"db": os.path.exists("r.db"), "runs": os.path.exists("runs"), "search": row}


class _ProbeBackend(Backend):
    def __init__(self, before_writes: bool, interrupt: bool) -> None:
        self.before_writes = before_writes
        self.interrupt = interrupt

    def __enter__(self) -> _ProbeBackend:
        EVENTS.append(("enter", _created()))
        if self.interrupt:  # Ctrl-C while it starts
            raise KeyboardInterrupt
        return self

    def __exit__(self, *exc_info: object) -> None:
        EVENTS.append(("exit", _created()))


class ProbeRunner(LocalRunner):
    """The local runner, with a check and a backend of its own that record when they run."""

    refuse = False
    before_writes = False
    interrupt = False

    @classmethod
    def check_request(cls, cfg: Any, *, address: str | None = None) -> tuple[str, ...]:
        EVENTS.append(("check", _created()))
        if cls.refuse:
            raise UserError(REFUSAL)
        return (f"the probe runner checked {cfg.search.cpus_per_trial:g} CPUs per trial",)

    @classmethod
    def backend(cls, cfg: Any, *, say: Any, address: str | None = None) -> Backend:
        return _ProbeBackend(cls.before_writes, cls.interrupt)

    def __init__(self, settings: Any, **kwargs: Any) -> None:
        EVENTS.append(("runner", _created()))
        super().__init__(settings, **kwargs)


def _no_hooks(settings: Any, **kwargs: Any) -> LocalRunner:
    """A runner target that is a factory, not a `Runner` class: no check, no backend."""
    return LocalRunner(settings, **kwargs)


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """The probe runner registered (as a plug-in's import would), run in tmp_path; taken out again afterwards."""
    monkeypatch.chdir(tmp_path)
    register_runner("probe", f"{__name__}:ProbeRunner", config_cls=LocalRunnerConfig)
    EVENTS.clear()
    yield ProbeRunner
    RUNNERS.unregister("probe")
    EVENTS.clear()


SEARCH = ["search", "--runner", "probe", "--set", "runner.probe.in_process=true", "--evaluator", "surrogate",
          "--controller", "random", "--trials", "2", "--workers", "1", "--cpus-per-trial", "1", "--name", "p",
          "--db", "r.db", "--top", "0", "--plain"]


def test_a_plugin_runners_refusal_comes_before_anything_is_created(probe, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(probe, "refuse", True)
    code, out, err = run_cli(capsys, *SEARCH)
    assert code == 2 and err.strip().splitlines() == [f"spinenas: error: {REFUSAL}"], err
    assert EVENTS == [("check", {"db": False, "runs": False, "search": False})]
    assert os.listdir(tmp_path) == []  # no database, no run folder


def test_a_plugin_runners_check_and_backend_frame_the_job(probe, capsys):
    code, out, err = run_cli(capsys, *SEARCH)
    assert code == 0, err
    assert "warning: the probe runner checked 1 CPUs per trial" in err
    assert [e for e, _ in EVENTS] == ["check", "enter", "runner", "exit"]
    states = dict(EVENTS)
    assert states["check"] == {"db": False, "runs": False, "search": False}
    assert states["enter"]["search"]  # a backend that starts something: after the job's rows (and lease)


def test_a_backend_that_joins_is_entered_before_the_job_writes(probe, monkeypatch, capsys):
    monkeypatch.setattr(probe, "before_writes", True)
    code, out, err = run_cli(capsys, *SEARCH)
    assert code == 0, err
    assert [e for e, _ in EVENTS] == ["check", "enter", "runner", "exit"]
    assert dict(EVENTS)["enter"] == {"db": True, "runs": True, "search": False}


def test_ctrl_c_while_a_plugin_backend_starts_leaves_a_search_that_resumes(probe, monkeypatch, capsys):
    monkeypatch.setattr(probe, "interrupt", True)
    code, out, err = run_cli(capsys, *SEARCH)
    assert code == 130
    assert "interrupted while starting: run 'spinenas search --resume p' to continue" in out
    assert [e for e, _ in EVENTS] == ["check", "enter"]  # never entered: nothing to exit
    con = sqlite3.connect("file:r.db?mode=ro", uri=True)
    assert con.execute("select status from searches where name = 'p'").fetchone()[0] == "stopped"
    con.close()
    monkeypatch.setattr(probe, "interrupt", False)
    code, out, err = run_cli(capsys, "search", "--resume", "p", "--db", "r.db", "--top", "0", "--plain")
    assert code == 0 and "[2/2]" in out, err


def test_a_runner_without_a_check_or_backend_gets_the_harmless_defaults():
    cfg = cfg_of()
    assert Runner.check_request(cfg, address="10.0.0.5:6379") == ()
    backend = Runner.backend(cfg, say=print)
    assert type(backend) is Backend and not backend.before_writes
    with backend as entered:
        assert entered is backend
    register_runner("bare", f"{__name__}:_no_hooks", config_cls=LocalRunnerConfig)
    try:
        bare = cfg_of(runner="bare")
        assert check_request(bare, address="auto") == ()
        assert type(build_backend(bare, say=print)) is Backend
    finally:
        RUNNERS.unregister("bare")
