"""`spinenas calibrate` and `spinenas calibration show`: measure how far a preset's proxy can be trusted."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
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
from nas.cli.plugins import add_plugin_argument, import_or_exit
from nas.cli.ui import UserError, error_text, print_table, printable

# Flags of `calibrate` that set keys of the preset's config (how the study's trainings run).
#: Candidates a study takes from --archs-from (a study trains each of them twice).
MAX_CANDIDATES = 1000

#: Trainings of one variance candidate with different seeds (--repeats) at most.
MAX_REPEATS = 100

_FLAG_KEYS = {"workers": "search.workers", "cpus_per_trial": "search.cpus_per_trial",
              "gpus_per_trial": "search.gpus_per_trial", "trial_timeout": "search.trial_timeout_s",
              "runner": "runner.type"}


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected steps such as 100,200,400,800, got {text!r}") from None


def _candidates(args: argparse.Namespace, reader_db: str | None) -> tuple[list[Any] | None, str]:
    """The candidates given by --archs-from or --from-search, or None for the default ones."""
    from nas.calibration.study import Candidate
    from search_space import ArchSpec, InvalidArchError

    if args.archs_from and args.from_search:
        raise UserError("give either --archs-from FILE or --from-search NAME, not both")
    if args.archs_from:
        from search_space.spec import MAX_JSON_DEPTH, MAX_SPEC_BYTES, parse_bounded_json

        limit = MAX_CANDIDATES * MAX_SPEC_BYTES // 64  # a spec's JSON is about 1 KB; each may use 16 KB
        try:
            if os.path.getsize(args.archs_from) > limit:
                raise UserError(f"--archs-from {args.archs_from}: larger than {limit:,} bytes; a list of at most "
                                f"{MAX_CANDIDATES} specs is expected")
            with open(args.archs_from, encoding="utf-8") as fh:
                doc = parse_bounded_json(fh.read(limit + 1), max_chars=limit, max_depth=MAX_JSON_DEPTH + 1,
                                         what="the JSON")
        except (OSError, UnicodeDecodeError, InvalidArchError) as e:
            raise UserError(f"--archs-from {args.archs_from}: {str(e).splitlines()[0]}") from None
        if isinstance(doc, list) and len(doc) > MAX_CANDIDATES:
            raise UserError(f"--archs-from {args.archs_from}: {len(doc):,} specs; a study takes at most "
                            f"{MAX_CANDIDATES}")
        if not isinstance(doc, list):
            raise UserError(f"--archs-from {args.archs_from}: expected a JSON list of specs, got {type(doc).__name__}")
        out = []
        for i, item in enumerate(doc):
            try:
                arch = ArchSpec.from_dict(item).canonical()
            except (InvalidArchError, TypeError, ValueError) as e:
                raise UserError(f"--archs-from {args.archs_from}: entry {i}: {e}") from None
            out.append(Candidate(f"given-{i}", "given", arch))
        return out, f"file {os.path.abspath(args.archs_from)}"
    if args.from_search:
        from nas.cli.commands.common import open_reader

        with open_reader(reader_db) as reader:
            ranked = reader.top(searches=[args.from_search], k=args.top,
                                fingerprint=reader.newest_fingerprint([args.from_search]))
            archs = [ArchSpec.from_json(reader.get_arch(r.arch_key).spec_json) for r in ranked]
        if not archs:
            raise UserError(f"search {args.from_search!r} has no completed trial to calibrate with")
        return ([Candidate(f"top-{r.rank}", "given", a) for r, a in zip(ranked, archs, strict=True)],
                f"search {args.from_search} top {args.top}")
    return None, "default"


def _cmd_calibrate(args: argparse.Namespace) -> int:
    _check_flags(args)
    plugins = import_or_exit(args.plugin or ())  # before any config is read: it may name what they register
    # (key, value) pairs: the flags' values reach the configs as argparse typed them.
    overrides = [(key, getattr(args, flag)) for flag, key in _FLAG_KEYS.items()
                 if getattr(args, flag, None) is not None]
    if args.variant and args.reference_from is None and not args.resume:
        raise UserError("--variant needs --reference-from STUDY: the stored study whose candidates and reference "
                        "trainings the variants are scored against")
    if args.resume:
        if args.name is not None and args.name != args.resume:
            raise UserError("give either --resume NAME or --name NAME, not both")
        given = [f for f in ("preset", "archs", "archs_from", "from_search", "repeats", "variance_archs", "rungs",
                             "reference_steps", "reference_set", "target_tau", "seed", "set", "reference_from",
                             "variant")
                 if getattr(args, f) not in (None, [], ())]
        if given:
            raise UserError(f"--{given[0].replace('_', '-')} does not apply to --resume: a resumed study keeps its "
                            "stored settings")
    elif args.retry_failed:
        raise UserError("--retry-failed applies to --resume NAME: it runs a stored study's failed trainings again")
    elif args.reference_from is not None:
        study, name = _variant_study(args, overrides, plugins)
    else:
        study, name = _new_study(args, overrides, plugins)
    run_dir_of(args, name if not args.resume else args.resume)  # before the database
    store, url = open_store(args.db, create=not args.resume)
    try:
        if args.resume:
            name = args.resume
            study = _resumed_study(store, name, args, overrides, plugins)
            if study is None:
                return 0
        else:
            try:
                store.open_search(name)
            except LookupError:
                pass
            else:
                raise UserError(f"a search or study named {name!r} already exists in {url}; continue it with "
                                f"--resume {name}, or choose another --name")
        if args.resume:
            ensure_data(study.proxy)
            ensure_data(study.reference)
        if args.resume:
            _ensure_variant_data(study)
        return _run(study, name, store, url, args)
    finally:
        store.close()


def _new_study(args: argparse.Namespace, overrides: list[tuple[str, Any]],
               plugins: tuple[str, ...]) -> tuple[Any, str]:
    """The study the flags describe, and its name; checked, nothing written."""
    from nas.calibration.study import CalibrationError, StudySettings, build_study
    from nas.cli.commands.common import load_config
    from search_space import get_family

    preset = args.preset or "demo"
    cfg = load_config(preset, [*overrides, *(args.set or [])], plugins)
    try:
        get_family(cfg.search.family)
    except LookupError as e:
        raise UserError(error_text(e)) from None
    candidates, source = _candidates(args, args.db)
    settings = StudySettings(
        preset=preset, archs=args.archs if args.archs is not None else 12,
        repeats=args.repeats if args.repeats is not None else 3,
        variance_archs=args.variance_archs if args.variance_archs is not None else 3,
        rungs=args.rungs or (), reference_steps=args.reference_steps or 0,
        reference_set=tuple(args.reference_set or ()),
        target_tau=args.target_tau if args.target_tau is not None else 0.6,
        seed=args.seed if args.seed is not None else 0, source=source,
    )  # fmt: skip
    try:
        study = build_study(settings, cfg, candidates)
    except CalibrationError as e:
        raise UserError(str(e)) from None
    if args.name is not None:
        check_new_name(args.name)
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", os.path.splitext(os.path.basename(preset))[0])
    name = args.name or f"calibration-{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_machine(cfg, args)
    ensure_data(study.proxy)  # a dataset that is not there fails before the database is made (if one is read)
    ensure_data(study.reference)
    return study, name


def _variant_study(args: argparse.Namespace, overrides: list[tuple[str, Any]],
                   plugins: tuple[str, ...]) -> tuple[Any, str]:
    """The study of --variant's against the stored study --reference-from (read from --db), and its name; checked,
    nothing written."""
    from nas.calibration.study import KIND, REFERENCE, CalibrationError, build_variant_study, parse_variant

    given = [f for f in ("preset", "archs", "archs_from", "from_search", "rungs", "reference_steps", "reference_set",
                         "seed", "set") if getattr(args, f) not in (None, [], ())]
    if given:
        raise UserError(f"--{given[0].replace('_', '-')} does not apply to --reference-from: the candidates, rungs "
                        "and reference are the stored study's; a variant sets its own keys (--variant "
                        "NAME:KEY=VALUE,...)")
    source_name = args.reference_from
    try:
        variants = [parse_variant(v) for v in args.variant or ()]
    except CalibrationError as e:
        raise UserError(str(e)) from None
    if args.name is not None:
        check_new_name(args.name)
    from nas.cli.commands.common import open_reader

    with open_reader(args.db) as reader:
        try:
            record = reader.open_search(source_name)
        except LookupError as e:
            raise UserError(f"--reference-from: {error_text(e)}") from None
        if getattr(record, "kind", "search") != KIND:
            raise UserError(f"--reference-from {source_name!r} is a search, not a calibration study: it has no "
                            "reference trainings")
        source = _stored_study(record.config, source_name, plugins)
        statuses = {t.index: t.status for t in reader.trials(source_name)}
    try:
        study = build_variant_study(source, source_name, variants, repeats=args.repeats,
                                    variance_archs=args.variance_archs, target_tau=args.target_tau)
    except CalibrationError as e:
        raise UserError(str(e)) from None
    refs = sum(statuses.get(p.index) == "completed" for p in source.plan if p.fidelity == REFERENCE and p.repeat == 0)
    if refs < 3:
        raise UserError(f"--reference-from {source_name!r}: {refs} of its {len(source.candidates)} reference "
                        "trainings are done; a ranking needs at least 3 (resume it first)")
    study = _with_run_overrides(study, overrides)
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", source_name).lstrip("._-") or "calibration"
    name = args.name or f"{stem}-variants-{time.strftime('%Y%m%d-%H%M%S')}"
    check_machine(study.proxy, args)
    _ensure_variant_data(study)
    return study, name


def _ensure_variant_data(study: Any) -> None:
    """The datasets of a study's variants (a variant may train on other data), before anything is written."""
    for v in study.variants:
        ensure_data(v.config)


