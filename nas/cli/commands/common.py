"""What the commands share: opening the database for reading, loading a config, output paths, printing tables.

One home for each (commands never import each other's helpers). Nothing heavy is imported at module level.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from nas.cli.ui import UserError, error_text, fmt_count, fmt_float, fmt_seconds, print_table, printable

if TYPE_CHECKING:
    from results_db.queries import ReadAPI
    from results_db.reader import ResultReader
    from results_db.records import RankedArch, SearchRecord


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
        raise UserError(one_line(e)) from None
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's errors for server URLs, without importing it here
        if type(e).__module__.startswith("sqlalchemy"):
            raise UserError(f"cannot open database: {one_line(e)}") from None
        raise
    try:
        yield reader
    except (LookupError, DatabaseOpenError, ValueError) as e:
        raise UserError(one_line(e)) from None
    except Exception as e:  # noqa: BLE001
        if type(e).__module__.startswith("sqlalchemy"):
            raise UserError(f"database {reader.display_url}: {one_line(e)}") from None
        raise
    finally:
        reader.close()


def one_line(e: BaseException) -> str:
    """The first line of an error's message (a database driver's error's own message, a KeyError's text)."""
    orig = getattr(e, "orig", None) or e
    text = error_text(orig)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(orig).__name__


def check_output_path(path: str, flag: str, *, directory: bool, parents: bool = False) -> None:
    """Checks, before any work is done, that a command can write `path`; creates nothing.

    The directory the command will create files in is probed by making and removing an empty directory there:
    permission bits alone do not tell (root passes `os.access` on /proc and on read-only mounts).

    Args:
      path: the output, as the user gave it.
      flag: its option, for the message ('--out').
      directory: `path` is a directory to write files into (made if missing); else a file (replaced if it exists).
      parents: missing parent directories may be made too; else the parent must exist.

    Raises:
      UserError: one line naming the path and the reason, e.g. 'cannot write --out /proc/x: /proc: No such file or
        directory'.
    """
    target = os.path.abspath(path)
    parent = os.path.dirname(target)
    if os.path.lexists(target):
        if directory and not os.path.isdir(target):
            raise _cannot_write(flag, path, "it exists and is not a directory")
        if not directory and os.path.isdir(target):
            raise _cannot_write(flag, path, "it is a directory")
        if not directory and not os.access(target, os.W_OK):
            raise _cannot_write(flag, path, os.strerror(errno.EACCES))
        probe = target if directory else parent
    else:
        probe = parent
        while not os.path.lexists(probe):
            probe = os.path.dirname(probe)
        if not os.path.isdir(probe):
            raise _cannot_write(flag, path, f"{probe}: {os.strerror(errno.ENOTDIR)}")
        if probe != parent and not (directory and parents):
            raise _cannot_write(flag, path, f"{parent}: {os.strerror(errno.ENOENT)}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".spinenas-probe-", dir=probe))
    except OSError as e:
        why = e.strerror if probe == target else f"cannot make anything in {probe} ({e.strerror})"
        raise _cannot_write(flag, path, why) from None


@contextmanager
def writing_output(path: str, flag: str, *, directory: bool) -> Iterator[None]:
    """Turns an OSError in the block into a one-line UserError naming `path` and the OS's reason.

    The directories on the way to `path` that the block made are removed again when it fails (if left empty).
    """
    missing = []
    d = os.path.abspath(path) if directory else os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(d):
        missing.append(d)
        d = os.path.dirname(d)
    try:
        yield
    except OSError as e:
        for d in missing:  # deepest first
            try:
                os.rmdir(d)
            except OSError:
                break
        raise _cannot_write(flag, path, e.strerror or one_line(e)) from None


def replace_atomically(path: str, write: Callable[[str], Any]) -> None:
    """Calls `write(tmp)` with a temporary name beside `path` (same extension), then moves it onto `path`.

    A reader never sees a half-written file, and a failed write leaves `path` as it was.
    """
    parent, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(parent, f".{base}.{os.getpid()}.tmp{os.path.splitext(base)[1]}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.remove(tmp)
        raise


def _cannot_write(flag: str, path: str, reason: str) -> UserError:
    return UserError(f"cannot write {flag} {path}: {reason}")


def load_arch_or_exit(ref: str) -> Any:
    """An architecture by built-in name or JSON file, or a one-line UserError."""
    from search_space import InvalidArchError, load_arch

    try:
        return load_arch(ref)
    except (LookupError, FileNotFoundError, InvalidArchError) as e:
        raise UserError(error_text(e)) from None


def load_config(preset: str, overrides: Sequence[Any], plugins: Sequence[str] = ()) -> Any:
    """A preset (name or YAML file) with `--set` overrides applied, or a one-line UserError.

    The plug-ins a preset file lists (``plugins:``), those of a ``--set plugins=[...]`` and `plugins` (``--plugin``)
    are imported first (their settings sections are known only then); `plugins` are added to the config's.
    """
    from nas.cli.plugins import import_or_exit, override_plugins, preset_plugins, with_plugins
    from nas.config.schema import NasConfig
    from nas.config.codec import ConfigError, resolve
    from nas.config.presets import get_preset

    try:
        import_or_exit(preset_plugins(preset), where=f"preset file {preset}")
        import_or_exit(override_plugins(overrides), where="--set plugins")
        given = import_or_exit(plugins)
        return with_plugins(resolve(NasConfig, get_preset(preset), list(overrides)), given)
    except (LookupError, FileNotFoundError, ConfigError) as e:
        raise UserError(error_text(e)) from None


def load_stored_config(text: str, overrides: Sequence[Any] = (), *, search: str = "",
                       plugins: Sequence[str] = ()) -> Any:
    """A search's stored config (any earlier layout is migrated) with overrides, or a one-line UserError.

    Its stored plug-ins (``plugins:``) and `plugins` (``--plugin`` on a resume, added to them for this run) are
    imported before it is parsed.
    """
    from nas.cli.plugins import import_or_exit, stored_plugins, with_plugins
    from nas.config.schema import NasConfig
    from nas.config.codec import ConfigError, from_yaml, resolve

    where = f"search {search!r}" if search else "the stored config"
    import_or_exit(stored_plugins(text, what=where), where=where)
    given = import_or_exit(plugins)
    try:
        return with_plugins(resolve(NasConfig, from_yaml(NasConfig, text), list(overrides)), given)
    except ConfigError as e:
        raise UserError(f"search {search!r}: {e}" if search else str(e)) from None


def print_rich_or_plain(header: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """A table: rich on a terminal; pipes, files and scripts get the plain one (and skip rich's import).

    Cells are stored text: shown `printable`, and as rich `Text` (never read as rich markup such as '[red]').
    """
    if not sys.stdout.isatty():
        if title:
            print(printable(title))
        print_table(header, rows)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(printable(title)) if title else None, title_justify="left", header_style="bold")
    for h in header:
        table.add_column(Text(printable(h)), no_wrap=h != "spec", overflow="fold")
    for r in rows:
        table.add_row(*(Text(printable(c)) for c in r))
    Console().print(table)


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """What a search's stored config says of its budget, space and scheduler, read as plain YAML (no config classes,
    no plug-ins: `searches` and the dashboard read any stored search with it).

    Attributes:
      kind: 'search' or 'calibration'.
      budget: the trials the search is to finish (``search.trials``); None for a study (its plan is its rows).
      family, window: the search space (None when unknown).
      scheduler: 'none', 'asha', 'median' or another registered scheduler's name.
      rungs: the steps its scheduler judges at (its ``rungs``, else the proxy's ``eval_at_steps``; () for none).
      eta: ASHA's reduction factor (None for other schedulers).
      reward: 'ap' or 'ap-flops'.
      train_steps: the proxy's steps.
    """

    kind: str = "search"
    budget: int | None = None
    family: str | None = None
    window: int | None = None
    scheduler: str = "none"
    rungs: tuple[int, ...] = ()
    eta: int | None = None
    reward: str = "ap"
    train_steps: int | None = None


def search_settings(record: SearchRecord) -> SearchSettings:
    """A search's `SearchSettings` from its stored config; what cannot be read is left at its default."""
    from nas.config.codec import MAX_STORED_YAML_BYTES, ConfigError, load_yaml

    kind = getattr(record, "kind", "search") or "search"
    try:
        doc = load_yaml(record.config or "", what=f"the stored config of {record.name}",
                        max_bytes=MAX_STORED_YAML_BYTES) or {}
    except ConfigError:
        return SearchSettings(kind=kind)
    if not isinstance(doc, dict) or kind != "search":
        return SearchSettings(kind=kind, family=record.family or None)
    search = doc.get("search") or {}
    proxy = doc.get("proxy") or {}
    scheduler = doc.get("scheduler") or {}
    stype = str(scheduler.get("type") or "none")
    own = scheduler.get(stype) if isinstance(scheduler.get(stype), dict) else {}
    rungs: tuple[int, ...] = ()
    if stype != "none":
        rungs = tuple(int(r) for r in (own.get("rungs") or proxy.get("eval_at_steps") or ()))
    return SearchSettings(
        kind=kind,
        budget=_int_or_none(search.get("trials")),
        family=search.get("family") or record.family or None,
        window=_int_or_none(search.get("window")) or None,
        scheduler=stype,
        rungs=rungs,
        eta=_int_or_none(own.get("eta")) if stype == "asha" else None,
        reward=str(search.get("reward") or "ap"),
        train_steps=_int_or_none(proxy.get("train_steps")),
    )


def _int_or_none(x: Any) -> int | None:
    try:
        return None if x is None else int(x)
    except (TypeError, ValueError):
        return None


#: Where a source checkout keeps the results databases committed with the project (real demo trainings and the demo
#: proxy's calibration study); an installed package has none.
SHIPPED_RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "scripts", "bench", "results")


