"""`spinenas searches`, `top`, `show`, `report` and `db upgrade`: looking at the results database.

TF-free and Ray-free. SQLAlchemy, search_space (numpy), rich and matplotlib are imported inside the commands that
need them, so `spinenas top` answers in well under a second. The read commands open the database read-only: they
never create a file and never change one; every mistake is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nas.cli.commands.common import (
    check_output_path,
    curve_rows,
    open_reader,
    print_rich_or_plain,
    replace_atomically,
    writing_output,
)
from nas.cli.ui import UserError, fmt_count, fmt_float, fmt_seconds, fmt_time, print_table, printable
from results_db.status import TrialStatus
from results_db.url import DB_HELP

if TYPE_CHECKING:
    from results_db.records import SearchSummary, TrialRecord


# --------------------------------------------------------------------------------------------------- searches
def _search_duration(s: SearchSummary) -> float | None:
    rec = s.search
    end = rec.finished_at or max(t for t in (rec.updated_at, s.last_finished_at) if t is not None)
    return (end - rec.created_at).total_seconds()


def _status(s: SearchSummary, now: datetime.datetime) -> str:
    """'running' only while its driver's heartbeat is fresh; 'interrupted' for a running search no driver holds."""
    from nas.engine.lease import lease_state

    return lease_state(s.search, now)


def _ago(t: datetime.datetime | None, now: datetime.datetime) -> str:
    if t is None:
        return "-"
    age = (now - t).total_seconds()
    # A time ahead of now was written by a clock that has since been set back, or one that runs ahead.
    return f"{fmt_seconds(age)} ago" if age >= 0 else f"{fmt_seconds(-age)} in the future"


def _budget(s: SearchSummary) -> int | None:
    """A search's budget (``search.trials`` of its stored config; None for a study, or a config that says none)."""
    from nas.cli.commands.common import search_settings

    return search_settings(s.search).budget


def _trials_cell(s: SearchSummary, status: str) -> Any:
    """The trials column: the count, and while a search is not done the budget beside it ('5/16')."""
    if status in ("running", "interrupted"):
        budget = _budget(s)
        if budget is not None and s.trials < budget:
            return f"{s.trials}/{budget}"
    return s.trials


def _cmd_searches(args: argparse.Namespace) -> int:
    with open_reader(args.db) as store:
        summaries = store.search_summaries()
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)  # the store's UTC, naive
    if args.json:
        out = [
            {
                "name": s.search.name,
                "kind": s.search.kind,
                "controller": s.search.controller,
                "family": s.search.family,
                "seed": s.search.seed,
                "status": _status(s, now),
                "driver_last_seen": (s.search.lease_heartbeat or s.search.updated_at).isoformat(),
                "trials": s.trials,
                "budget": _budget(s),
                "counts": dict(s.counts),
                "best_reward": s.best_reward,
                "created_at": s.search.created_at.isoformat(),
                "finished_at": s.search.finished_at.isoformat() if s.search.finished_at else None,
                "duration_s": _search_duration(s),
                "trial_s": s.trial_s,
                "steps": s.steps,
            }
            for s in summaries
        ]
        print(json.dumps(out, indent=2))
        return 0
    if not summaries:
        print("no searches in this database yet")
        return 0
    rows = [
        (
            s.search.name,
            (s.search.controller or "-") if s.search.kind == "search" else f"({s.search.kind})",
            s.search.family or "-",
            _status(s, now) + (f" (driver last seen {_ago(s.search.lease_heartbeat or s.search.updated_at, now)})"
                               if _status(s, now) == "interrupted" else ""),
            _trials_cell(s, _status(s, now)),
            s.counts.get(TrialStatus.COMPLETED, 0),
            s.counts.get(TrialStatus.FAILED, 0),
            s.counts.get(TrialStatus.CACHED, 0),
            s.counts.get(TrialStatus.REJECTED, 0),
            s.counts.get(TrialStatus.PRUNED, 0),
            s.counts.get(TrialStatus.RUNNING, 0) + s.counts.get(TrialStatus.QUEUED, 0),
            fmt_float(s.best_reward),
            fmt_time(s.search.created_at),
            fmt_seconds(_search_duration(s)),
            fmt_seconds(s.trial_s),
            s.steps,
        )
        for s in summaries
    ]
    header = ("name", "controller", "family", "status", "trials", "done", "failed", "cached", "rejected", "pruned",
              "open", "best reward", "started (UTC)", "duration", "trial time", "steps")
    print_rich_or_plain(header, rows)
    return 0