def _with_run_overrides(study: Any, overrides: list[tuple[str, Any]]) -> Any:
    """A study with how its trainings run (workers, CPUs, runner, timeout) set in all its configs. A timeout given
    for the proxy grows for a longer training (the reference, a variant) in proportion to its steps, as at
    creation."""
    if not overrides:
        return study
    from dataclasses import replace

    def scaled(cfg: Any) -> Any:
        ratio = max(1.0, cfg.proxy.train_steps / study.proxy.proxy.train_steps)
        return _resolved(cfg, [(key, float(value) * ratio) if key == "search.trial_timeout_s" else (key, value)
                               for key, value in overrides])

    return replace(study, proxy=_resolved(study.proxy, overrides), reference=scaled(study.reference),
                   variants=tuple(replace(v, config=scaled(v.config)) for v in study.variants))


def _resumed_study(store: Any, name: str, args: argparse.Namespace, overrides: list[tuple[str, Any]],
                   plugins: tuple[str, ...]) -> Any:
    """The stored study `name` with the run flags, or None (said so) when it is complete and nothing is asked."""
    from nas.calibration.study import KIND

    try:
        record = store.open_search(name)
    except LookupError as e:
        raise UserError(error_text(e)) from None
    if record.kind != KIND:
        raise UserError(f"{name!r} is a search, not a calibration study; continue it with 'spinenas search "
                        f"--resume {name}'")
    study = _with_run_overrides(_stored_study(record.config, name, plugins), overrides)
    check_machine(study.proxy, args)
    trials = store.trials(name)
    done = sum(t.status in ("completed", "failed") for t in trials)
    failed = sum(t.status == "failed" for t in trials)
    if record.status == "completed" and done >= len(study.plan) and not (args.retry_failed and failed):
        hint = (f"; {failed} failed: 'spinenas calibrate --resume {name} --retry-failed' runs them again"
                if failed else "")
        say(f"calibration {name!r} is complete: {done} of {len(study.plan)} trainings; nothing to do "
            f"('spinenas calibration show {name}'){hint}")
        return None
    return study