def shipped_databases() -> list[str]:
    """The committed results databases (``scripts/bench/results/*.db``) as paths a user can type here (relative to
    the current folder when under it), in name order; [] when there are none."""
    try:
        names = sorted(n for n in os.listdir(SHIPPED_RESULTS) if n.endswith(".db"))
    except OSError:
        return []
    out = []
    for n in names:
        path = os.path.join(SHIPPED_RESULTS, n)
        rel = os.path.relpath(path)
        out.append(rel if not rel.startswith("..") else path)
    return out


# Columns of `top --json` / `--csv`, in order.
TOP_FIELDS = ("rank", "key", "reward", "ap", "flops", "params", "wall_s", "evaluations", "search", "trial_id",
              "fingerprint", "spec")


def top_rows(ranked: Sequence[RankedArch]) -> list[dict[str, Any]]:
    """`spinenas top`'s rows as plain dicts (TOP_FIELDS)."""
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
            "fingerprint": r.fingerprint,
            "spec": r.summary,
        }
        for r in ranked
    ]


def ranking_fingerprint(reader: ReadAPI, searches: Sequence[str] | None, all_fingerprints: bool) -> str | None:
    """The fingerprint `top` and `export best` rank within: the newest search's, or in a database of calibration
    studies alone the newest study's proxy trials' (None: mix them all)."""
    if all_fingerprints:
        return None
    fingerprint = reader.newest_fingerprint(list(searches) if searches else None)
    if fingerprint is None and not searches:
        stored = reader.list_searches()
        if stored and all(getattr(s, "kind", "search") != "search" for s in stored):
            fingerprint = reader.newest_fingerprint([s.name for s in stored])
    return fingerprint


