"""`spinenas searches`, `top`, `show`, `report` and `db upgrade`: looking at the results database.

TF-free and Ray-free. SQLAlchemy, search_space (numpy), rich and matplotlib are imported inside the commands that
need them, so `spinenas top` answers in well under a second. The read commands open the database read-only: they
never create a file and never change one; every mistake is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from nas.ui import UserError, print_table
from results_db.url import DB_HELP

if TYPE_CHECKING:
    from results_db.records import RankedArch, SearchSummary, TrialRecord
    from results_db.reader import ResultReader


# --------------------------------------------------------------------------------------------------- helpers
@contextmanager
def open_reader(db: str | None) -> Iterator[ResultReader]:
    """Opens the database read-only for a command; every database problem becomes a one-line `UserError`.

    A SQLite file is read with the standard library's sqlite3 (no SQLAlchemy import: `top` stays well under a
    second); other URLs go through SQLAlchemy.
    """
    from results_db.errors import DatabaseNotFoundError, DatabaseOpenError, SchemaVersionError
    from results_db.reader import ResultReader

    try:
        reader = ResultReader(db)
    except (DatabaseNotFoundError, DatabaseOpenError, SchemaVersionError, ValueError) as e:
        raise UserError(_one_line(e)) from None
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's errors for server URLs, without importing it here
        if type(e).__module__.startswith("sqlalchemy"):
            raise UserError(f"cannot open database: {_one_line(e)}") from None
        raise
    try:
        yield reader
    except (LookupError, DatabaseOpenError, ValueError) as e:
        raise UserError(_one_line(e)) from None
    except Exception as e:  # noqa: BLE001
        if type(e).__module__.startswith("sqlalchemy"):
            raise UserError(f"database {reader.display_url}: {_one_line(e)}") from None
        raise
    finally:
        reader.close()


def _one_line(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    # KeyError's str() is the repr of its argument; every other error's is its message.
    text = str(orig.args[0]) if isinstance(orig, KeyError) and orig.args else str(orig)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(orig).__name__


def fmt_count(n: int | None, unit: str = "") -> str:
    """12_300_000 -> '12.3M'; None -> '-'."""
    if n is None:
        return "-"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}{unit}"
    return f"{n}{unit}"


def fmt_seconds(s: float | None) -> str:
    """812.0 -> '13m32s'; None -> '-'."""
    if s is None:
        return "-"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fmt_float(x: float | None, digits: int = 4) -> str:
    """A number to `digits` decimals; None -> '-'."""
    return "-" if x is None else f"{x:.{digits}f}"


def fmt_time(t: datetime.datetime | None) -> str:
    """A stored (UTC) time, to the minute."""
    return "-" if t is None else t.strftime("%Y-%m-%d %H:%M")


def _print_rich_or_plain(header: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    # rich only on a terminal: pipes, files and scripts get the plain table (and skip rich's import).
    if not sys.stdout.isatty():
        if title:
            print(title)
        print_table(header, rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for h in header:
        table.add_column(h, no_wrap=h != "spec", overflow="fold")
    for r in rows:
        table.add_row(*(str(c) for c in r))
    Console().print(table)


# --------------------------------------------------------------------------------------------------- searches
def _search_duration(s: SearchSummary) -> float | None:
    rec = s.search
    end = rec.finished_at or max(t for t in (rec.updated_at, s.last_finished_at) if t is not None)
    return (end - rec.created_at).total_seconds()


def _cmd_searches(args: argparse.Namespace) -> int:
    with open_reader(args.db) as store:
        summaries = store.search_summaries()
    if args.json:
        out = [
            {
                "name": s.search.name,
                "controller": s.search.controller,
                "family": s.search.family,
                "seed": s.search.seed,
                "status": s.search.status,
                "trials": s.trials,
                "counts": dict(s.counts),
                "best_reward": s.best_reward,
                "created_at": s.search.created_at.isoformat(),
                "finished_at": s.search.finished_at.isoformat() if s.search.finished_at else None,
                "duration_s": _search_duration(s),
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
            s.search.controller or "-",
            s.search.family or "-",
            s.search.status,
            s.trials,
            s.counts.get("completed", 0),
            s.counts.get("failed", 0),
            s.counts.get("cached", 0),
            s.counts.get("running", 0) + s.counts.get("queued", 0),
            fmt_float(s.best_reward),
            fmt_time(s.search.created_at),
            fmt_seconds(_search_duration(s)),
        )
        for s in summaries
    ]
    header = ("name", "controller", "family", "status", "trials", "done", "failed", "cached", "open", "best reward",
              "started (UTC)", "duration")
    _print_rich_or_plain(header, rows)
    return 0


# --------------------------------------------------------------------------------------------------- top
# Columns of `top --json` / `--csv`, in order.
TOP_FIELDS = ("rank", "key", "reward", "ap", "flops", "params", "wall_s", "evaluations", "search", "trial_id", "spec")


def _top_rows(ranked: Sequence[RankedArch]) -> list[dict[str, Any]]:
    return [
        {
            "rank": r.rank,
            "key": r.arch_key,
            "reward": r.reward,
            "ap": r.ap,
            "flops": r.flops,
            "params": r.params,
            "wall_s": r.wall_s,
            "evaluations": r.evaluations,
            "search": r.search,
            "trial_id": r.trial_id,
            "spec": r.summary,
        }
        for r in ranked
    ]


def _cmd_top(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise UserError(f"-k must be at least 1, got {args.k}")
    if args.max_flops is not None and args.max_flops <= 0:
        raise UserError(f"--max-flops must be positive, got {args.max_flops:g}")
    with open_reader(args.db) as store:
        ranked = store.top(searches=args.search, k=args.k, max_flops=args.max_flops)
    rows = _top_rows(ranked)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=TOP_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return 0
    if not rows:
        where = f" in search(es) {', '.join(args.search)}" if args.search else ""
        cond = f" with FLOPs <= {args.max_flops:g}" if args.max_flops is not None else ""
        print(f"no completed trials{where}{cond} yet")
        return 0
    several = len({r["search"] for r in rows}) > 1
    header = ["rank", "key", "reward", "AP", "FLOPs", "params", "trial time", "n"]
    header += ["search"] if several else []
    header += ["spec"]
    table = []
    for r in rows:
        line = [r["rank"], r["key"], fmt_float(r["reward"]), fmt_float(r["ap"]), fmt_count(r["flops"]),
                fmt_count(r["params"]), fmt_seconds(r["wall_s"]), r["evaluations"]]
        line += [r["search"]] if several else []
        line += [r["spec"]]
        table.append(line)
    _print_rich_or_plain(header, table)
    return 0


# --------------------------------------------------------------------------------------------------- show
def _cmd_show(args: argparse.Namespace) -> int:
    if args.image is not None:
        ext = os.path.splitext(args.image)[1].lower()
        if ext not in (".png", ".svg"):
            raise UserError(f"--image must end in .png or .svg, got {args.image!r}")
        parent = os.path.dirname(os.path.abspath(args.image))
        if not os.path.isdir(parent):
            raise UserError(f"--image: directory {parent} does not exist")
    with open_reader(args.db) as store:
        rec = store.find_arch(args.key)
        trials = store.arch_trials(rec.key)
    from search_space import ArchSpec, InvalidArchError

    from nas.diagram import text_diagram

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
            "trials": [_trial_json(t) for t in trials],
        }
        print(json.dumps(out, indent=2))
    else:
        _print_show(rec, arch, trials, text_diagram(arch))
    if args.image is not None:
        from nas.diagram import draw_arch

        draw_arch(arch, args.image)
        print(f"\nwrote {args.image}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _trial_json(t: TrialRecord) -> dict[str, Any]:
    return {
        "id": t.id,
        "search": t.search,
        "index": t.index,
        "status": t.status,
        "reward": t.reward,
        "metrics": dict(t.metrics),
        "error": t.error,
        "attempt": t.attempt,
        "host": t.host,
        "wall_s": t.wall_s,
        "started_at": t.started_at.isoformat() if t.started_at else None,
        "finished_at": t.finished_at.isoformat() if t.finished_at else None,
    }


def _print_show(rec: Any, arch: Any, trials: Sequence[TrialRecord], diagram: str) -> None:
    completed = [t for t in trials if t.status == "completed" and t.reward is not None]
    best = max(completed, key=lambda t: t.reward) if completed else None
    print(f"arch {rec.key}   family {rec.family or '-'}   FLOPs {fmt_count(rec.flops)}   params {fmt_count(rec.params)}"
          f"   best reward {fmt_float(best.reward) if best else '-'}")
    print(f"spec {rec.summary}\n")
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
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out} exists and is not a directory")
    names = list(dict.fromkeys(args.search))
    with open_reader(args.db) as store:
        from nas.report import collect

        data = collect(store, names, top_k=args.top)
    from nas.report import write_report

    path = write_report(data, args.out)
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------------------- db upgrade
def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from results_db.errors import DatabaseOpenError
    from results_db.migrate import upgrade
    from results_db.url import resolve_url, sqlite_path

    url = resolve_url(args.db)
    path = sqlite_path(url)
    if path and not os.path.exists(path):
        raise UserError(f"no database at {path}: nothing to upgrade (the search job creates it)")
    try:
        before, after = upgrade(url)
    except DatabaseOpenError as e:
        raise UserError(str(e)) from None
    if before == after:
        print(f"already at schema version {after}")
    else:
        print(f"schema version {before or '(empty)'} -> {after}")
    return 0


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
        description="List the searches in the results database: status, trials done / failed / cached / still "
        "open, best reward, start (UTC) and duration. Opens the database read-only.",
    )
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_searches)

    p = sub.add_parser(
        "top",
        help="the best architectures found so far",
        description="The k best architectures by the best reward of their completed trials, one line per "
        "architecture key: rank, key, reward, AP, FLOPs and params of the proxy detector, trial time, completed "
        "trials (n) and a compact spec ('<level><b|r>', * = output block). Opens the database read-only; safe "
        "while a search writes to it.",
    )
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--search", action="append", metavar="NAME", help="only this search (repeat for several; "
                   "default: all)")
    p.add_argument("-k", type=int, default=10, help="how many architectures (default 10)")
    p.add_argument("--max-flops", type=_positive_float, metavar="X",
                   help="only architectures with measured FLOPs <= X (e.g. 2e9); archs without FLOPs are left out")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON (exact numbers)")
    fmt.add_argument("--csv", action="store_true", help="print CSV (exact numbers)")
    p.set_defaults(func=_cmd_top)

    p = sub.add_parser(
        "show",
        help="one architecture: spec, Model Garden tuples, trials, diagram",
        description="Show one architecture by key (a unique prefix is enough): its blocks, the Model Garden "
        "(level, block_fn, (input0, input1), is_output) tuples, a text diagram, and every trial of it. "
        "--image also draws it as PNG or SVG, like the SpineNet paper's figures.",
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
        description="Migrate the results database to this spinenas's schema version with Alembic. Back the "
        "file up first; stop any search writing to it.",
    )
    q.add_argument("--db", help=DB_HELP)
    q.set_defaults(func=_cmd_db_upgrade)