def _stored_study(text: str, name: str, plugins: tuple[str, ...]) -> Any:
    """A stored study, its fidelities' plug-ins imported before it is parsed, with the --plugin ones added."""
    import dataclasses

    from nas.calibration.study import CalibrationError, Study
    from nas.cli.plugins import stored_plugins, with_plugins

    import_or_exit(stored_plugins(text, what=f"study {name!r}"), where=f"study {name!r}")
    try:
        study = Study.from_yaml(text)
    except CalibrationError as e:
        raise UserError(f"study {name!r}: {e}") from None
    return dataclasses.replace(study, proxy=with_plugins(study.proxy, plugins),
                               reference=with_plugins(study.reference, plugins),
                               variants=tuple(dataclasses.replace(v, config=with_plugins(v.config, plugins))
                                              for v in study.variants))


def _check_flags(args: argparse.Namespace) -> None:
    """The flags' own ranges, before anything is read or drawn (the study's settings are checked by `build_study`:
    --archs 1000000 would first draw a million random candidates)."""
    from proxy_task.config import MAX_SEED, check_number

    if args.resume is not None and not args.resume:
        raise UserError("--resume needs the name of a stored study ('spinenas searches' lists them), got ''")
    if args.archs is not None and args.archs > MAX_CANDIDATES:
        raise UserError(f"--archs must be at most {MAX_CANDIDATES} (a study trains each candidate at two fidelities), "
                        f"got {args.archs}")
    if args.repeats is not None and args.repeats > MAX_REPEATS:
        raise UserError(f"--repeats must be at most {MAX_REPEATS} seeds, got {args.repeats}")
    try:
        if args.seed is not None:
            check_number("--seed", args.seed, integer=True, low=0, high=MAX_SEED)
        check_number("--top", args.top, integer=True, low=1, high=MAX_CANDIDATES)
    except ValueError as e:
        raise UserError(str(e)) from None


