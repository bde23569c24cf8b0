"""`spinenas search`: run (or resume) a search on Ray, recording every trial in the results database."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable
from typing import Any

from nas.cli.commands.jobs import (
    LazyChoices,
    check_machine,
    check_new_name,
    ensure_data,
    open_store,
    run_dir_of,
    say,
    trial_job,
)
from nas.cli.plugins import add_plugin_argument
from nas.cli.ui import UserError, error_text, printable
from results_db.status import FINISHED_STATUSES

logger = logging.getLogger(__name__)

# CLI flag -> config key: the flags are shorthands for these keys.
_FLAG_KEYS = {
    "controller": "controller.type",
    "trials": "search.trials",
    "workers": "search.workers",
    "cpus_per_trial": "search.cpus_per_trial",
    "gpus_per_trial": "search.gpus_per_trial",
    "trial_timeout": "search.trial_timeout_s",
    "evaluator": "evaluator.type",
    "surrogate_duration": "evaluator.surrogate.duration_s",
    "runner": "runner.type",
    "reward": "search.reward",
    "target_flops": "search.target_flops",
    "max_flops": "search.max_flops",
    "retry_pruned": "search.retry_pruned",
    "scheduler": "scheduler.type",
    "rungs": "scheduler.asha.rungs",
    "eta": "scheduler.asha.eta",
    "family": "search.family",
    "seed": "search.seed",
}
# What a resumed search may change: how it runs, not what it searches.
_RESUMABLE = {"trials", "workers", "trial_timeout", "cpus_per_trial", "gpus_per_trial", "runner", "retry_pruned"}


def _overrides(args: argparse.Namespace, allowed: set[str] | None = None) -> list[tuple[str, Any]]:
    """The flags given, as (config key, value) pairs: their values reach the config as argparse typed them."""
    out = []
    for flag, key in _FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if allowed is not None and flag not in allowed:
            raise UserError(f"--{flag.replace('_', '-')} cannot change a resumed search (only "
                            f"{', '.join('--' + f.replace('_', '-') for f in sorted(allowed))} can)")
        if flag == "rungs":  # the rungs of the scheduler chosen (asha's when none is)
            key = f"scheduler.{args.scheduler if args.scheduler not in (None, 'none') else 'asha'}.rungs"
        out.append((key, value))
    return out


def _rungs(text: str) -> tuple[int, ...]:
    """--rungs 100,200: integer steps (their order and range are checked with the config)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integer steps such as 100,200, got {text!r}") \
            from None