def describe_fingerprint(reader: ReadAPI, fingerprint: str | None) -> str:
    """'fingerprint 1a2b3c4d5e6f7a8b (retinanet 128 px 800 steps on synth, reward ap; searches demo-1, demo-2)'."""
    if fingerprint is None:
        return "results of every fingerprint (evaluators, proxy settings, rewards) mixed"
    rows = [f for f in reader.fingerprint_summary() if f.fingerprint == fingerprint]
    what = ""
    if rows and rows[0].newest_search:
        try:
            what = _describe_stored(rows[0].newest_search, reader.open_search(rows[0].newest_search).config,
                                    fingerprint)
        except Exception:  # noqa: BLE001 - the description is a courtesy; the ranking does not depend on it
            what = ""
    others = [f for f in reader.fingerprint_summary() if f.fingerprint != fingerprint]
    text = f"fingerprint {fingerprint}" + (f" ({what})" if what else "")
    if others:
        text += (f"; {len(others)} other fingerprint{'s' if len(others) > 1 else ''} in this database "
                 "(--all-fingerprints mixes them)")
    return text


def _describe_stored(name: str, config: str, fingerprint: str) -> str:
    """What a stored config measures; for a calibration study (which stores both its fidelities' configs), the
    fidelity whose trials carry `fingerprint`."""
    from nas.config.codec import MAX_STORED_YAML_BYTES, load_yaml
    from nas.engine.fingerprint import describe_dict

    doc = load_yaml(config, what=f"the stored config of {name}", max_bytes=MAX_STORED_YAML_BYTES) or {}
    if "proxy_config" not in doc:
        return describe_dict(doc)
    from nas.calibration.study import PROXY, REFERENCE, Study
    from nas.config.codec import to_dict

    study = Study.from_yaml(config)
    for fidelity in (PROXY, REFERENCE):
        if study.fingerprint(fidelity) == fingerprint:
            return f"calibration study {name}, its {fidelity} trials: {describe_dict(doc[f'{fidelity}_config'])}"
    for p in {p.variant: p for p in study.plan if p.variant}.values():
        if study.trial_fingerprint(p) == fingerprint:
            return (f"calibration study {name}, its variant {p.variant}'s trials: "
                    f"{describe_dict(to_dict(study.variant(p.variant).config))}")
    return f"calibration study {name}"