def _resolved(cfg: Any, overrides: list[Any]) -> Any:
    from nas.config.schema import NasConfig
    from nas.config.codec import ConfigError, resolve

    try:
        return resolve(NasConfig, cfg, overrides)
    except ConfigError as e:
        raise UserError(str(e)) from None


def _run(study: Any, name: str, store: Any, url: str, args: argparse.Namespace) -> int:
    from nas.calibration.study import CalibrationStudy

    cfg = study.proxy
    run_dir = run_dir_of(args, name)

    def make(view: Any) -> CalibrationStudy:
        return CalibrationStudy(study, name=name, store=store, run_dir=run_dir, resume=bool(args.resume),
                                retry_failed=bool(args.retry_failed), view=view)

    with trial_job(cfg, args, run_dir, make) as runner:
        view = runner.view
        s = study.settings
        if study.variants:
            view.line(printable(
                f"calibration {name!r}: {len(study.variants)} variants of the {s.preset} proxy "
                f"({', '.join(f'{v.name} {v.config.proxy.train_steps} steps' for v in study.variants)}) on the "
                f"{len(study.candidates)} candidates of study {study.reference_from!r}, scored against its "
                f"{s.reference_steps}-step reference trainings, {s.repeats} seeds of {s.variance_archs} each: "
                f"{len(study.plan)} trainings on the {cfg.runner.type} runner, {cfg.search.workers} at a time"))
        else:
            view.line(f"calibration {name!r} of the {s.preset} proxy: {len(study.candidates)} candidates at "
                      f"{cfg.proxy.train_steps} steps (rungs {', '.join(map(str, s.rungs))}) and at "
                      f"{s.reference_steps} steps{' ' + ' '.join(s.reference_set) if s.reference_set else ''}, "
                      f"{s.repeats} seeds of {s.variance_archs}: {len(study.plan)} trainings on the "
                      f"{cfg.runner.type} runner, {cfg.search.workers} at a time")
        view.line(f"  database {url}; log {os.path.join(run_dir, 'search.log')}")
        outcome = runner.run()
    say(f"calibration {name!r} {'stopped' if outcome.interrupted else 'finished'}: {outcome.done} of "
         f"{outcome.total} trainings ({outcome.failed} failed) in {outcome.wall_s / 60:.1f} min")
    if not outcome.interrupted:
        from nas.cli.commands.common import open_reader

        with open_reader(url) as reader:
            _print_study(name, _load(reader, name))
        if outcome.failed:
            say(f"{outcome.failed} trainings failed (why: {os.path.join(run_dir, 'search.log')}); if it was not "
                f"the architectures' fault, 'spinenas calibrate --resume {name} --retry-failed' runs them again")
    return 130 if outcome.interrupted else 0


