"""The read queries, as portable SQL over any DB-API-like executor (stdlib only).

`ReadAPI` holds each query once. `ResultStore` runs them through SQLAlchemy; `ResultReader` runs them on a plain
``sqlite3`` connection, so that `spinenas top` does not import SQLAlchemy, whose import alone would take most of the
time `top` may take (see the README's Benchmarks, `scripts/bench/db.py`).

The SQL sticks to what SQLite and PostgreSQL share: ``:name`` parameters (sqlite3's named style, and SQLAlchemy's
`text()`), double-quoted identifiers, no dialect functions. Times come back as `datetime` from PostgreSQL and as
ISO strings from SQLite; `_dt` reads both.
"""

from __future__ import annotations

import abc
import datetime
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from results_db.records import (
    FINGERPRINT_LENGTH,
    ArchRecord,
    FingerprintSummary,
    KnownResult,
    RankedArch,
    SearchRecord,
    SearchSummary,
    TrialRecord,
    TrialReport,
)
from results_db.status import TrialStatus

# (sql, params) -> rows as tuples; may be a lazy cursor (`top` stops reading after k distinct archs).
Executor = Callable[[str, Mapping[str, Any]], Iterable[Sequence[Any]]]

_COMPLETED = TrialStatus.COMPLETED.value
_HEX = re.compile(r"^[0-9a-f]+$")
# Rows of an IN list per query: far below SQLite's 32,766 host parameters and PostgreSQL's 65,535.
_CHUNK = 500

_SEARCH_COLUMNS = (
    "s.id, s.name, s.config, s.seed, s.controller, s.family, s.status, s.created_at, s.updated_at, s.finished_at, "
    "s.fingerprint, s.kind, s.lease_owner, s.lease_host, s.lease_pid, s.lease_heartbeat"
)
_ARCH_COLUMNS = "a.key, a.spec_json, a.summary, a.family, a.flops, a.params, a.created_at"
_TRIAL_COLUMNS = (
    't.id, s.name, t."index", t.arch_key, t.status, t.decisions, t.reward, t.metrics, t.error, t.attempt, t.host, '
    "t.cached_from, t.created_at, t.started_at, t.finished_at, t.wall_s, t.finish_order, t.fingerprint, t.precision"
)


def _dt(value: Any) -> datetime.datetime | None:
    if value is None or isinstance(value, datetime.datetime):
        return value
    return datetime.datetime.fromisoformat(value)