def _cmd_search(args: argparse.Namespace) -> int:
    from nas.cli.commands.common import load_config, load_stored_config

    if args.resume is not None and not args.resume:
        raise UserError("--resume needs the name of a stored search ('spinenas searches' lists them), got ''")
    if args.resume and args.name is not None and args.name != args.resume:
        raise UserError("give either --resume NAME or --name NAME, not both")
    if args.resume:
        if args.preset != "demo" or args.set:
            raise UserError("--preset and --set do not apply to --resume: a resumed search keeps its stored config")
        overrides = _overrides(args, _RESUMABLE)
    else:
        overrides = _overrides(args) + list(args.set or [])
    if args.trials is not None and args.trials < 1:
        raise UserError(f"--trials must be at least 1, got {args.trials}")
    if args.eta is not None and args.eta < 2:
        raise UserError(f"--eta must be an integer >= 2 (the reduction factor; 1 would stop nothing), got {args.eta}")
    if args.max_flops is not None and not (math.isfinite(args.max_flops) and args.max_flops > 0):
        raise UserError(f"--max-flops must be a positive number of multiply-adds per image (e.g. 2e9), got "
                        f"{args.max_flops:g}")
    if args.top < 0:
        raise UserError(f"--top must be at least 0 (0: no list at the end), got {args.top}")
    faults = _faults(args.inject_faults)
    plugins = _plugins(args)  # before anything else is read: a config may name what they register

    # Everything the user gave is checked before anything is created: config, name, this machine's resources.
    if args.resume:  # the flags' values, before the database is opened (the stored config is checked with them)
        _flag_checked(args, lambda: _resolve_flags(overrides))
    else:
        cfg = _flag_checked(args, lambda: load_config(args.preset, overrides, plugins))
        _check_search_config(cfg, args)
        if args.name is not None:
            check_new_name(args.name)
        stem = re.sub(r"[^A-Za-z0-9._-]", "-", os.path.splitext(os.path.basename(args.preset))[0]).lstrip("._-")
        name = args.name or f"{stem or 'search'}-{time.strftime('%Y%m%d-%H%M%S')}"
        check_machine(cfg, args)
        ensure_data(cfg)  # a dataset that is not there fails before the database is made (if the evaluator reads one)
    run_dir_of(args, name if not args.resume else args.resume)  # before the database
    store, url = open_store(args.db, create=not args.resume)
    try:
        if args.resume:
            try:
                record = store.open_search(args.resume)
            except LookupError as e:
                raise UserError(error_text(e)) from None
            if record.kind != "search":
                raise UserError(f"{args.resume!r} is a {record.kind} study, not a search; continue it with "
                                f"'spinenas calibrate --resume {args.resume}'")
            cfg = load_stored_config(record.config, overrides, search=args.resume, plugins=plugins)
            name = args.resume
            check_machine(cfg, args)
            done = sum(t.status in FINISHED_STATUSES for t in store.trials(name))
            if cfg.search.trials < done:
                raise UserError(f"--trials {cfg.search.trials} is below the {done} trials search {name!r} has "
                                "finished")
            if record.status == "completed" and done >= cfg.search.trials:
                say(f"search {name!r} is complete: {done} of {cfg.search.trials} trials finished; nothing to do "
                    f"(--trials N above {done} extends it)")
                return 0
        else:
            try:
                store.open_search(name)
            except LookupError:
                pass
            else:
                raise UserError(f"a search named {name!r} already exists in {url}; continue it with --resume "
                                f"{name}, or choose another --name")
        if args.resume:
            ensure_data(cfg)
        return _run(cfg, name, store, url, args, faults)
    finally:
        store.close()


def _plugins(args: argparse.Namespace) -> tuple[str, ...]:
    """The --plugin modules, imported (a resume adds them to its stored ones)."""
    from nas.cli.plugins import import_or_exit

    return import_or_exit(args.plugin or ())


def _faults(text: str | None) -> dict[str, list[int]] | None:
    if not text:
        return None
    from nas.engine.faults import check_faults

    try:
        return check_faults(json.loads(text))
    except (ValueError, json.JSONDecodeError) as e:
        raise UserError(str(e).splitlines()[0]) from None


def _flag_checked(args: argparse.Namespace, load: Callable[[], Any]) -> Any:
    """`load()`, its error naming the flag that set the key it is about ('--seed: search.seed must be ...')."""
    try:
        return load()
    except UserError as e:
        text = str(e)
        for flag, key in _FLAG_KEYS.items():
            if getattr(args, flag, None) is not None and text.startswith((f"{key} ", f"{key}: ")):
                raise UserError(f"--{flag.replace('_', '-')}: {text}") from None
        raise


def _resolve_flags(overrides: list[Any]) -> Any:
    """The flags' overrides on the default config: their types and ranges, checked before a resume opens the
    database (none of the flags a resume takes depends on another setting)."""
    from nas.config.schema import NasConfig
    from nas.config.codec import ConfigError, resolve

    try:
        return resolve(NasConfig, NasConfig(), overrides)
    except ConfigError as e:
        raise UserError(str(e)) from None