# --------------------------------------------------------------------------------------------------- show
def _load(reader: Any, name: str) -> dict[str, Any]:
    """The study `name`'s figures (`nas.calibration.study.analyze`), with its name and status."""
    from nas.calibration.study import KIND, CalibrationError, read_figures

    try:
        record = reader.open_search(name)
    except LookupError:
        raise UserError(f"no calibration study {name!r} in {reader.display_url}: {_studies_hint(reader)}") from None
    if getattr(record, "kind", "search") != KIND:
        raise UserError(f"{name!r} is a search, not a calibration study: {_studies_hint(reader)}")
    try:
        figures = read_figures(reader, record)
    except CalibrationError as e:
        raise UserError(f"study {name!r}: {e}") from None
    return {"name": name, "status": record.status, **figures}


def _studies_hint(reader: Any) -> str:
    """Which studies this database holds, and where else one is (the committed databases), for `calibration show`'s
    errors: 'its studies: a, b' or 'it holds none; give --db scripts/bench/results/calibration-demo.db (...)'."""
    from nas.calibration.study import KIND
    from nas.cli.commands.common import shipped_databases

    studies = [s.name for s in reader.list_searches() if getattr(s, "kind", "search") == KIND]
    text = f"its studies: {', '.join(studies)}" if studies else "it holds no calibration study"
    here = os.path.abspath(getattr(reader, "url", "").removeprefix("sqlite:///") or ".")
    elsewhere = [p for p in shipped_databases() if os.path.abspath(p) != here and "calibration" in p]
    if elsewhere:
        text += f"; the demo proxy's study is in another database: give --db {elsewhere[0]}"
    return text


def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _print_study(name: str, d: dict[str, Any]) -> None:
    """A study's figures as text; what the database stored (names, the preset, overrides) is shown `printable`
    (tables are, by `print_table`)."""
    if "variants" in d:
        _print_variants(name, d)
        return
    s = d["settings"]
    t = d["trainings"]
    print(printable(f"calibration {name} ({d['status']}): {t['done']} of {t['total']} trainings, {t['failed']} "
                    "failed"))
    ref = d["reference"]
    extra = " " + " ".join(ref["overrides"]) if ref["overrides"] else ""
    print(printable(f"  proxy: the {s['preset']} preset, rungs {', '.join(map(str, s['rungs']))}; reference: "
                    f"{ref['steps']} steps{extra} ({_f(ref['seconds_per_trial'], 0)} s per trial)"))
    print("\nrank agreement of each rung with the reference (Kendall tau, Spearman rho; 90% bootstrap intervals):")
    rows = []
    for r in d["rungs"]:
        a, b = r["all"], r["random"]
        rows.append((r["step"], _f(r["seconds_per_trial"], 0), a["n"], f"{_f(a['tau'], 2)} [{_f(a['tau_low'], 2)}, "
                     f"{_f(a['tau_high'], 2)}]", _f(a["tau_p"]), f"{_f(a['rho'], 2)} [{_f(a['rho_low'], 2)}, "
                     f"{_f(a['rho_high'], 2)}]", b["n"], f"{_f(b['tau'], 2)} [{_f(b['tau_low'], 2)}, "
                     f"{_f(b['tau_high'], 2)}]"))
    print_table(("rung", "s/trial", "n", "tau (all)", "p", "rho (all)", "n random", "tau (random)"), rows)
    v = d["variance"]
    if v["candidates"]:
        print(f"\nseed noise ({s['repeats']} seeds each; CV only where the mean AP is >= 0.05; target CV <= "
              f"{v['cv_target']}):")
        print_table(("candidate", "APs", "mean", "std", "CV"),
                    [(c["name"], " ".join(f"{x:.3f}" for x in c["aps"]), _f(c["mean"]), _f(c["std"]), _f(c["cv"], 2))
                     for c in v["candidates"]])
        if v["spread_over_noise"] is not None:
            ratio = f" ({v['spread_over_noise']:.1f}x the seed std)"
        else:
            ratio = " (no seed noise)" if v["pooled_std"] is not None and v["spread"] is not None else ""
        print(f"pooled seed std {_f(v['pooled_std'])}; spread of the candidates' proxy AP {_f(v['spread'])}{ratio}")
    print("\ncandidates (AP at each rung, and at the reference):")
    print_table(("candidate", "key", *map(str, s["rungs"]), "reference"),
                [(c["name"], c["key"], *(_f(c["proxy_ap"][str(r)]) for r in s["rungs"]), _f(c["reference_ap"]))
                 for c in d["candidates"]])
    print(printable(f"\nverdict: {d['verdict']['text']}", newlines=True))