def print_top(reader: ReadAPI, *, searches: Sequence[str] | None = None, k: int = 10,
              max_flops: float | None = None, fmt: str = "table", all_fingerprints: bool = False,
              include_pruned: bool = False) -> None:
    """Prints the `k` best architectures (the body of `spinenas top`, also the end of `spinenas search`).

    Args:
      fmt: 'table' (a first line says which fingerprint is ranked), 'json' or 'csv' (the fingerprint is a
        column).
      include_pruned: rank pruned trials too (by the reward they were fed).
    """
    fingerprint = ranking_fingerprint(reader, searches, all_fingerprints)
    ranked = reader.top(searches=searches, k=k, max_flops=max_flops, fingerprint=fingerprint,
                        include_pruned=include_pruned)
    rows = top_rows(ranked)
    if fmt == "json":
        import json

        print(json.dumps(rows, indent=2))
        return
    if fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=TOP_FIELDS, lineterminator="\n")
        writer.writeheader()
        if sys.stdout.isatty():  # a file or a pipe gets the stored text exact; a terminal, what it can show
            rows = [{k: printable(v) if isinstance(v, str) else v for k, v in r.items()} for r in rows]
        writer.writerows(rows)
        return
    if not rows:
        reused = _only_cached(reader, searches) if max_flops is None else None
        if reused is not None:
            print(printable(reused))
            return
        where = f" in search(es) {', '.join(searches)}" if searches else ""
        cond = f" with FLOPs <= {max_flops:g}" if max_flops is not None else ""
        print(printable(f"no completed trials{where}{cond} yet"))
        return
    print(printable(f"ranking {describe_fingerprint(reader, fingerprint)}"))
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
    print_rich_or_plain(header, table)


def _only_cached(reader: ReadAPI, searches: Sequence[str] | None) -> str | None:
    """For searches that trained nothing because every result they got was reused: what to say instead of 'no
    completed trials yet' (their best is another search's trial, which `top` ranks under that search)."""
    if not searches:
        return None
    summaries = {s.search.name: s for s in reader.search_summaries()}
    picked = [summaries[n] for n in searches if n in summaries]
    if not picked or any(s.counts.get("completed", 0) for s in picked):
        return None
    cached = sum(s.counts.get("cached", 0) for s in picked)
    if not cached:
        return None
    what = f"search {searches[0]!r}" if len(searches) == 1 else f"searches {', '.join(searches)}"
    return (f"{what} trained no architecture: its {cached} cached trial{'s' if cached > 1 else ''} reused results "
            "measured by other searches, which `spinenas top` (without --search) ranks under the searches that "
            "trained them")


def curve_rows(reports: Sequence[Any]) -> list[dict[str, Any]]:
    """A trial's reports as flat rows: {'step': s, **metrics}."""
    return [{"step": r.step, **dict(r.metrics)} for r in reports]