def check_fingerprint(value: Any, *, allow_none: bool = True) -> str | None:
    """A fingerprint argument, checked: a string of 1..FINGERPRINT_LENGTH characters (or None where allowed).

    Raises:
      ValueError: anything else.
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= FINGERPRINT_LENGTH:
        raise ValueError(
            f"fingerprint must be a string of 1..{FINGERPRINT_LENGTH} characters{' or None' if allow_none else ''}, "
            f"got {value!r}"
        )
    return value


def _in(name: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """``(:name0, :name1, ...)`` and its parameters (an IN list both sqlite3 and SQLAlchemy accept)."""
    params = {f"{name}{i}": v for i, v in enumerate(values)}
    return "(" + ", ".join(f":{p}" for p in params) + ")", params


def _search_record(row: Sequence[Any]) -> SearchRecord:
    return SearchRecord(
        id=row[0], name=row[1], config=row[2], seed=row[3], controller=row[4], family=row[5], status=row[6],
        created_at=_dt(row[7]), updated_at=_dt(row[8]), finished_at=_dt(row[9]), fingerprint=row[10], kind=row[11],
        lease_owner=row[12], lease_host=row[13], lease_pid=row[14], lease_heartbeat=_dt(row[15]),
    )  # fmt: skip


def _arch_record(row: Sequence[Any]) -> ArchRecord:
    return ArchRecord(
        key=row[0], spec_json=row[1], summary=row[2], family=row[3], flops=row[4], params=row[5],
        created_at=_dt(row[6]),
    )  # fmt: skip


def _trial_record(row: Sequence[Any]) -> TrialRecord:
    return TrialRecord(
        id=row[0], search=row[1], index=row[2], arch_key=row[3], status=row[4],
        decisions=tuple(json.loads(row[5])), reward=row[6], metrics=json.loads(row[7]) if row[7] else {},
        error=row[8], attempt=row[9], host=row[10], cached_from=row[11], created_at=_dt(row[12]),
        started_at=_dt(row[13]), finished_at=_dt(row[14]), wall_s=row[15], finish_order=row[16],
        fingerprint=row[17], precision=row[18],
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------- helpers
def _unknown_search(name: str, known: Iterable[str]) -> LookupError:
    """The error for an unknown search name, listing the known ones."""
    known = list(known)
    return LookupError(
        f"unknown search {name!r}; "
        + (f"expected one of: {', '.join(known)}" if known else "the database holds no searches yet")
    )


def _search_names(ex: Executor) -> dict[int, str]:
    """Search id -> name, oldest first."""
    return {sid: name for sid, name in ex("SELECT id, name FROM searches ORDER BY id", {})}


def _search_id(ex: Executor, name: str) -> int:
    """The id of the search called `name` (LookupError listing the known names if unknown)."""
    rows = list(ex("SELECT id FROM searches WHERE name = :name", {"name": name}))
    if not rows:
        raise _unknown_search(name, _search_names(ex).values())
    return rows[0][0]


def _searches(ex: Executor) -> list[SearchRecord]:
    """Every search, oldest first."""
    return [_search_record(r) for r in ex(f"SELECT {_SEARCH_COLUMNS} FROM searches s ORDER BY s.id", {})]


# Statuses of the trials that trained and finished (a cached trial reused another's result, a rejected one never
# ran; a running one is counted when it finishes, as its seconds are known only then).
_TRAINED = tuple(s.value for s in (TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.PRUNED))


def _counted_steps(metrics: Any) -> bool:
    steps = metrics.get("steps") if isinstance(metrics, Mapping) else None
    return isinstance(steps, (int, float)) and not isinstance(steps, bool) and steps >= 0


def _trial_steps(metrics: Mapping[str, Any], reported: int | None) -> int:
    """The proxy steps a trial trained: its metrics' ``steps`` (what the trainer counted, also for a failed or
    pruned trial), else the last step it reported (a trial that timed out or lost its worker), else 0."""
    return int(metrics["steps"]) if _counted_steps(metrics) else int(reported or 0)


def _trial_costs(ex: Executor) -> dict[int, tuple[float, int]]:
    """Search id -> (trial-seconds, proxy steps) its trials spent: what trained counts (completed, failed and pruned
    trials; a cached or rejected one cost nothing), each trial's seconds as its worker measured them.

    The learning curves are read only for the trials whose metrics lack ``steps`` (a timeout, a lost worker, a
    database from before the steps were kept), not for every report of the database.
    """
    clause, params = _in("st", list(_TRAINED))
    rows = []  # (search id, seconds, metrics, trial id)
    for tid, sid, metrics, wall_s in ex(
        f"SELECT id, search_id, metrics, wall_s FROM trials WHERE status IN {clause}", params
    ):
        rows.append((sid, float(wall_s or 0.0), json.loads(metrics) if metrics else {}, tid))
    missing = [tid for _, _, m, tid in rows if not _counted_steps(m)]
    last_step: dict[int, int] = {}
    for i in range(0, len(missing), _CHUNK):
        ids, ids_params = _in("t", missing[i:i + _CHUNK])
        for tid, step in ex(f"SELECT trial_id, MAX(step) FROM trial_reports WHERE trial_id IN {ids} "
                            "GROUP BY trial_id", ids_params):
            last_step[tid] = step
    out: dict[int, tuple[float, int]] = {}
    for sid, seconds, m, tid in rows:
        total_s, total_steps = out.get(sid, (0.0, 0))
        out[sid] = (total_s + seconds, total_steps + _trial_steps(m, last_step.get(tid)))
    return out


def _check_statuses(status: Any) -> list[str] | None:
    """A status argument (one, several, or None for all) as a list of values (ValueError for an unknown one)."""
    if status is None:
        return None
    given = [status] if isinstance(status, str) else list(status)
    allowed = tuple(s.value for s in TrialStatus)
    out = []
    for s in given:
        value = getattr(s, "value", s)
        if value not in allowed:
            raise ValueError(f"trial status must be one of {list(allowed)}, got {s!r}")
        out.append(value)
    return out


# --------------------------------------------------------------------------------------------------- ranking
def _ranked_trials_where(
    *, search_ids: list[int] | None, fingerprint: str | None, max_flops: float | None, include_pruned: bool
) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (over ``trials t JOIN archs a``) and parameters of the trials `ReadAPI.top` ranks."""
    where = "t.status = :completed AND t.reward IS NOT NULL"
    params: dict[str, Any] = {"completed": _COMPLETED}
    if include_pruned:  # (an IN would cost the index's order walk to the default ranking)
        where = "t.status IN (:completed, :pruned) AND t.reward IS NOT NULL"
        params["pruned"] = TrialStatus.PRUNED.value
    if fingerprint is not None:
        # With the (fingerprint, status, reward) index this is the same early-stopping walk as without.
        where += " AND t.fingerprint = :fp"
        params["fp"] = fingerprint
    if search_ids:
        clause, p = _in("s", search_ids)
        where += f" AND t.search_id IN {clause}"
        params.update(p)
    if max_flops is not None:
        where += " AND a.flops IS NOT NULL AND a.flops <= :max_flops"
        params["max_flops"] = max_flops
    return where, params