def _tau(a: dict[str, Any]) -> str:
    return f"{_f(a['tau'], 2)} [{_f(a['tau_low'], 2)}, {_f(a['tau_high'], 2)}]"


def _print_variants(name: str, d: dict[str, Any]) -> None:
    """A study of variants' figures as text: per variant and rung the cost, tau and seed CV; the verdict."""
    s, t, ref, variants = d["settings"], d["trainings"], d["reference"], d["variants"]
    print(printable(f"calibration {name} ({d['status']}): {t['done']} of {t['total']} trainings, {t['failed']} "
                    "failed"))
    extra = " " + " ".join(ref["overrides"]) if ref["overrides"] else ""
    print(printable(f"  variants of the {s['preset']} proxy ({d['proxy_steps']} steps), scored against the "
                    f"reference trainings of study {ref['study']}: {ref['steps']} steps{extra}, {ref['done']} of "
                    f"{ref['total']} done ({_f(ref['seconds_per_trial'], 0)} s per trial)"))
    print()
    print_table(("variant", "steps", "trainings", "overrides"),
                [(v["name"], v["train_steps"], f"{v['trainings']['done']} of {v['trainings']['total']}",
                  " ".join(v["overrides"]) or "(the proxy as stored)") for v in variants])
    print(f"\nper variant and rung: seconds per trial, Kendall tau against the reference (90% bootstrap intervals), "
          f"the largest seed CV of the {s['variance_archs']} repeated candidates ({s['repeats']} seeds; CV only where "
          f"the mean AP is >= 0.05; target CV <= {variants[0]['variance']['cv_target'] if variants else '-'}):")
    rows = [(v["name"], r["step"], _f(r["seconds_per_trial"], 0), r["all"]["n"], _tau(r["all"]), _f(r["all"]["tau_p"]),
             r["random"]["n"], _tau(r["random"]), _f(r["cv_max"], 2)) for v in variants for r in v["rungs"]]
    print_table(("variant", "rung", "s/trial", "n", "tau (all)", "p", "n random", "tau (random)", "CV"), rows)
    noise = [(v["name"], c) for v in variants for c in v["variance"]["candidates"]]
    if noise:
        print("\nseed noise at each variant's last step:")
        print_table(("variant", "candidate", "APs", "mean", "std", "CV"),
                    [(n, c["name"], " ".join(f"{x:.3f}" for x in c["aps"]), _f(c["mean"]), _f(c["std"]),
                      _f(c["cv"], 2)) for n, c in noise])
    if variants:
        print("\ncandidates (AP at each variant's last step, and at the reference):")
        print_table(("candidate", "key", *(v["name"] for v in variants), "reference"),
                    [(c["name"], c["key"], *(_f(v["candidates"][j]["proxy_ap"][str(v["train_steps"])])
                                             for v in variants), _f(c["reference_ap"]))
                     for j, c in enumerate(variants[0]["candidates"])])
    print(printable(f"\nverdict: {d['verdict']['text']}", newlines=True))