# --------------------------------------------------------------------------------------------------- top
def _cmd_top(args: argparse.Namespace) -> int:
    from nas.cli.commands.common import print_top

    if args.k < 1:
        raise UserError(f"-k must be at least 1, got {args.k}")
    if args.max_flops is not None and args.max_flops <= 0:
        raise UserError(f"--max-flops must be positive, got {args.max_flops:g}")
    fmt = "json" if args.json else "csv" if args.csv else "table"
    with open_reader(args.db) as reader:
        print_top(reader, searches=args.search, k=args.k, max_flops=args.max_flops, fmt=fmt,
                  all_fingerprints=args.all_fingerprints, include_pruned=args.include_pruned)
    return 0


# --------------------------------------------------------------------------------------------------- show
def _cmd_show(args: argparse.Namespace) -> int:
    if args.image is not None:
        ext = os.path.splitext(args.image)[1].lower()
        if ext not in (".png", ".svg"):
            raise UserError(f"--image must end in .png or .svg, got {args.image!r}")
        check_output_path(args.image, "--image", directory=False)
    with open_reader(args.db) as store:
        rec = store.find_arch(args.key)
        trials = store.arch_trials(rec.key)
        curves = store.reports([t.id for t in trials]) if trials else {}
    from search_space import ArchSpec, InvalidArchError

    from nas.cli.diagram import text_diagram

    try:
        arch = ArchSpec.from_json(rec.spec_json)
    except InvalidArchError as e:
        raise UserError(f"arch {rec.key}: the stored spec is invalid: {e}") from None
    if args.json:
        out = {
            "key": rec.key,
            "family": rec.family,
            "flops": rec.flops,
            "params": rec.params,
            "spec": arch.to_dict(),
            "model_garden": [list(t[:2]) + [list(t[2]), t[3]] for t in arch.to_model_garden()],
            "trials": [{**_trial_json(t), "curve": curve_rows(curves.get(t.id, []))} for t in trials],
        }
        print(json.dumps(out, indent=2))
    else:
        _print_show(rec, arch, trials, text_diagram(arch))
        _print_curves(trials, curves)
    if args.image is not None:
        from nas.cli.diagram import draw_arch

        with writing_output(args.image, "--image", directory=False):
            replace_atomically(args.image, lambda tmp: draw_arch(arch, tmp))
        print(f"\nwrote {args.image}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _print_curves(trials: Sequence[TrialRecord], curves: dict[int, list[Any]]) -> None:
    """Each trial's learning curve: a row per report (loss, learning rate, images/s; AP at the evaluations)."""
    for t in trials:
        curve = curve_rows(curves.get(t.id, []))
        if not curve:
            continue
        print(f"\ncurve of trial {t.index} of search {printable(t.search)} ({len(curve)} reports):")
        columns = [c for c in ("loss", "learning_rate", "images_per_s", "ap", "ap50") if any(c in r for r in curve)]
        print_table(("step", *columns), [(r["step"], *(_fmt_metric(r.get(c)) for c in columns)) for r in curve])


def _fmt_metric(v: Any) -> str:
    return "" if v is None else f"{v:.4g}"


def _trial_json(t: TrialRecord) -> dict[str, Any]:
    return {
        "id": t.id,
        "search": t.search,
        "fingerprint": t.fingerprint,
        "index": t.index,
        "status": t.status,
        "reward": t.reward,
        "metrics": dict(t.metrics),
        "error": t.error,
        "attempt": t.attempt,
        "host": t.host,
        "precision": t.precision,
        "wall_s": t.wall_s,
        "started_at": t.started_at.isoformat() if t.started_at else None,
        "finished_at": t.finished_at.isoformat() if t.finished_at else None,
    }


def _print_show(rec: Any, arch: Any, trials: Sequence[TrialRecord], diagram: str) -> None:
    completed = [t for t in trials if t.status == TrialStatus.COMPLETED and t.reward is not None]
    best = max(completed, key=lambda t: t.reward) if completed else None
    print(f"arch {rec.key}   family {printable(rec.family or '-')}   FLOPs {fmt_count(rec.flops)}   params {fmt_count(rec.params)}"
          f"   best reward {fmt_float(best.reward) if best else '-'}")
    print(f"spec {printable(rec.summary)}\n")
    m = arch.num_stem_candidates
    live = set(arch.network().live)
    rows: list[tuple[Any, ...]] = [
        (j, f"L{lvl}", "bottleneck", "-", "stem", "") for j, lvl in enumerate(arch.stem_levels)
    ]
    for i, b in enumerate(arch.blocks):
        role = "output" if b.is_output else "intermediate"
        rows.append((m + i, f"L{b.level}", b.block_fn, f"{b.input_offsets[0]},{b.input_offsets[1]}", role,
                     "" if i in live else "dead: feeds no endpoint"))
    print_table(("offset", "level", "block_fn", "inputs", "role", "note"), rows)
    print(f"\nModel Garden block specs (stem L2..L5 {list(arch.stem)}):\n[")
    for t in arch.to_model_garden():
        print(f"    {t!r},")
    print("]\n")
    print("diagram (S stem, B bottleneck, R residual, * output, lowercase dead):")
    print(diagram)
    print(f"\ntrials ({len(trials)}):")
    if trials:
        print_table(
            ("search", "index", "status", "reward", "AP", "time", "attempt", "host", "finished (UTC)", "error"),
            [
                (t.search, t.index, t.status, fmt_float(t.reward), fmt_float(t.ap), fmt_seconds(t.wall_s),
                 t.attempt, t.host or "-", fmt_time(t.finished_at), t.error.splitlines()[0][:60] if t.error else "")
                for t in trials
            ],
        )


# --------------------------------------------------------------------------------------------------- report
def _cmd_report(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    check_output_path(args.out, "--out", directory=True, parents=True)
    names = list(dict.fromkeys(args.search))
    with open_reader(args.db) as store:
        from nas.cli.report import collect

        data = collect(store, names, top_k=args.top)
    from nas.cli.report import write_report

    with writing_output(args.out, "--out", directory=True):
        path = write_report(data, args.out)
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------------------- db upgrade
def _existing_db(db: str | None, what: str) -> tuple[str, str | None]:
    """(URL, SQLite path or None) of a database that must exist already, or a one-line UserError (an in-memory
    database is refused: it holds nothing to upgrade or check)."""
    from results_db.url import resolve_url, sqlite_path

    try:
        url = resolve_url(db, persistent=True)
    except ValueError as e:
        raise UserError(str(e)) from None
    path = sqlite_path(url)
    if path and not os.path.exists(path):
        raise UserError(f"no database at {path}: nothing to {what}")
    return url, path


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from results_db.errors import DatabaseNotFoundError, DatabaseOpenError
    from results_db.integrity import check_before_writing
    from results_db.migrate import upgrade

    url, path = _existing_db(args.db, "upgrade (the search job creates it)")
    if path:
        try:
            check_before_writing(path, create=True)  # a damaged file is not migrated (that writes into it)
        except (DatabaseNotFoundError, DatabaseOpenError) as e:
            raise UserError(str(e)) from None
    try:
        before, after = upgrade(url)
    except DatabaseOpenError as e:
        raise UserError(str(e)) from None
    if before == after:
        print(f"already at schema version {after}")
    else:
        print(f"schema version {before or '(empty)'} -> {after}")
    try:
        filled, unreadable = backfill_fingerprints(url)
    except DatabaseOpenError as e:  # the disk filled after the upgrade: a rerun backfills the rest
        raise UserError(str(e)) from None
    if filled:
        print(f"fingerprints computed from the stored configs of {filled} search{'es' if filled > 1 else ''}")
    for name, why in unreadable:
        print(f"search {name!r}: no fingerprint ({why}); its results are reused and ranked with no other search's",
              file=sys.stderr)
    return 0


def _cmd_db_check(args: argparse.Namespace) -> int:
    from results_db.errors import DatabaseNotFoundError, DatabaseOpenError
    from results_db.integrity import integrity
    from results_db.version import SCHEMA_VERSION

    _, path = _existing_db(args.db, "check")
    ok = True
    if path:
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise UserError(f"{path} is an empty file, not a results database")
        try:
            result = integrity(path, quick=False)
        except (DatabaseNotFoundError, DatabaseOpenError) as e:  # a directory, a non-database, no access
            raise UserError(str(e)) from None
        ok = result == ["ok"]
        print(f"integrity: {'ok' if ok else 'DAMAGED'} (SQLite's integrity_check)")
        for line in ([] if ok else result[:10]):
            print(f"  {line}")
        if not ok:
            print(f"  restore a copy of {path}; do not write to this one (the search job refuses to)")
            return 1
    else:
        print("integrity: the database server's to keep (not checked here)")
    with open_reader(args.db) as reader:
        summaries = reader.search_summaries()
    print(f"schema version: {SCHEMA_VERSION} (this spinenas's)")
    kinds: dict[str, int] = {}
    for s in summaries:
        kinds[s.search.kind] = kinds.get(s.search.kind, 0) + 1
    print(f"searches: {len(summaries)}" + (f" ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})"
                                          if summaries else ""))
    counts: dict[str, int] = {}
    for s in summaries:
        for status, n in s.counts.items():
            counts[status] = counts.get(status, 0) + n
    print(f"trials: {sum(counts.values())}" + (f" ({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))})"
                                               if counts else ""))
    return 0


def backfill_fingerprints(url: str) -> tuple[int, list[tuple[str, str]]]:
    """Gives every search stored before fingerprints existed the fingerprint of its stored config (and its trials).

    Returns:
      (searches filled, [(name, why) of those whose config could not be read]).
    """
    from nas.config.schema import NasConfig
    from nas.config.codec import ConfigError, from_yaml
    from nas.engine.fingerprint import fingerprint
    from results_db import ResultStore

    filled, unreadable = 0, []
    with ResultStore(url) as store:
        for record in store.list_searches():
            if record.fingerprint is not None:
                continue
            try:
                cfg = from_yaml(NasConfig, record.config)
            except ConfigError as e:
                unreadable.append((record.name, f"its stored config does not read: {e}"))
                continue
            store.set_search_fingerprint(record.name, fingerprint(cfg))
            filled += 1
    return filled, unreadable


# --------------------------------------------------------------------------------------------------- register
def _positive_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 2e9, got {text!r}") from None


def register(sub: Any) -> None:
    """Adds `searches`, `top`, `show`, `report` and `db` to the `spinenas` subcommands."""
    p = sub.add_parser(
        "searches",
        help="list the searches in the results database",
        description="List the searches in the results database: status, trials (of its budget while it is not done: "
        "'5/16'), done / failed / cached / rejected "
        "(over the search's --max-flops, never trained) / pruned (stopped at a rung by --scheduler asha) / still "
        "open, best reward, start (UTC), duration, and the compute its trials spent: trial time (the sum of the "
        "trained trials' seconds, as their workers measured them: several workers make it exceed the duration) and "
        "proxy steps (cached and rejected trials cost nothing). Opens the database read-only.",
    )
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_searches)

    p = sub.add_parser(
        "top",
        help="the best architectures found so far",
        description="The k best architectures by the best reward of their completed trials, one line per "
        "architecture key: rank, key, reward, AP, FLOPs and params of the proxy detector, trial time, completed "
        "trials (n) and a compact spec ('<level><b|r>', * = output block). Rewards are comparable only when "
        "they were measured the same way, so by default only trials with the fingerprint of the newest search "
        "(of those given with --search) are ranked, and the first line says which. Opens the database "
        "read-only; safe while a search writes to it.",
    )
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--search", action="append", metavar="NAME", help="only this search (repeat for several; "
                   "default: all)")
    p.add_argument("-k", type=int, default=10, help="how many architectures (default 10)")
    p.add_argument("--max-flops", type=_positive_float, metavar="X",
                   help="only architectures with measured FLOPs <= X (e.g. 2e9); archs without FLOPs are left out")
    p.add_argument("--include-pruned", action="store_true",
                   help="rank trials pruned at a rung (--scheduler asha) too, by the reward they were fed (default: "
                        "only trials that trained to the last step)")
    p.add_argument("--all-fingerprints", action="store_true",
                   help="rank results of every fingerprint together (default: only those of the newest search's "
                        "fingerprint: the same evaluator, score-changing proxy settings and reward)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON (exact numbers)")
    fmt.add_argument("--csv", action="store_true", help="print CSV (exact numbers)")
    p.set_defaults(func=_cmd_top)

    p = sub.add_parser(
        "show",
        help="one architecture: spec, Model Garden tuples, trials and their learning curves, diagram",
        description="Show one architecture by key (a unique prefix is enough): its blocks, the Model Garden "
        "(level, block_fn, (input0, input1), is_output) tuples, a text diagram, every trial of it and each "
        "trial's learning curve (training loss, learning rate and images/s every proxy.log_every steps, AP at "
        "the evaluations). --image also draws it as PNG or SVG, like the SpineNet paper's figures.",
    )
    p.add_argument("key", help="architecture key or unique key prefix (see `spinenas top`)")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--image", metavar="PATH", help="write a diagram to PATH (.png or .svg)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser(
        "report",
        help="write an HTML report of one or more searches",
        description="Write DIR/index.html, a self-contained page (plots embedded, works offline): reward per "
        "trial and running best (one colour per search, to compare controllers), AP against FLOPs with the "
        "Pareto front, levels and block types of the top architectures, trial status counts and durations.",
    )
    p.add_argument("--search", action="append", required=True, metavar="NAME",
                   help="the search (repeat to compare several, e.g. --search ppo-1 --search random-1)")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument("--top", type=int, default=10, help="how many top architectures to show (default 10)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("db", help="maintain the results database", description="Maintain the results database.")
    db_sub = p.add_subparsers(dest="db_command", metavar="SUBCOMMAND", parser_class=type(p), required=True)
    q = db_sub.add_parser(
        "upgrade",
        help="migrate the database to this spinenas's schema version",
        description="Migrate the results database to this spinenas's schema version with Alembic, and give "
        "searches stored before result fingerprints existed the fingerprint of their stored config. Back the "
        "file up first; stop any search writing to it.",
    )
    q.add_argument("--db", help=DB_HELP)
    q.set_defaults(func=_cmd_db_upgrade)
    q = db_sub.add_parser(
        "check",
        help="is the database sound? its integrity, schema version, searches and trials",
        description="Check a results database without changing it: SQLite's full integrity_check (exit code 1 "
        "when it finds damage: restore a copy), the schema version, and how many searches and trials it holds. "
        "A damaged file is also refused, in one line, by every command that writes.",
    )
    q.add_argument("--db", help=DB_HELP)
    q.set_defaults(func=_cmd_db_check)