def _best_trial_per_arch(ex: Executor, where: str, params: Mapping[str, Any], k: int) -> dict[str, Sequence[Any]]:
    """Arch key -> the row of its best trial, for the first `k` distinct archs from the best reward down.

    The trials are read in reward order and the read stops at the k-th distinct arch (the (status, reward) index
    gives this order without sorting the table).
    """
    rows = ex(
        "SELECT t.id, t.search_id, t.arch_key, t.reward, t.metrics, t.wall_s, a.summary, a.flops, a.params, "
        "t.fingerprint "
        f"FROM trials t JOIN archs a ON a.key = t.arch_key WHERE {where} ORDER BY t.reward DESC, t.id",
        params,
    )
    best: dict[str, Sequence[Any]] = {}
    for row in rows:
        if row[2] not in best:
            best[row[2]] = tuple(row)
            if len(best) == k:
                break
    return best


def _evaluation_counts(
    ex: Executor, keys: list[str], *, search_ids: list[int] | None, fingerprint: str | None
) -> dict[str, int]:
    """Arch key -> its completed trials among `keys`, counted in `search_ids` and under `fingerprint` where given."""
    clause, p = _in("k", keys)
    p["completed"] = _COMPLETED
    sql = f"SELECT arch_key, COUNT(*) FROM trials WHERE status = :completed AND arch_key IN {clause}"
    if search_ids:
        s_clause, s_params = _in("s", search_ids)
        sql += f" AND search_id IN {s_clause}"
        p.update(s_params)
    if fingerprint is not None:
        sql += " AND fingerprint = :fp"
        p["fp"] = fingerprint
    return {key: n for key, n in ex(sql + " GROUP BY arch_key", p)}


def _ranked_arch(rank: int, r: Sequence[Any], names: Mapping[int, str], evaluations: Mapping[str, int]) -> RankedArch:
    """The `RankedArch` of a `_best_trial_per_arch` row."""
    return RankedArch(
        rank=rank, arch_key=r[2], summary=r[6], flops=r[7], params=r[8], reward=r[3], trial_id=r[0],
        search=names[r[1]], metrics=json.loads(r[4]) if r[4] else {}, wall_s=r[5],
        evaluations=evaluations.get(r[2], 1), fingerprint=r[9],
    )  # fmt: skip