def _cmd_calibration_show(args: argparse.Namespace) -> int:
    from nas.cli.commands.common import check_output_path, open_reader, replace_atomically, writing_output

    if args.image is not None:
        if os.path.splitext(args.image)[1].lower() not in (".png", ".svg"):
            raise UserError(f"--image must end in .png or .svg, got {args.image!r}")
        check_output_path(args.image, "--image", directory=False)
    with open_reader(args.db) as reader:
        d = _load(reader, args.name)
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        _print_study(args.name, d)
    if args.image is not None:
        from nas.cli.report import calibration_figure

        with writing_output(args.image, "--image", directory=False):
            replace_atomically(args.image, lambda tmp: calibration_figure(args.name, d).savefig(tmp, dpi=110))
        print(f"\nwrote {args.image}", file=sys.stderr if args.json else sys.stdout)
    return 0


# --------------------------------------------------------------------------------------------------- parsers
def register(sub: Any) -> None:
    """Adds `calibrate` and `calibration` to the `spinenas` subcommands."""
    _register_calibrate(sub)
    _register_calibration(sub)


def _register_calibrate(sub: Any) -> None:
    from results_db.url import DB_HELP

    p = sub.add_parser(
        "calibrate",
        help="measure a proxy: its seed noise and its rank agreement with a longer training",
        description="Calibrate a preset's proxy before searching with it: train candidate architectures "
        "(SpineNet-49, a poor one, a scale-decreased one and random ones of the preset's space; or --archs-from, "
        "--from-search) at the proxy's fidelity with intermediate evaluations at the rungs and at a reference "
        "fidelity (--reference-steps, default 4x the proxy's), and a few again with other seeds. Reports Kendall "
        "tau and Spearman rho of every rung against the reference with bootstrap 90% intervals and p-values, the "
        "coefficient of variation over seeds, the cost of each rung, and the cheapest rung whose tau reaches "
        "--target-tau. The study is stored in the results database (a search of kind calibration: 'spinenas "
        "calibration show NAME', 'spinenas report --search NAME'); --resume NAME continues it after any crash "
        "without repeating a finished training. It runs on the search's runners (Ray by default). With "
        "--reference-from STUDY and one --variant NAME:KEY=VALUE[,KEY=VALUE...] per variant (e.g. --variant "
        "steps400:proxy.train_steps=400 --variant px96:proxy.image_size=96), it trains no reference: each variant "
        "of that stored study's proxy trains on its candidates (with the --repeats) and is scored against its "
        "reference trainings, read from the same --db; 'calibration show' then gives per variant and rung the "
        "seconds per trial, tau and seed CV, and the cheapest variant whose tau reaches the target and whose seed "
        "CV was measured within 0.4 (a rung whose repeated candidates score below AP 0.05 is not admitted: their "
        "noise is unmeasured). Exit codes as search's: 0 done, 1 the database failed under it, 2 bad input, 3 another driver took the study over, 130 "
        "Ctrl-C, 143 SIGTERM.",
    )
    p.add_argument("--preset", help="demo (default), paper, vertex-gpu, or a YAML file: the proxy to calibrate")
    p.add_argument("--name", help="the study's name (default calibration-PRESET-DATE-TIME)")
    p.add_argument("--resume", metavar="NAME", help="continue the stored study NAME")
    p.add_argument("--retry-failed", action="store_true",
                   help="with --resume: run the study's failed trainings again (after a fault that was not the "
                        "architecture's, such as a crashed worker or a timeout too short); their first outcome is "
                        "replaced")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--archs", type=int, help="candidates in all (default 12: SpineNet-49, poor, scale-decreased, "
                                             "and random ones)")
    p.add_argument("--archs-from", metavar="FILE", help="a JSON list of specs to calibrate with instead")
    p.add_argument("--from-search", metavar="NAME", help="calibrate with the best architectures of this search")
    p.add_argument("--top", type=int, default=10, help="with --from-search: how many (default 10)")
    p.add_argument("--repeats", type=int, help="trainings with different seeds of each variance candidate "
                                               "(default 3)")
    p.add_argument("--variance-archs", type=int, help="how many candidates are repeated (default 3)")
    p.add_argument("--rungs", type=_ints, metavar="S1,S2,...",
                   help="steps of the proxy run compared with the reference (default: the proxy's eval_at_steps "
                        "and its last step)")
    p.add_argument("--reference-steps", type=int, metavar="N", help="steps of the reference training "
                                                                    "(default 4x the proxy's)")
    p.add_argument("--reference-set", action="append", metavar="proxy.KEY=VALUE",
                   help="a setting of the reference fidelity only, e.g. proxy.image_size=256 (repeatable)")
    p.add_argument("--target-tau", type=float, help="the Kendall tau a good rung reaches (default 0.6; with "
                                                    "--reference-from: the stored study's)")
    p.add_argument("--reference-from", metavar="STUDY",
                   help="score --variant's against the candidates and reference trainings of this stored study (in "
                        "the same --db); its --repeats and --variance-archs apply to each variant (default: the "
                        "stored study's)")
    p.add_argument("--variant", action="append", metavar="NAME:KEY=VALUE[,KEY=VALUE...]",
                   help="with --reference-from: a variant of the stored proxy, its keys overridden (any config key "
                        "but how the study runs, e.g. steps400:proxy.train_steps=400; its rungs: its "
                        "eval_at_steps, by default the stored ones before its last step, and its last step; NAME "
                        "alone: the proxy as stored); repeatable")
    p.add_argument("--seed", type=int, help="draws the random candidates (default 0)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key of the preset (repeatable)")
    add_plugin_argument(p)
    p.add_argument("--runner", choices=LazyChoices("nas.engine.runners", "runner_names"), metavar="NAME",
                   help="ray (default) or local")
    p.add_argument("--workers", type=int, help="trainings at once")
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per training")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs per training")
    p.add_argument("--trial-timeout", type=float, metavar="S", help="fail a training still running after S seconds")
    p.add_argument("--address", help="an existing Ray cluster (as search --address); default: start a Ray of its own here")
    p.add_argument("--run-dir", help="TensorBoard curves and the log (default runs/NAME)")
    p.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    p.set_defaults(func=_cmd_calibrate)