def _check_search_config(cfg: Any, args: argparse.Namespace) -> None:
    """What the driver builds from the config, checked before anything is created: the space, the controller's
    settings; and flags that only mean something with another setting."""
    from nas.config.schema import controller_config
    from proxy_task.config import excerpt
    from search_space import SearchSpace
    from search_space.families import FAMILIES

    if cfg.search.family not in FAMILIES:
        raise UserError(f"unknown family {excerpt(cfg.search.family)}; expected one of {', '.join(FAMILIES)}")
    try:
        SearchSpace(cfg.search.family, window=cfg.search.window or None)
        controller_config(cfg)
    except ValueError as e:
        raise UserError(error_text(e)) from None
    for flag, key in _FLAG_KEYS.items():  # a flag that sets one evaluator's setting (evaluator.NAME.FIELD)
        section, owner, *field = key.split(".")
        if section == "evaluator" and field and getattr(args, flag, None) is not None and owner != cfg.evaluator.type:
            raise UserError(f"--{flag.replace('_', '-')} is a setting of the {owner} evaluator, but the evaluator is "
                            f"{cfg.evaluator.type!r}: give --evaluator {owner} too")
    if args.eta is not None and cfg.scheduler.type != "asha":
        raise UserError("--eta is a setting of --scheduler asha: give --scheduler asha too")
    settings = cfg.scheduler.get()
    if args.rungs is not None and (settings is None or tuple(getattr(settings, "rungs", ())) != args.rungs):
        raise UserError("--rungs are the steps of a scheduler that judges trials: give --scheduler asha or median "
                        "too")
    if args.target_flops is not None and cfg.search.reward != "ap-flops":
        raise UserError(f"--target-flops is the target of the ap-flops reward, but the reward is "
                        f"{cfg.search.reward!r}: give --reward ap-flops too")


def _calibration_note(store: Any, fingerprint: str, preset: str) -> str:
    """What the newest calibration study of this search's proxy found (in its database, else in the databases
    committed with the project), or a warning that there is none."""
    found = _study_of(store, fingerprint)
    if found is not None:
        return printable(f"  calibration {found[1]}")
    from nas.cli.commands.common import shipped_databases
    from results_db.reader import ResultReader

    for path in shipped_databases():
        try:
            with ResultReader(path) as reader:
                found = _study_of(reader, fingerprint)
        except Exception:  # noqa: BLE001 - a courtesy: a committed database that cannot be read says nothing
            continue
        if found is not None:
            return printable(f"  no calibration of this proxy in this database, but {path} holds one ('spinenas "
                             f"calibration show {found[0]} --db {path}'): {found[1]}")
    return (f"  warning: no calibration of this proxy in the database: 'spinenas calibrate --preset {preset}' "
            "measures whether it ranks architectures as a longer training does (its seed noise too)")


def _study_of(reader: Any, fingerprint: str) -> tuple[str, str] | None:
    """(name, "'NAME' of this proxy: tau ... at its last step against N steps; its verdict") of the newest study of
    the proxy in `reader`, or None."""
    from nas.calibration.study import find_calibrations, proxy_figures

    for name, _ in reversed(find_calibrations(reader, fingerprint)):
        d = proxy_figures(reader, name, fingerprint)  # a study of variants: the variant that is this proxy
        if d is None:
            continue
        last = d["rungs"][-1]
        a = last["all"]
        tau = "-" if a["tau"] is None else f"{a['tau']:.2f} (90% interval {a['tau_low']:.2f} to {a['tau_high']:.2f})"
        return name, (f"{name!r} of this proxy: tau {tau} at its last step ({last['step']}) against "
                      f"{d['reference']['steps']} steps; {d['verdict']['text']}")
    return None


