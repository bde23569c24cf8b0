"""What the search job's tests share: configs of a surrogate search, running a driver, counting finished trials,
running one trial on a runner with a cooperative stop, running the CLI in or out of the test's process."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from nas.config.schema import (ControllerSection, EvaluatorSection, NasConfig, RunnerSection, SchedulerSection,
                               SearchConfig)
from nas.engine.driver import SearchDriver
from results_db import ResultStore


def cfg_of(*, controller: str = "random", runner: str = "local", in_process: bool = True, duration: float = 0.0,
           noise: float = 0.0, proxy: dict | None = None, asha: dict | None = None, median: dict | None = None,
           **search) -> NasConfig:
    """A surrogate search on the local runner (in the driver's process by default); with `asha` or `median` (its
    settings, e.g. ``{'rungs': (50, 100)}``), under that scheduler."""
    from proxy_task.config import ProxyConfig

    base = dict(trials=8, workers=2, cpus_per_trial=1.0, seed=3)
    base.update(search)
    runner_section = RunnerSection.of("local", in_process=in_process) if runner == "local" else RunnerSection.of(runner)
    return NasConfig(
        search=SearchConfig(**base),
        controller=ControllerSection(type=controller),
        evaluator=EvaluatorSection.of("surrogate", duration_s=duration, noise=noise),
        runner=runner_section,
        proxy=ProxyConfig(**{"train_steps": 200, "log_every": 50, "warmup_steps": 10, **(proxy or {})}),
        scheduler=(SchedulerSection.of("asha", **asha) if asha is not None
                   else SchedulerSection.of("median", **median) if median is not None else SchedulerSection()),
    )


def run_search(tmp_path, cfg, name="s", resume=False, faults=None, db=None, **kwargs):
    """Runs a search to its end with `SearchDriver`: (its store, its outcome, the lines it printed)."""
    store = ResultStore(db or f"sqlite:///{tmp_path / 'r.db'}")
    lines: list[str] = []
    driver = SearchDriver(cfg, name=name, store=store, run_dir=str(tmp_path / "runs" / name), resume=resume,
                          faults=faults, out=lines.append, **kwargs)
    driver.start()
    outcome = driver.run()
    return store, outcome, lines


def finished(db: str, name: str) -> int:
    """Finished trials of a search, read from another process's database (0 while it does not exist yet)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        n = con.execute("select count(*) from trials t join searches s on s.id = t.search_id where s.name = ? and "
                        "t.status in ('completed', 'failed', 'cached', 'rejected', 'pruned')", (name,)).fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return 0


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """`spinenas ARGV` in this process: (exit code, stdout, stderr); argparse's own errors give their code too."""
    from nas import cli

    try:
        code = cli.main(list(argv))
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def spinenas(*argv, **kw) -> subprocess.CompletedProcess:
    """`spinenas ARGV` in a fresh interpreter, output captured."""
    return subprocess.run([sys.executable, "-m", "nas.cli", *argv], capture_output=True, text=True, **kw)


def stop_one_trial(runner_name: str, cfg: NasConfig, *, stop_at: int, trials_per_worker: int = 1,
                   pids: list[int] | None = None) -> tuple[dict, list[int], dict]:
    """Runs trial 7 on a runner and asks it to stop at its report of step `stop_at`, then runs trial 8 unstopped.

    Returns:
      (trial 7's result, the steps trial 7 reported, trial 8's result); the two trials' worker PIDs are appended
      to `pids` when given.
    """
    from nas.engine.driver import trial_spec
    from nas.engine.runners import TrialTask, build_runner
    from search_space import SPINENET_49

    seen: list[int] = []

    def on_report(trial_id, step, metrics):
        if trial_id == 7:
            seen.append(step)
            if step == stop_at:
                runner.stop(trial_id)

    def one(task):
        runner.submit(task)
        outcomes = []
        while not outcomes:
            outcomes = runner.poll(1.0)
        if pids is not None:
            pids.append(outcomes[0].payload["pid"])
        return outcomes[0].payload["result"]

    runner = build_runner(runner_name, cfg.runner.get(), spec=trial_spec(cfg),
                          on_report=on_report, trials_per_worker=trials_per_worker)
    try:
        arch = SPINENET_49.canonical().to_json()
        first = one(TrialTask(7, 0, arch, 0))
        second = one(TrialTask(8, 1, arch, 1))
    finally:
        runner.close()
    return first, seen, second


def worker_pids(runner_name: str, cfg: NasConfig, *, trials: int, trials_per_worker: int) -> list[int]:
    """Runs `trials` trials one after another on a runner that reuses workers: the PID of each trial's worker."""
    from nas.engine.driver import trial_spec
    from nas.engine.runners import TrialTask, build_runner
    from search_space import SPINENET_49

    runner = build_runner(runner_name, cfg.runner.get(), spec=trial_spec(cfg),
                          on_report=lambda *a: None, trials_per_worker=trials_per_worker)
    pids = []
    try:
        for i in range(trials):
            runner.submit(TrialTask(10 + i, i, SPINENET_49.canonical().to_json(), i))
            outcomes: list = []
            while not outcomes:
                outcomes = runner.poll(1.0)
            assert outcomes[0].payload is not None, outcomes[0].error
            pids.append(outcomes[0].payload["pid"])
    finally:
        runner.close()
    return pids