def _register_calibration(sub: Any) -> None:
    from results_db.url import DB_HELP

    p = sub.add_parser("calibration", help="look at calibration studies",
                       description="Look at the calibration studies in the results database.")
    c_sub = p.add_subparsers(dest="calibration_command", metavar="SUBCOMMAND", parser_class=type(p), required=True)
    q = c_sub.add_parser(
        "show",
        help="a study's rank agreement per rung, seed noise, costs and verdict",
        description="Print a calibration study: tau and rho of each rung against the reference with their "
        "intervals and p-values, over all candidates and the random ones alone; the seed noise (mean, std, CV) of "
        "the repeated candidates; each rung's cost in trial-seconds; and the verdict (the cheapest rung whose tau "
        "reaches the target, or that none does). A study of variants (calibrate --reference-from): per variant and "
        "rung the seconds per trial, tau with its interval and the seed CV, and the cheapest variant and rung whose "
        "tau reaches the target. Works on a study still running (partial).",
    )
    q.add_argument("name", help="the study")
    q.add_argument("--db", help=DB_HELP)
    q.add_argument("--json", action="store_true", help="print JSON")
    q.add_argument("--image", metavar="PATH", help="write a plot to PATH (.png or .svg): tau of each rung against "
                                                  "its steps, or for a study of variants seconds per trial against "
                                                  "tau, per variant")
    q.set_defaults(func=_cmd_calibration_show)