def _intro(cfg: Any, name: str, url: str, run_dir: str) -> list[str]:
    """The search's header, shown before Ray and the runner start (seconds on a busy machine)."""
    from nas.config.schema import scheduler_rungs
    from nas.engine.schedulers import build_scheduler

    s = cfg.search
    cpus = f"{s.cpus_per_trial:g} CPU{'' if s.cpus_per_trial == 1 else 's'}"
    lines = [f"search {name!r}: {s.trials} trials of the {s.family} space with the {cfg.controller.type} controller, "
             f"{s.workers} at a time ({cpus} each) on the {cfg.runner.type} runner, evaluator "
             f"{cfg.evaluator.type}, reward {s.reward}",
             f"  database {url}; log {os.path.join(run_dir, 'search.log')}; TensorBoard: tensorboard --logdir "
             f"{run_dir}"]
    scheduler = build_scheduler(cfg.scheduler.type, cfg.scheduler.get(), scheduler_rungs(cfg)).describe(
        cfg.proxy.train_steps)
    if scheduler:
        lines.append(f"  {scheduler}")
    if s.max_flops:
        lines.append(f"  max FLOPs {s.max_flops:.4g} (multiply-adds per image at {cfg.proxy.image_size} px): "
                     "proposals over it are rejected untrained and fed back as failures")
    return lines


def _run(cfg: Any, name: str, store: Any, url: str, args: argparse.Namespace, faults: Any) -> int:
    from nas.engine.driver import SearchDriver

    run_dir = run_dir_of(args, name)
    s = cfg.search

    def make(view: Any) -> SearchDriver:
        return SearchDriver(cfg, name=name, store=store, run_dir=run_dir, resume=bool(args.resume), faults=faults,
                            view=view)

    with trial_job(cfg, args, run_dir, make, intro=_intro(cfg, name, url, run_dir)) as driver:
        driver.view.line(_calibration_note(store, driver.fingerprint, args.preset))
        outcome = driver.run()
    rejected = f", {outcome.rejected} rejected over max FLOPs" if s.max_flops or outcome.rejected else ""
    if cfg.scheduler.type != "none" or outcome.pruned:
        rejected += f", {outcome.pruned} pruned"
    say(f"search {name!r} {'stopped' if outcome.interrupted else 'finished'}: {outcome.trials} trials "
         f"({outcome.completed} completed, {outcome.failed} failed, {outcome.cached} cached{rejected}) in "
         f"{outcome.wall_s / 60:.1f} min")
    if outcome.trials and args.top > 0:
        from nas.cli.commands.common import open_reader, print_top

        with open_reader(url) as reader:
            print_top(reader, searches=[name], k=args.top)
    return 130 if outcome.interrupted else 0