_TRIALS_FROM = "FROM trials t JOIN searches s ON s.id = t.search_id"


# --------------------------------------------------------------------------------------------------- read API
class ReadAPI(abc.ABC):
    """The read queries shared by `ResultStore` and `ResultReader`; subclasses provide `_executor()`."""

    @abc.abstractmethod
    def _executor(self) -> Any:
        """A context manager yielding an `Executor` on one connection."""

    # ----------------------------------------------------------------------------------------------- searches
    def list_searches(self) -> list[SearchRecord]:
        """Every search, oldest first."""
        with self._executor() as ex:
            return _searches(ex)

    def open_search(self, name: str) -> SearchRecord:
        """The search called `name`.

        Raises:
          LookupError: no such search; the message lists the known names.
        """
        with self._executor() as ex:
            rows = list(ex(f"SELECT {_SEARCH_COLUMNS} FROM searches s WHERE s.name = :name", {"name": name}))
            if not rows:
                raise _unknown_search(name, _search_names(ex).values())
        return _search_record(rows[0])

    def search_summaries(self) -> list[SearchSummary]:
        """Every search with its trial counts per status, best reward and last finish, oldest first."""
        with self._executor() as ex:
            searches = _searches(ex)
            counts: dict[int, dict[str, int]] = {}
            for sid, status, n in ex("SELECT search_id, status, COUNT(*) FROM trials GROUP BY search_id, status", {}):
                counts.setdefault(sid, {})[status] = n
            best = {
                sid: r
                for sid, r in ex(
                    "SELECT search_id, MAX(reward) FROM trials WHERE status = :st GROUP BY search_id",
                    {"st": _COMPLETED},
                )
            }
            last = {sid: _dt(t) for sid, t in ex("SELECT search_id, MAX(finished_at) FROM trials GROUP BY search_id",
                                                 {})}
            cost = _trial_costs(ex)
        return [
            SearchSummary(
                search=s,
                trials=sum(counts.get(s.id, {}).values()),
                counts=counts.get(s.id, {}),
                best_reward=best.get(s.id),
                last_finished_at=last.get(s.id),
                trial_s=cost.get(s.id, (0.0, 0))[0],
                steps=cost.get(s.id, (0.0, 0))[1],
            )
            for s in searches
        ]

    def controller_updates(self) -> dict[str, tuple[int, datetime.datetime | None]]:
        """Search name -> (the controller's update count at its newest stored checkpoint, when that was stored), for
        each search with a checkpoint (one follows an update at most every ``search.checkpoint_interval_s``, and
        the last one ends the search: while a search runs the count may lag by that interval)."""
        with self._executor() as ex:
            names = _search_names(ex)
            rows = ex("SELECT search_id, MAX(step), MAX(created_at) FROM controller_checkpoints GROUP BY search_id", {})
            return {names[sid]: (int(step), _dt(at)) for sid, step, at in rows if sid in names}

    # ----------------------------------------------------------------------------------------------- ranking
    def top(
        self,
        *,
        searches: Sequence[str] | None = None,
        k: int = 10,
        max_flops: float | None = None,
        fingerprint: str | None = None,
        include_pruned: bool = False,
    ) -> list[RankedArch]:
        """The `k` best architectures by the best reward of their completed trials.

        Args:
          searches: only these searches (default: all).
          k: how many.
          max_flops: only archs with measured FLOPs at most this (archs without FLOPs are left out).
          fingerprint: only trials with exactly this fingerprint are ranked and counted in `evaluations` (so
            rewards measured under different settings are not compared); None ranks every trial, whatever its
            fingerprint. `newest_fingerprint` gives the latest search's.
          include_pruned: rank pruned trials too, by the reward they were fed (by default only trials that trained
            to the last step are ranked).

        Raises:
          LookupError: an unknown search (the message lists the known ones). ValueError: k < 1, a bad fingerprint.
        """
        fingerprint = check_fingerprint(fingerprint)
        with self._executor() as ex:
            search_ids = [_search_id(ex, n) for n in searches] if searches else None
            if k < 1:
                raise ValueError(f"k must be at least 1, got {k}")
            names = _search_names(ex)
            where, params = _ranked_trials_where(search_ids=search_ids, fingerprint=fingerprint,
                                                 max_flops=max_flops, include_pruned=include_pruned)
            best = _best_trial_per_arch(ex, where, params, k)
            if not best:
                return []
            evaluations = _evaluation_counts(ex, list(best), search_ids=search_ids, fingerprint=fingerprint)
        return [_ranked_arch(i + 1, r, names, evaluations) for i, r in enumerate(best.values())]

    # ----------------------------------------------------------------------------------------------- archs
    def find_arch(self, key_or_prefix: str) -> ArchRecord:
        """The arch whose key is, or starts with, `key_or_prefix`.

        Raises:
          LookupError: no key starts with it. AmbiguousKeyError: several do (the message lists them).
        """
        from results_db.errors import AmbiguousKeyError

        prefix = key_or_prefix.strip().lower()
        with self._executor() as ex:
            if not prefix or not _HEX.match(prefix):
                raise LookupError(
                    f"expected an architecture key (hex digits, e.g. from `spinenas top`), got {key_or_prefix!r}"
                )
            rows = list(ex(f"SELECT {_ARCH_COLUMNS} FROM archs a WHERE a.key LIKE :p ORDER BY a.key LIMIT 11",
                           {"p": prefix + "%"}))
            if not rows:
                total = list(ex("SELECT COUNT(*) FROM archs", {}))[0][0]
                raise LookupError(
                    f"unknown architecture key {key_or_prefix!r}: no key starts with it ({total} archs in the "
                    "database; `spinenas top` lists keys)"
                )
        if len(rows) > 1 and rows[0][0] != prefix:
            raise AmbiguousKeyError(key_or_prefix, [r[0] for r in rows[:10]] + (["..."] if len(rows) > 10 else []))
        return _arch_record(rows[0])

    def get_arch(self, key: str) -> ArchRecord:
        """The arch with exactly this key.

        Raises:
          LookupError: no such key.
        """
        with self._executor() as ex:
            rows = list(ex(f"SELECT {_ARCH_COLUMNS} FROM archs a WHERE a.key = :key", {"key": key}))
        if not rows:
            raise LookupError(f"unknown architecture key {key!r}: no arch with that key in the database")
        return _arch_record(rows[0])

    def archs(self, keys: Iterable[str] | None = None) -> dict[str, ArchRecord]:
        """Archs by key: the given keys that exist, or every arch."""
        with self._executor() as ex:
            if keys is None:
                return {r[0]: _arch_record(r) for r in ex(f"SELECT {_ARCH_COLUMNS} FROM archs a", {})}
            ordered = sorted(set(keys))
            out: dict[str, ArchRecord] = {}
            for i in range(0, len(ordered), _CHUNK):
                clause, params = _in("k", ordered[i : i + _CHUNK])
                rows = ex(f"SELECT {_ARCH_COLUMNS} FROM archs a WHERE a.key IN {clause}", params)
                out.update((r[0], _arch_record(r)) for r in rows)
        return out

    # ----------------------------------------------------------------------------------------------- trials
    def get_trial(self, trial_id: int) -> TrialRecord:
        """One trial.

        Raises:
          LookupError: unknown trial.
        """
        with self._executor() as ex:
            rows = list(ex(f"SELECT {_TRIAL_COLUMNS} {_TRIALS_FROM} WHERE t.id = :id", {"id": trial_id}))
        if not rows:
            raise LookupError(f"unknown trial id {trial_id!r}")
        return _trial_record(rows[0])

    def trials(self, search: str, *, status: Any = None) -> list[TrialRecord]:
        """A search's trials in index order, optionally only those of some statuses.

        After a crash, ``trials(name, status=('queued', 'running'))`` gives the trials to run again.

        Args:
          search: the search's name.
          status: a status ('queued', 'running', 'completed', 'failed', 'cached', 'rejected', 'pruned'), several, or
            None for all.

        Raises:
          LookupError: unknown search. ValueError: unknown status.
        """
        statuses = _check_statuses(status)
        with self._executor() as ex:
            sql = f"SELECT {_TRIAL_COLUMNS} {_TRIALS_FROM} WHERE t.search_id = :s"
            params: dict[str, Any] = {"s": _search_id(ex, search)}
            if statuses is not None:
                st_clause, st_params = _in("st", statuses)
                sql += f" AND t.status IN {st_clause}"
                params.update(st_params)
            return [_trial_record(r) for r in ex(sql + ' ORDER BY t."index"', params)]

    def arch_trials(self, key: str) -> list[TrialRecord]:
        """Every trial of an arch, in every search, oldest first."""
        with self._executor() as ex:
            rows = ex(f"SELECT {_TRIAL_COLUMNS} {_TRIALS_FROM} WHERE t.arch_key = :k ORDER BY t.id", {"k": key})
            return [_trial_record(r) for r in rows]

    def history(self, search: str) -> list[tuple[tuple[int, ...], float | None]]:
        """``(decisions, reward)`` of the search's finished trials in completion order, for `controller.recover`.

        Finished means completed, failed, cached, rejected or pruned; the reward is what `finish_trial` stored (None if
        none).

        Raises:
          LookupError: unknown search.
        """
        with self._executor() as ex:
            rows = ex(
                "SELECT decisions, reward FROM trials WHERE search_id = :s AND finish_order IS NOT NULL "
                "ORDER BY finish_order",
                {"s": _search_id(ex, search)},
            )
            return [(tuple(json.loads(d)), r) for d, r in rows]

    def find_result(
        self, arch_key: str, *, fingerprint: str | None, include_failed: bool = False, include_pruned: bool = False
    ) -> KnownResult | None:
        """The best finished result of an arch across all searches, or None: "this key already has a result".

        Only trials with exactly `fingerprint` count: a reward measured under other settings (another evaluator,
        proxy or reward function) is not this search's to reuse. A trial without a fingerprint (written before
        schema 0002, not backfilled) matches nothing, and neither does ``fingerprint=None``. The completed trial
        with the highest reward wins (completed trials without a reward come last). With `include_pruned`, an arch
        that never completed gives its pruned trial with the highest reward (the reward it was fed). With
        `include_failed`, an arch that only ever failed under the fingerprint gives its latest failed trial.

        Raises:
          ValueError: a fingerprint that is not a string of 1..16 characters (or None).
        """
        fingerprint = check_fingerprint(fingerprint)
        if fingerprint is None:
            return None
        base = (
            "SELECT t.id, s.name, t.status, t.reward, t.metrics, t.error, t.wall_s, a.flops, a.params "
            "FROM trials t JOIN searches s ON s.id = t.search_id JOIN archs a ON a.key = t.arch_key "
            "WHERE t.arch_key = :k AND t.status = :st AND t.fingerprint = :fp "
        )
        params = {"k": arch_key, "st": _COMPLETED, "fp": fingerprint}
        best_first = "ORDER BY CASE WHEN t.reward IS NULL THEN 1 ELSE 0 END, t.reward DESC, t.id LIMIT 1"
        with self._executor() as ex:
            rows = list(ex(base + best_first, params))
            if not rows and include_pruned:
                params["st"] = TrialStatus.PRUNED.value
                rows = list(ex(base + best_first, params))
            if not rows and include_failed:
                params["st"] = TrialStatus.FAILED.value
                rows = list(ex(base + "ORDER BY t.finished_at DESC, t.id DESC LIMIT 1", params))
        if not rows:
            return None
        r = rows[0]
        return KnownResult(
            arch_key=arch_key, trial_id=r[0], search=r[1], status=r[2], reward=r[3],
            metrics=json.loads(r[4]) if r[4] else {}, error=r[5], wall_s=r[6], flops=r[7], params=r[8],
        )  # fmt: skip

    # ----------------------------------------------------------------------------------------------- reports
    def reports(self, trial_ids: Iterable[int]) -> dict[int, list[TrialReport]]:
        """The learning curves of trials: trial id -> its reports in step order.

        Every given id is a key; a trial without reports (or an unknown id) maps to an empty list. One query per
        500 trials.

        Example::

          curves = reader.reports([t.id for t in reader.trials('ppo-1')])
          losses = [(r.step, r.metrics.get('train_loss')) for r in curves[trial_id]]
        """
        ids = list(dict.fromkeys(int(t) for t in trial_ids))
        out: dict[int, list[TrialReport]] = {t: [] for t in ids}
        ordered = sorted(ids)
        with self._executor() as ex:
            for i in range(0, len(ordered), _CHUNK):
                clause, params = _in("t", ordered[i : i + _CHUNK])
                rows = ex(
                    f"SELECT trial_id, step, metrics, created_at FROM trial_reports WHERE trial_id IN {clause} "
                    "ORDER BY trial_id, step",
                    params,
                )
                for tid, step, metrics, created_at in rows:
                    out[tid].append(TrialReport(tid, step, json.loads(metrics), _dt(created_at)))
        return out

    # ----------------------------------------------------------------------------------------------- fingerprints
    def newest_fingerprint(self, searches: Sequence[str] | None = None) -> str | None:
        """The fingerprint of the newest search (highest id) among `searches` (None: all) that has one.

        What `spinenas top` ranks by default: the results comparable with the latest search's. None when no
        search considered has a fingerprint; with `searches` None, calibration studies are left out (only searches
        of kind 'search').

        Raises:
          LookupError: an unknown search (the message lists the known ones).
        """
        sql = "SELECT fingerprint FROM searches WHERE fingerprint IS NOT NULL"
        with self._executor() as ex:
            if searches is not None:
                ids = [_search_id(ex, n) for n in searches]
                if not ids:
                    return None
                clause, params = _in("s", ids)
                sql += f" AND id IN {clause}"
            else:
                sql += " AND kind = :kind"
                params = {"kind": "search"}
            rows = list(ex(sql + " ORDER BY id DESC LIMIT 1", params))
        return rows[0][0] if rows else None

    def fingerprint_summary(self) -> list[FingerprintSummary]:
        """What the database holds per fingerprint: searches, completed trials, the newest search's name.

        The fingerprint of the newest search comes first; searches and trials without a fingerprint are one entry
        with ``fingerprint=None``.
        """
        names: dict[int, str] = {}
        searches: dict[str | None, set[int]] = {}
        completed: dict[str | None, int] = {}
        with self._executor() as ex:
            for sid, name, fp in ex("SELECT id, name, fingerprint FROM searches", {}):
                names[sid] = name
                searches.setdefault(fp, set()).add(sid)
            rows = ex(
                "SELECT fingerprint, search_id, SUM(CASE WHEN status = :c THEN 1 ELSE 0 END) FROM trials "
                "GROUP BY fingerprint, search_id",
                {"c": _COMPLETED},
            )
            for fp, sid, n in rows:
                searches.setdefault(fp, set()).add(sid)
                completed[fp] = completed.get(fp, 0) + int(n or 0)
        # Newest search first: the fingerprint the latest search runs under comes before those of older ones.
        newest = sorted(((max(sids), fp) for fp, sids in searches.items()), key=lambda x: x[0], reverse=True)
        return [
            FingerprintSummary(fingerprint=fp, searches=len(searches[fp]), completed=completed.get(fp, 0),
                               newest_search=names[sid])
            for sid, fp in newest
        ]  # fmt: skip