def register(sub: Any) -> None:
    """Adds `search` to the `spinenas` subcommands."""
    from nas.config.schema import REWARDS
    from results_db.url import DB_HELP

    p = sub.add_parser(
        "search",
        help="run a SpineNet search on Ray (or resume one)",
        description="Search SpineNet architectures: a controller proposes, Ray trains each proposal with the "
        "proxy task (warm worker processes: up to search.trials_per_worker TensorFlow trials each), the COCO AP "
        "becomes the reward, and every trial is written to the results database the moment it finishes. Runs "
        "locally (ray.init on this machine) or on a cluster (--address, or scripts/search.py under 'ray submit'). "
        "Ctrl-C or a crash loses nothing: 'spinenas search --resume NAME' finishes the budget, re-runs the trials "
        "that were in flight and continues the controller from its last checkpoint. Watch it "
        "with 'spinenas top' from another shell. Exit codes: 0 done, 1 the database failed under the search (a "
        "full disk, a write lock another process held past the busy timeout), 2 bad input (nothing changed), 3 another driver took the search over (this one was paused past "
        "its lease), 130 Ctrl-C, 143 SIGTERM.",
    )
    p.add_argument("--preset", default="demo",
                   help="demo (default: embedded synthetic data, real proxy training on CPU), paper, vertex-gpu, "
                        "or a YAML file of a whole config")
    p.add_argument("--name", help="the search's name: letters, digits, '.', '_', '-' (default: PRESET-DATE-TIME)")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--resume", metavar="NAME", help="continue the stored search NAME")
    p.add_argument("--controller", choices=LazyChoices("controller", "controller_names"), metavar="NAME",
                   help="ppo (paper), evolution or random (controller.type; its settings: --set controller.ppo.KEY=V)")
    p.add_argument("--family", help="search space: r35-sp18, r23-sp30, r14-sp39, r0-sp53, spinenet49")
    p.add_argument("--trials", type=int, help="trials to finish (completed, failed, cached and rejected count)")
    p.add_argument("--workers", type=int, help="trials at once")
    p.add_argument("--cpus-per-trial", type=float, help="Ray CPUs per trial (TF threads)")
    p.add_argument("--gpus-per-trial", type=float, help="Ray GPUs per trial")
    p.add_argument("--trial-timeout", type=float, metavar="S", help="fail a trial still running after S seconds")
    p.add_argument("--evaluator", choices=LazyChoices("proxy_task.evaluator", "evaluator_names"), metavar="NAME",
                   help="retinanet (the proxy task) or surrogate (instant structural reward, for tests) "
                        "(evaluator.type)")
    p.add_argument("--surrogate-duration", type=float, metavar="S",
                   help="simulated seconds per surrogate trial (evaluator.surrogate.duration_s)")
    p.add_argument("--runner", choices=LazyChoices("nas.engine.runners", "runner_names"), metavar="NAME",
                   help="ray (default: Ray tasks here or on --address) or local (child processes, no Ray; "
                        "--set runner.local.in_process=true runs TF-free trials in this process) (runner.type)")
    p.add_argument("--reward", choices=REWARDS, help="ap, or ap-flops (MnasNet-style, needs --target-flops)")
    p.add_argument("--target-flops", type=float, help="FLOPs target of ap-flops (multiply-adds per image)")
    p.add_argument("--max-flops", type=float, metavar="X",
                   help="a hard limit (search.max_flops): a proposal whose detector has more than X multiply-adds "
                        "per image at the proxy's resolution (e.g. 2e9; as `spinenas top` shows FLOPs) is not "
                        "trained, but stored as rejected and fed back as a failed trial (search.reward_for_failure); "
                        "it counts toward --trials. Fixed for the life of a search: --resume keeps it and refuses "
                        "--max-flops")
    p.add_argument("--scheduler", choices=LazyChoices("nas.engine.schedulers", "scheduler_names"), metavar="NAME",
                   help="none (default: every trial trains to the end), asha (asynchronous successive halving: a "
                        "trial below the top 1/eta of the rewards at a rung is stopped and stored as pruned) or "
                        "median (the median stopping rule: a trial whose best reward so far is below the completed "
                        "trials' median at a rung is stopped; scheduler.median.warmup_trials, .warmup_steps) "
                        "(scheduler.type). Fixed for the life of a search")
    p.add_argument("--rungs", type=_rungs, metavar="S1,S2",
                   help="the scheduler's rungs in proxy steps, increasing and before the last step "
                        "(scheduler.asha.rungs or scheduler.median.rungs; default the proxy's eval_at_steps); each "
                        "implies an intermediate evaluation")
    p.add_argument("--eta", type=int, help="asha's reduction factor, >= 2 (scheduler.asha.eta; default 3)")
    p.add_argument("--retry-pruned", action="store_const", const=True,
                   help="train architectures again that a pruned trial has a reward for (search.retry_pruned; "
                        "default: a pruned architecture is known, like a completed one, and its reward reused)")
    p.add_argument("--seed", type=int, help="seed of the controller and the trials")
    p.add_argument("--address", help="an existing Ray cluster ('auto' on a cluster node; HOST:PORT of a cluster "
                   "with token authentication needs RAY_AUTH_MODE=token); default: start a Ray of its own here")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config key (repeatable)")
    add_plugin_argument(p)
    p.add_argument("--run-dir", help="TensorBoard scalars and the search log (default runs/NAME)")
    p.add_argument("--top", type=int, default=5, help="architectures listed at the end (default 5; 0: none)")
    p.add_argument("--plain", action="store_true",
                   help="plain progress lines even on a terminal (default there: live lines per running trial)")
    # Fault injection for tests and scripts/bench/faults.py: JSON {"raise": [i], "nan": [i], "crash_once": [i],
    # "hang": [i]} by trial index.
    p.add_argument("--inject-faults", help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_search)
