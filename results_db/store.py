"""`ResultStore`: the one way into the results database, for the search job (writes) and the CLI (reads).

The search job's driver is the only writer, from one process; readers (`spinenas top` in another shell) open the
database read-only and may run while it writes: SQLite runs in WAL mode, so readers never block the writer or each
other, and a busy timeout covers the short moments SQLite still serialises. Every method opens its own short
transaction and returns plain records (`results_db.records`), never ORM rows.

Example::

  store = ResultStore('sqlite:///runs/spinenas.db')
  store.create_search('demo', config=yaml_text, seed=0, controller='ppo', family='spinenet49', fingerprint=fp)
  key = store.register_arch(arch, family='spinenet49')
  if store.find_result(key, fingerprint=fp) is None:
      [trial_id] = store.add_trials('demo', [NewTrial(key, decisions)], status='running', host='node-1',
                                    fingerprint=fp)
      store.finish_trial(trial_id, status='completed', reward=0.31, metrics={'ap': 0.31}, wall_s=812.0,
                         reports=[(100, {'train_loss': 1.9}), (200, {'train_loss': 1.4, 'ap': 0.2})])
  store.save_checkpoint('demo', step=1, state=controller.state_dict())
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from results_db.errors import (
    DatabaseFullError,
    DatabaseNotFoundError,
    DatabaseOpenError,
    DuplicateSearchError,
    LeaseLostError,
    SchemaVersionError,
)
from results_db.integrity import check_before_writing, open_hint
from results_db.models import (
    MAX_NAME_LENGTH,
    SEARCH_KIND,
    SEARCH_KINDS,
    ArchModel,
    BaseModel,
    CheckpointModel,
    SearchModel,
    SearchStatus,
    TrialModel,
    TrialReportModel,
    TrialStatus,
    utcnow,
)
from results_db.queries import Executor, ReadAPI, check_fingerprint
from results_db.records import CheckpointRecord, KnownResult, NewTrial, SearchRecord
from results_db.url import resolve_url, sqlite_path
from results_db.version import SCHEMA_VERSION, check_version

if TYPE_CHECKING:
    import datetime

    from search_space import ArchSpec

logger = logging.getLogger(__name__)

# How long a connection waits for a lock before failing with "database is locked" (SQLite busy timeout).
BUSY_TIMEOUT_S = 30.0
# WAL pages between automatic checkpoints (SQLite's default is 1000).
WAL_AUTOCHECKPOINT_PAGES = 10_000
# Seconds to wait for a database server before giving up (PostgreSQL's connect_timeout).
CONNECT_TIMEOUT_S = 10

_SEARCHES = SearchModel.__table__
_ARCHS = ArchModel.__table__
_TRIALS = TrialModel.__table__
_CHECKPOINTS = CheckpointModel.__table__
_REPORTS = TrialReportModel.__table__


def _finish_trial_statement() -> Any:
    # One UPDATE reads and writes the trial's row: it only touches a trial that is still open, and it takes the
    # next position in the search's completion order from the same statement.
    other = _TRIALS.alias("other")
    order = (
        select(func.coalesce(func.max(other.c.finish_order), 0) + 1)
        .where(other.c.search_id == _TRIALS.c.search_id)
        .scalar_subquery()
    )
    values = {c: bindparam(c) for c in ("status", "reward", "metrics", "error", "wall_s", "finished_at", "cached_from",
                                        "precision")}
    # The worker reports its host with the result; keep the start's host when it does not.
    host = func.coalesce(bindparam("host", type_=String), _TRIALS.c.host)
    return (
        _TRIALS.update()
        .where(_TRIALS.c.id == bindparam("trial_id"), _TRIALS.c.status.in_([TrialStatus.QUEUED, TrialStatus.RUNNING]))
        .values(finish_order=order, host=host, **values)
    )


_FINISH_TRIAL = _finish_trial_statement()
# What `finish_trial` may set, in the order its error message lists them.
_FINAL_STATUSES = (TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.CACHED, TrialStatus.REJECTED,
                   TrialStatus.PRUNED)
# A trial's measured cost goes to its arch, unless the arch already has one.
_SET_ARCH_COST = (
    _ARCHS.update()
    .where(_ARCHS.c.key == select(_TRIALS.c.arch_key).where(_TRIALS.c.id == bindparam("trial_id")).scalar_subquery())
    .values(
        flops=func.coalesce(_ARCHS.c.flops, bindparam("flops", type_=BigInteger)),
        params=func.coalesce(_ARCHS.c.params, bindparam("params", type_=BigInteger)),
    )
)

# Alembic's own version table, as `alembic stamp` creates it; written directly when a fresh database is created
# so that the writer need not import Alembic.
_VERSION_TABLE = Table(
    "alembic_version", MetaData(), Column("version_num", String(32), primary_key=True, nullable=False)
)


def _one_line(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    lines = [ln.strip() for ln in str(orig).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(orig).__name__


def _disk_full(orig: BaseException | None) -> bool:
    """Is a driver's error a full file system? SQLite's SQLITE_FULL (13), an OSError ENOSPC, PostgreSQL's
    disk_full (SQLSTATE 53100)."""
    if isinstance(orig, OSError):
        return orig.errno == errno.ENOSPC
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == 13
    return "database or disk is full" in str(orig) or getattr(orig, "sqlstate", None) == "53100"


def _locked(orig: BaseException | None) -> bool:
    """Is a driver's error SQLite's SQLITE_BUSY (5, "database is locked"): another connection kept the write lock
    for the whole busy timeout?"""
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == 5
    return isinstance(orig, sqlite3.OperationalError) and "database is locked" in str(orig)


def _failures_in_one_line(engine: Engine, where: str) -> None:
    """Every statement and commit of `engine` that fails on a full file system raises `DatabaseFullError`, and one
    that waited the whole busy timeout for another process's write lock a `DatabaseOpenError` (one line for the
    user each) instead of the driver's error. SQLite rolls the transaction back, so the database stays sound."""

    @event.listens_for(engine, "handle_error")
    def _one_line_error(context: Any) -> BaseException | None:
        if _disk_full(context.original_exception):
            return DatabaseFullError(
                f"cannot write database {where}: its file system is full ({_one_line(context.original_exception)}); "
                "nothing of this write was stored and the database is sound: free space there, then run the command "
                "again (a search or a study continues with --resume)"
            )
        if _locked(context.original_exception):
            return DatabaseOpenError(
                f"cannot write database {where}: another process held its write lock for {BUSY_TIMEOUT_S:g} s "
                "(database is locked: a writer paused or hung in a transaction); nothing of this write was stored: "
                "end that process or let it go on, then run the command again (a search or a study continues with "
                "--resume)"
            )
        return None


def _check_status(value: Any, allowed: Iterable[TrialStatus | SearchStatus], what: str) -> Any:
    allowed = list(allowed)
    for member in allowed:
        if value == member or value == member.value:
            return member
    raise ValueError(f"{what} must be one of {[m.value for m in allowed]}, got {value!r}")


def _check_decisions(decisions: Any) -> str:
    if isinstance(decisions, (str, bytes)) or not isinstance(decisions, Sequence):
        raise ValueError(f"decisions must be a sequence of ints, got {type(decisions).__name__}")
    bad = [d for d in decisions if not isinstance(d, int) or isinstance(d, bool)]
    if bad:
        # numpy integers are fine: convert them, reject everything else.
        try:
            decisions = [int(d) if not isinstance(d, bool) and int(d) == d else None for d in decisions]
        except (TypeError, ValueError):
            decisions = [None]
        if any(d is None for d in decisions):
            raise ValueError(f"decisions must be ints, got {bad[0]!r} ({type(bad[0]).__name__})")
    return json.dumps([int(d) for d in decisions], separators=(",", ":"))


def _check_number(value: Any, what: str, *, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a finite number{' or None' if allow_none else ''}, got {value!r}") from None
    if not math.isfinite(f):
        raise ValueError(
            f"{what} must be a finite number, got {value!r}; store a failed trial with status 'failed' and the "
            "reward the config gives failures (or None)"
        )
    return f


def _check_count(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) and not (hasattr(value, "__index__")):
        raise ValueError(f"{what} must be a non-negative integer or None, got {value!r}")
    value = int(value)
    if value < 0:
        raise ValueError(f"{what} must be a non-negative integer or None, got {value!r}")
    return value


def _summary_of_canonical(canonical: ArchSpec) -> str:
    # `ArchSpec.summary()` spells `canonical().blocks`; given the canonical spec already, this skips a second
    # canonicalisation (about a fifth of `register_arch`). A test checks it equals `summary()`.
    return " ".join(f"{b.level}{b.block_fn[0]}{'*' if b.is_output else ''}" for b in canonical.blocks)


def _arch_row(arch: ArchSpec, key: str, family: str | None, flops: int | None, params: int | None) -> dict[str, Any]:
    canonical = arch.canonical()
    return {
        "key": key,
        "spec_json": canonical.to_json(),
        "summary": _summary_of_canonical(canonical),
        "family": family,
        "flops": flops,
        "params": params,
        "created_at": utcnow(),
    }


_NEW_ARCH_STMTS: dict[str, Any] = {}


def _insert_new_arch_stmt(dialect: Any) -> Any:
    """``INSERT INTO archs .. ON CONFLICT (key) DO NOTHING RETURNING key`` where the backend has it, else None.

    RETURNING, not the row count: psycopg 3 reports -1 for an INSERT once SQLAlchemy has closed its cursor.
    """
    if dialect.name not in ("sqlite", "postgresql") or not dialect.insert_returning:
        return None
    stmt = _NEW_ARCH_STMTS.get(dialect.name)
    if stmt is None:
        if dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        stmt = dialect_insert(_ARCHS).on_conflict_do_nothing(index_elements=[_ARCHS.c.key]).returning(_ARCHS.c.key)
        _NEW_ARCH_STMTS[dialect.name] = stmt
    return stmt


def _search_record(row: SearchModel) -> SearchRecord:
    return SearchRecord(
        id=row.id,
        name=row.name,
        config=row.config,
        seed=row.seed,
        controller=row.controller,
        family=row.family,
        status=SearchStatus(row.status).value,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        fingerprint=row.fingerprint,
        kind=row.kind,
        lease_owner=row.lease_owner,
        lease_host=row.lease_host,
        lease_pid=row.lease_pid,
        lease_heartbeat=row.lease_heartbeat,
    )


_UPSERT_REPORT_STMTS: dict[str, Any] = {}


def _upsert_reports_stmt(dialect: Any) -> Any:
    """``INSERT INTO trial_reports .. ON CONFLICT (trial_id, step) DO UPDATE`` where the backend has it, else None.

    A trial run again (the driver resumed after a crash, or Ray retried the task) reports the same steps again:
    the newer report replaces the row of its step, in one statement for the whole batch.
    """
    if dialect.name not in ("sqlite", "postgresql"):
        return None
    stmt = _UPSERT_REPORT_STMTS.get(dialect.name)
    if stmt is None:
        if dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        ins = dialect_insert(_REPORTS)
        stmt = ins.on_conflict_do_update(
            index_elements=[_REPORTS.c.trial_id, _REPORTS.c.step],
            set_={"metrics": ins.excluded.metrics, "created_at": ins.excluded.created_at},
        )
        _UPSERT_REPORT_STMTS[dialect.name] = stmt
    return stmt


def _check_step(value: Any) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < 0:
        raise ValueError(f"a report's step must be a non-negative integer, got {value!r}")
    return int(value)


def _report_metrics_json(metrics: Any, step: int) -> str:
    # Floats only; NaN and inf become null rather than being dropped or refused: a diverged loss at step 300 is
    # what the curve of a failed trial should show (and strict JSON has no NaN for the reader to parse).
    if not isinstance(metrics, Mapping):
        raise ValueError(f"the metrics of the report at step {step} must be a mapping, got {type(metrics).__name__}")
    out: dict[str, float | None] = {}
    for name, value in metrics.items():
        if not isinstance(name, str):
            raise ValueError(f"report metric names must be strings, got {name!r} at step {step}")
        if value is None:
            out[name] = None
            continue
        if isinstance(value, (bool, str, bytes)):
            raise ValueError(f"report metric {name!r} at step {step} must be a number or None, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"report metric {name!r} at step {step} must be a number or None, got {value!r}"
            ) from None
        out[name] = f if math.isfinite(f) else None
    return json.dumps(out, separators=(",", ":"), allow_nan=False)


def _report_rows(trial_id: int, reports: Any) -> list[dict[str, Any]]:
    """Rows for `trial_reports`, in step order; of two reports of one step the later one is kept."""
    if isinstance(reports, (Mapping, str, bytes)) or not isinstance(reports, Iterable):
        raise ValueError(f"reports must be a sequence of (step, metrics) pairs, got {type(reports).__name__}")
    by_step: dict[int, str] = {}
    for item in reports:
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 2:
            raise ValueError(f"each report must be a (step, metrics) pair, got {item!r}")
        step = _check_step(item[0])
        by_step[step] = _report_metrics_json(item[1], step)
    now = utcnow()
    return [{"trial_id": trial_id, "step": s, "metrics": m, "created_at": now} for s, m in sorted(by_step.items())]


class ResultStore(ReadAPI):
    """The results database: searches, archs, trials and controller checkpoints.

    Args:
      url: a SQLAlchemy URL, a plain file path (SQLite), or None for ``$SPINENAS_DB`` or
        ``sqlite:///runs/spinenas.db`` (see `results_db.url`).
      readonly: open for reading only. SQLite is then opened with ``mode=ro``: a missing file raises
        `DatabaseNotFoundError` and nothing is created; write methods raise `RuntimeError`.
      echo: log every SQL statement (SQLAlchemy's echo).
      create: a writer may create a missing SQLite file and the tables of an empty one (False: the database must
        exist already, as for a resume).

    Raises:
      DatabaseNotFoundError: readonly and the SQLite file does not exist.
      DatabaseOpenError: not a database, corrupt, unreachable, a driver missing, or not a spinenas database.
      SchemaVersionError: the database has another schema version (the message says what to do).

    A writer creates a missing SQLite file (and its directory) and the tables of an empty database, and first checks
    an existing file with SQLite's quick_check: a damaged or non-database file is refused and left untouched.
    """

    def __init__(self, url: str | None = None, *, readonly: bool = False, echo: bool = False,
                 create: bool = True) -> None:
        self.url = resolve_url(url)
        self.readonly = readonly
        path = sqlite_path(self.url)
        if path and not readonly:
            # Before the engine exists (it creates the file): a damaged file is refused, never written into.
            check_before_writing(path, create=create)
        self._search_ids: dict[str, int] = {}
        self._arch_keys: set[str] = set()  # writer: every key stored (loaded at open, kept up to date)
        self._trialless_keys: set[str] = set()  # writer: keys it inserted itself that have no trial yet
        self._next_index: dict[int, int] = {}  # writer: search id -> index of its next trial
        self._local = threading.local()  # the writer's connection of each thread
        self._connections: list[Connection] = []
        self._fence: tuple[int, str, str] | None = None  # (search id, lease owner, name): see `fence`
        self._engine = self._create_engine(echo)
        _failures_in_one_line(self._engine, self.display_url)
        try:
            self._open()
        except BaseException:
            self._engine.dispose()
            raise
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    # ------------------------------------------------------------------------------------------- opening
    @property
    def display_url(self) -> str:
        """The URL with any password hidden, for messages."""
        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except sa_exc.ArgumentError:
            return self.url

    def _create_engine(self, echo: bool) -> Engine:
        path = sqlite_path(self.url)
        try:
            if path is None:
                return self._create_server_engine(echo)
            if path == "":
                # One shared connection: every new connection to :memory: would be another, empty database.
                engine = create_engine(
                    "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}, echo=echo
                )
            elif self.readonly:
                if not os.path.exists(path):
                    raise DatabaseNotFoundError(
                        f"no database at {path}: nothing has been written there (give the search's --db, or set "
                        "$SPINENAS_DB)"
                    )
                if not os.path.isfile(path):
                    raise DatabaseOpenError(f"{path} is not a database file (it is a directory or a device)")
                from results_db.reader import connect_readonly

                def connect() -> sqlite3.Connection:
                    # mode=ro, or immutable where no -shm can be made beside it (a read-only or full disk).
                    return connect_readonly(path, timeout=BUSY_TIMEOUT_S)

                engine = create_engine("sqlite://", creator=connect, echo=echo)
            else:
                parent = os.path.dirname(os.path.abspath(path))
                if parent:
                    os.makedirs(parent, exist_ok=True)
                engine = create_engine(self.url, connect_args={"timeout": BUSY_TIMEOUT_S}, echo=echo)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as e:
            what = "its driver is not installed: " if isinstance(e, ImportError) else ""
            raise DatabaseOpenError(f"cannot open database {self.display_url}: {what}{_one_line(e)}") from None
        readonly = self.readonly

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if readonly:
                cur.execute("PRAGMA query_only = ON")
            else:
                cur.execute("PRAGMA foreign_keys = ON")
                # In WAL mode NORMAL syncs at checkpoints, not at every commit: a committed trial survives a crash
                # of the process (the driver's failure mode) and may be lost only with the machine's power.
                cur.execute("PRAGMA synchronous = NORMAL")
                # Fewer, larger WAL checkpoints (each costs two fsyncs): a controller checkpoint of a few MB commits
                # in about half the time it takes with the default 1000 pages. The WAL may grow to ~40 MB while a
                # search writes; closing the store folds it back into the database file.
                cur.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            cur.close()

        return engine

    def _create_server_engine(self, echo: bool) -> Engine:
        url = make_url(self.url)
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql":
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        engine = create_engine(url, echo=echo, pool_pre_ping=True, connect_args=connect_args)
        if self.readonly and url.get_backend_name() == "postgresql":

            @event.listens_for(engine, "connect")
            def _read_only(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                cur.close()
                dbapi_conn.commit()

        return engine

    def _open(self) -> None:
        try:
            with self._engine.connect() as conn:
                version = self._read_version(conn)
                if version is None:
                    if self.readonly:
                        raise DatabaseOpenError(
                            f"database {self.display_url} is empty: no search has written to it yet"
                        )
                    version = self._create_schema(conn)
                check_version(version, self.display_url)
                if not self.readonly:
                    if self._engine.dialect.name == "sqlite":
                        conn.exec_driver_sql("PRAGMA journal_mode = WAL")
                    # The driver is the only writer, so what it has stored is known here (an arch is never
                    # deleted): `find_result` answers "never seen" and `register_arch` skips its lookup without
                    # a query. 14,000 keys take about 1 MB.
                    self._arch_keys.update(conn.scalars(select(_ARCHS.c.key)))
        except (DatabaseOpenError, SchemaVersionError):
            raise
        except (sa_exc.DBAPIError, sa_exc.NoSuchModuleError, ImportError, OSError) as e:
            hint = ""
            if "not a database" in str(e):
                hint = " (the file is not a SQLite database, or it is corrupt)"
            elif isinstance(getattr(e, "orig", None), sqlite3.Error):
                hint = open_hint(sqlite_path(self.url) or "the database", e.orig)  # a full or read-only disk
            raise DatabaseOpenError(f"cannot open database {self.display_url}: {_one_line(e)}{hint}") from None

    @staticmethod
    def _read_version(conn: Any) -> str | None:
        """The database's schema version; None for an empty database.

        Raises:
          DatabaseOpenError: the database has tables but no version table (not a spinenas database).
        """
        tables = set(inspect(conn).get_table_names())
        if "alembic_version" not in tables:
            if not tables:
                return None
            raise DatabaseOpenError(
                f"not a spinenas results database: it has tables {sorted(tables)[:6]} but no schema version "
                "(alembic_version)"
            )
        versions = [r[0] for r in conn.execute(select(_VERSION_TABLE.c.version_num))]
        if len(versions) != 1:
            raise DatabaseOpenError(f"the database records {len(versions)} schema versions {versions}; expected one")
        return versions[0]

    def _create_schema(self, conn: Any) -> str:
        """Creates the tables and the version row of an empty database, all or nothing; returns its version.

        A server's DDL is transactional: one transaction on `conn`. Python's sqlite3 runs each CREATE outside the
        transaction and commits it at once, so a search interrupted while it made its database left tables without a
        version, and every later command refused the file as "not a spinenas results database". A SQLite file gets
        its schema in one transaction of its own instead (`results_db.migrate.migration_engine`: BEGIN IMMEDIATE, so
        a second writer making the same file waits, then finds it made), in WAL mode from the start: a kill -9
        leaves an empty database, made again by the next writer.
        """
        path = sqlite_path(self.url)
        if path:
            from results_db.migrate import migration_engine

            conn.exec_driver_sql("PRAGMA journal_mode = WAL")
            conn.commit()
            engine = migration_engine(self.url)
            try:
                with engine.begin() as own:
                    version = self._read_version(own)
                    if version is None:
                        version = self._create_tables(own)
            finally:
                engine.dispose()
            return version
        version = self._create_tables(conn)
        conn.commit()
        return version

    @staticmethod
    def _create_tables(conn: Any) -> str:
        logger.info("creating the results database schema (version %s)", SCHEMA_VERSION)
        BaseModel.metadata.create_all(conn)
        _VERSION_TABLE.create(conn, checkfirst=True)
        conn.execute(_VERSION_TABLE.insert().values(version_num=SCHEMA_VERSION))
        return SCHEMA_VERSION

    def close(self) -> None:
        """Closes every connection (the store cannot be used afterwards)."""
        for conn in self._connections:
            conn.close()
        self._connections.clear()
        self._local = threading.local()
        self._engine.dispose()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultStore({self.display_url!r}{', readonly=True' if self.readonly else ''})"

    @contextmanager
    def _write(self) -> Iterator[Session]:
        if self.readonly:
            raise RuntimeError(f"{self!r} was opened read-only; open it without readonly=True to write")
        with self._sessions() as session, session.begin():
            self._check_fence(session.connection())
            yield session

    # ------------------------------------------------------------------------------------------- fencing
    def fence(self, search: str, owner: str) -> None:
        """From now on every write of this store (trials, reports, checkpoints, the search row, archs) first checks,
        in its own transaction, that `owner` still holds the lease of `search`, and raises `LeaseLostError`
        otherwise, storing nothing. The check is an update of the search row by its lease owner: it takes the
        row's write lock, so a takeover (`take_lease`) lands either before the check, which then fails, or after
        the write has committed. Lease operations themselves are not fenced.

        Raises:
          LookupError: unknown search.
        """
        with self._read() as session:
            self._fence = (self._search_id(search, session), str(owner), search)

    def _check_fence(self, conn: Connection) -> None:
        fence = self._fence
        if fence is None:
            return
        sid, owner, name = fence
        held = conn.execute(
            _SEARCHES.update().where(_SEARCHES.c.id == sid, _SEARCHES.c.lease_owner == owner)
            .values(lease_owner=owner)
        ).rowcount
        if held != 1:
            raise LeaseLostError(f"another driver took over search {name!r}: this one stops without writing more")

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextmanager
    def _executor(self) -> Iterator[Executor]:
        # The shared read queries (results_db.queries) run as text() on one connection.
        with self._engine.connect() as conn:

            def ex(sql: str, params: Mapping[str, Any]) -> Any:
                return conn.execute(text(sql), params)

            yield ex

    def open_search(self, name: str) -> SearchRecord:
        """The search called `name` (to resume it or inspect it).

        Raises:
          LookupError: no such search; the message lists the known names.
        """
        record = super().open_search(name)
        self._search_ids[name] = record.id
        return record

    def find_result(
        self, arch_key: str, *, fingerprint: str | None, include_failed: bool = False, include_pruned: bool = False
    ) -> KnownResult | None:
        """The best finished result of an arch under `fingerprint` across all searches, or None.

        Only trials with exactly this fingerprint count; a trial without one, and ``fingerprint=None``, match
        nothing (see `ReadAPI.find_result`). The completed trial with the highest reward wins (completed trials
        without a reward come last). With `include_failed`, an arch that only ever failed gives its latest failed
        trial. A writer answers without a query for a key it has never stored, or has stored itself and added no
        trial for yet (such a key has no result under any fingerprint).

        Raises:
          ValueError: a fingerprint that is not a string of 1..16 characters (or None).
        """
        fingerprint = check_fingerprint(fingerprint)
        # The driver proposes mostly new archs; a writer knows every key stored when it opened and every key it
        # stored since, so those lookups cost no query. (A key that another process registered after this store
        # opened is seen after reopening; the worst case is one repeated evaluation, not a wrong result.)
        # The driver registers a proposal's arch before it looks the key up: a key this store has just inserted
        # has no trial yet, so no result either (the same caveat: another writer's trial of it in between is not
        # seen).
        if fingerprint is None or (
            not self.readonly and (arch_key not in self._arch_keys or arch_key in self._trialless_keys)
        ):
            return None
        return super().find_result(arch_key, fingerprint=fingerprint, include_failed=include_failed,
                                   include_pruned=include_pruned)

    @contextmanager
    def _write_conn(self, *, fenced: bool = True) -> Iterator[Connection]:
        # Core statements on the writer's own connection: the per-trial writes skip the ORM unit of work and the
        # pool's checkout and reset (together 3-5x the cost of the SQL itself). One connection per thread.
        if self.readonly:
            raise RuntimeError(f"{self!r} was opened read-only; open it without readonly=True to write")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._engine.connect()
            self._connections.append(conn)
        with conn.begin():
            if fenced:
                self._check_fence(conn)
            yield conn

    def _search_id_conn(self, name: str, conn: Connection) -> int:
        sid = self._search_ids.get(name)
        if sid is None:
            sid = conn.scalar(select(_SEARCHES.c.id).where(_SEARCHES.c.name == name))
            if sid is None:
                with Session(bind=conn) as session:
                    SearchModel.find_or_raise_by_name(name, session)
            self._search_ids[name] = sid
        return sid

    def _search_id(self, name: str, session: Session) -> int:
        sid = self._search_ids.get(name)
        if sid is None:
            sid = SearchModel.find_or_raise_by_name(name, session).id
            self._search_ids[name] = sid
        return sid

    # ------------------------------------------------------------------------------------------- searches
    def create_search(
        self,
        name: str,
        *,
        config: str | Mapping[str, Any] = "",
        seed: int | None = None,
        controller: str = "",
        family: str = "",
        fingerprint: str | None = None,
        kind: str = SEARCH_KIND,
    ) -> SearchRecord:
        """Creates a search, with status 'running'.

        Args:
          name: unique name (1..128 characters).
          config: the fully resolved config, as YAML/JSON text or a JSON-able mapping.
          seed: the search's seed.
          controller: the controller's name ('ppo', 'random', 'evolution', ...).
          family: the search space family ('spinenet49', ...).
          fingerprint: the fingerprint of the config (computed by the search job); give the same to
            `add_trials` for the search's trials.
          kind: 'search', or 'calibration' for a `spinenas calibrate` study.

        Returns:
          The new search.

        Raises:
          DuplicateSearchError: a search with this name exists (resume it with `open_search`).
          ValueError: an empty or too long name, a fingerprint that is not a string of 1..16 characters.
        """
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"search name must be 1..{MAX_NAME_LENGTH} characters, got {name!r}")
        fingerprint = check_fingerprint(fingerprint)
        if kind not in SEARCH_KINDS:
            raise ValueError(f"search kind must be one of {list(SEARCH_KINDS)}, got {kind!r}")
        if isinstance(config, Mapping):
            config = json.dumps(config, indent=2, sort_keys=True)
        try:
            with self._write() as session:
                existing = SearchModel.find_by_name(name, session)
                if existing is not None:
                    raise DuplicateSearchError(
                        f"a search named {name!r} already exists (status {SearchStatus(existing.status).value}, "
                        f"created {existing.created_at:%Y-%m-%d %H:%M} UTC); resume it, or choose another name"
                    )
                row = SearchModel(
                    name=name,
                    config=config,
                    seed=None if seed is None else int(seed),
                    controller=controller,
                    family=family,
                    status=SearchStatus.RUNNING,
                    fingerprint=fingerprint,
                    kind=kind,
                )
                session.add(row)
                session.flush()
                record = _search_record(row)
        except sa_exc.IntegrityError:
            raise DuplicateSearchError(f"a search named {name!r} already exists") from None
        self._search_ids[name] = record.id
        logger.info("created search %r (id %d)", name, record.id)
        return record

    # ------------------------------------------------------------------------------------------- leases
    def take_lease(self, name: str, *, owner: str, host: str, pid: int, timeout_s: float,
                   may_take: Callable[[SearchRecord], bool] | None = None) -> tuple[bool, SearchRecord]:
        """Takes the search's lease for a driver, atomically (compare-and-set in one transaction).

        The lease is free when no one holds it, when `owner` holds it, when its heartbeat is older than
        `timeout_s`, or when `may_take(record)` says so (the caller's rule for a holder on this host whose process is
        gone). Two drivers racing for a free lease: one gets it, the other sees it held.

        Args:
          name: the search.
          owner: this driver's id (unique per run).
          host, pid: where this driver runs.
          timeout_s: a heartbeat older than this (or further than this in the future: a clock set back) is a dead
            driver's (`SearchRecord.lease_fresh`).
          may_take: may this driver take a lease held by another live-looking one.

        Returns:
          (taken, the search as it was before): when not taken, the record says who holds it.

        Raises:
          LookupError: unknown search.
        """
        now = utcnow()
        record = self.open_search(name)
        held = record.lease_owner is not None and record.lease_owner != owner
        if held and record.lease_fresh(now, timeout_s) and not (may_take and may_take(record)):
            return False, record
        with self._write_conn(fenced=False) as conn:
            sid = self._search_id_conn(name, conn)
            # Compare-and-set on the holder and its heartbeat as read: a holder that renewed in between keeps it.
            same = (_SEARCHES.c.lease_owner.is_(None) if record.lease_owner is None
                    else _SEARCHES.c.lease_owner == record.lease_owner)
            beat = (_SEARCHES.c.lease_heartbeat.is_(None) if record.lease_heartbeat is None
                    else _SEARCHES.c.lease_heartbeat == record.lease_heartbeat)
            done = conn.execute(
                _SEARCHES.update()
                .where(_SEARCHES.c.id == sid, same, beat)
                .values(lease_owner=owner, lease_host=host, lease_pid=pid, lease_heartbeat=now)
            ).rowcount
        if done != 1:  # another driver took it between the read and the write
            return False, self.open_search(name)
        return True, record

    def renew_lease(self, name: str, owner: str) -> bool:
        """The heartbeat of a lease `owner` holds; False when it no longer holds it (another driver took it over)."""
        with self._write_conn(fenced=False) as conn:
            sid = self._search_id_conn(name, conn)
            return conn.execute(
                _SEARCHES.update()
                .where(_SEARCHES.c.id == sid, _SEARCHES.c.lease_owner == owner)
                .values(lease_heartbeat=utcnow())
            ).rowcount == 1

    def release_lease(self, name: str, owner: str) -> None:
        """Gives the lease up (if `owner` still holds it)."""
        with self._write_conn(fenced=False) as conn:
            sid = self._search_id_conn(name, conn)
            conn.execute(
                _SEARCHES.update()
                .where(_SEARCHES.c.id == sid, _SEARCHES.c.lease_owner == owner)
                .values(lease_owner=None, lease_host=None, lease_pid=None, lease_heartbeat=None)
            )

    def set_search_status(self, name: str, status: str | SearchStatus) -> None:
        """Sets a search's status: 'running' (clears the finish time) or 'completed' / 'failed' / 'stopped'.

        Raises:
          LookupError: unknown search. ValueError: unknown status.
        """
        st = _check_status(status, SearchStatus, "search status")
        now = utcnow()
        with self._write() as session:
            sid = self._search_id(name, session)
            session.execute(
                update(SearchModel)
                .where(SearchModel.id == sid)
                .values(status=st, updated_at=now, finished_at=None if st == SearchStatus.RUNNING else now)
            )

    def set_search_fingerprint(self, name: str, fingerprint: str) -> int:
        """Sets a search's fingerprint, and that of its trials that have none, in one transaction.

        The backfill of a search written before schema 0002: `spinenas db upgrade` computes the fingerprint from
        the search's stored config. Trials that already have a fingerprint keep it. The search's `updated_at` is
        left alone (it dates the search's own progress).

        Returns:
          How many trials got the fingerprint.

        Raises:
          LookupError: unknown search. ValueError: a fingerprint that is not a string of 1..16 characters.
        """
        fingerprint = check_fingerprint(fingerprint, allow_none=False)
        with self._write_conn() as conn:
            sid = self._search_id_conn(name, conn)
            conn.execute(_SEARCHES.update().where(_SEARCHES.c.id == sid).values(fingerprint=fingerprint))
            return conn.execute(
                _TRIALS.update()
                .where(_TRIALS.c.search_id == sid, _TRIALS.c.fingerprint.is_(None))
                .values(fingerprint=fingerprint)
            ).rowcount

    # ------------------------------------------------------------------------------------------- archs
    def register_arch(
        self, arch: ArchSpec, *, family: str | None = None, flops: int | None = None, params: int | None = None
    ) -> str:
        """Stores an architecture under its key (idempotent) and returns the key.

        The canonical spec is stored. Registering a key again changes nothing but fills in a family, FLOPs or
        parameter count that was not known yet.

        Args:
          arch: the `ArchSpec`.
          family: the family it was searched in.
          flops, params: of the proxy detector, when known.

        Returns:
          ``arch.key``.
        """
        flops, params = _check_count(flops, "flops"), _check_count(params, "params")
        key = arch.key
        known = key in self._arch_keys
        if known and family is None and flops is None and params is None:
            return key
        inserted: list[str] = []
        with self._write_conn() as conn:
            if not known:
                inserted = self._insert_archs(conn, {key: arch}, family, flops, params)
                known = not inserted
            if known:
                conn.execute(
                    _ARCHS.update()
                    .where(_ARCHS.c.key == key)
                    .values(
                        family=func.coalesce(_ARCHS.c.family, family),
                        flops=func.coalesce(_ARCHS.c.flops, flops),
                        params=func.coalesce(_ARCHS.c.params, params),
                    )
                )
        # The caches change only once the rows are committed.
        self._arch_keys.add(key)
        self._trialless_keys.update(inserted)
        return key

    def register_archs(self, archs: Sequence[ArchSpec], *, family: str | None = None) -> list[str]:
        """`register_arch` for a batch of proposals, in one transaction; returns their keys in order.

        Already stored keys are left as they are (use `register_arch` to add a cost to one).
        """
        keys = [a.key for a in archs]
        new: dict[str, ArchSpec] = {}
        for key, arch in zip(keys, archs):
            if key not in self._arch_keys:
                new.setdefault(key, arch)
        if new:
            with self._write_conn() as conn:
                inserted = self._insert_archs(conn, new, family, None, None)
            self._arch_keys.update(new)
            self._trialless_keys.update(inserted)
        return keys

    def _insert_archs(
        self, conn: Connection, archs: dict[str, ArchSpec], family: str | None, flops: int | None, params: int | None
    ) -> list[str]:
        """Inserts the archs not stored yet (another writer may have stored some); returns the keys it inserted.

        The caller adds `archs` to `_arch_keys` and the inserted keys to `_trialless_keys` once committed.
        """
        if len(archs) == 1:
            stmt = _insert_new_arch_stmt(conn.dialect)
            if stmt is not None:
                # The driver's case, one proposal: one statement inserts the row unless it exists and says which
                # (a lookup then an insert cost about a tenth of a trial's writes).
                [(key, arch)] = archs.items()
                row = conn.execute(stmt, _arch_row(arch, key, family, flops, params)).first()
                return [] if row is None else [key]
        # One query per batch: keys this store has not seen may still exist if another process wrote them.
        present = set(conn.scalars(select(_ARCHS.c.key).where(_ARCHS.c.key.in_(list(archs)))))
        rows = [_arch_row(a, k, family, flops, params) for k, a in archs.items() if k not in present]
        if rows:
            conn.execute(_ARCHS.insert(), rows)
        return [r["key"] for r in rows]

    # ------------------------------------------------------------------------------------------- trials
    def add_trials(
        self,
        search: str,
        trials: Sequence[NewTrial | tuple[str, Sequence[int]]],
        *,
        status: str | TrialStatus = TrialStatus.QUEUED,
        host: str | None = None,
        fingerprint: str | None = None,
    ) -> list[int]:
        """Adds trials to a search in one transaction and returns their ids, in order.

        Indices within the search continue from the last trial. A 'running' trial gets attempt 1, a start time
        and `host`; a 'queued' one attempt 0.

        Args:
          search: the search's name.
          trials: `NewTrial(arch_key, decisions)` or ``(arch_key, decisions)`` pairs; every arch registered.
          status: 'queued' or 'running'.
          host: the worker host, for running trials.
          fingerprint: what the trials' scores are measured under (the search job's fingerprint); only trials
            with the fingerprint a lookup gives are found by `find_result` and ranked by `top(fingerprint=)`.

        Raises:
          LookupError: unknown search or unregistered arch key. ValueError: bad status, decisions or fingerprint.
        """
        st = _check_status(status, (TrialStatus.QUEUED, TrialStatus.RUNNING), "status of a new trial")
        fingerprint = check_fingerprint(fingerprint)
        items = [t if isinstance(t, NewTrial) else NewTrial(*t) for t in trials]
        if not items:
            return []
        decisions = [_check_decisions(t.decisions) for t in items]
        now = utcnow()
        running = st == TrialStatus.RUNNING
        with self._write_conn() as conn:
            sid = self._search_id_conn(search, conn)
            unknown = {t.arch_key for t in items} - self._arch_keys
            if unknown:  # not registered through this store: perhaps by another process
                found = set(conn.scalars(select(_ARCHS.c.key).where(_ARCHS.c.key.in_(list(unknown)))))
                self._arch_keys.update(found)
                unknown -= found
            if unknown:
                raise LookupError(
                    f"unknown arch key(s) {sorted(unknown)}: register_arch(arch) before adding its trials"
                )
            start = self._next_index.get(sid)
            if start is None:
                top = conn.scalar(select(func.max(_TRIALS.c.index)).where(_TRIALS.c.search_id == sid))
                start = 0 if top is None else top + 1
            rows = [
                {
                    "search_id": sid,
                    "index": start + i,
                    "arch_key": t.arch_key,
                    "status": st,
                    "decisions": d,
                    "attempt": 1 if running else 0,
                    "host": host if running else None,
                    "created_at": now,
                    "started_at": now if running else None,
                    "fingerprint": fingerprint,
                }
                for i, (t, d) in enumerate(zip(items, decisions))
            ]
            if len(rows) == 1:
                ids = [conn.execute(_TRIALS.insert(), rows[0]).inserted_primary_key[0]]
            else:
                conn.execute(_TRIALS.insert(), rows)
                # Indices are unique within the search, so they give the ids back in order on every backend.
                id_of = dict(
                    conn.execute(
                        select(_TRIALS.c.index, _TRIALS.c.id).where(
                            _TRIALS.c.search_id == sid, _TRIALS.c.index >= start, _TRIALS.c.index < start + len(rows)
                        )
                    ).all()
                )
                ids = [id_of[start + i] for i in range(len(rows))]
        self._next_index[sid] = start + len(rows)
        self._trialless_keys.difference_update(t.arch_key for t in items)
        return ids

    def start_trial(
        self,
        trial_id: int,
        *,
        host: str | None = None,
        attempt: int | None = None,
        started_at: datetime.datetime | None = None,
    ) -> None:
        """Marks a queued (or re-queued running) trial as running.

        Args:
          trial_id: the trial.
          host: the worker host.
          attempt: the attempt number; default one more than the trial's last.
          started_at: UTC start time; default now.

        Raises:
          LookupError: unknown trial. RuntimeError: the trial has already finished.
        """
        values: dict[str, Any] = {
            "status": TrialStatus.RUNNING,
            "host": host,
            "started_at": started_at or utcnow(),
            "attempt": _TRIALS.c.attempt + 1 if attempt is None else _check_count(attempt, "attempt"),
        }
        with self._write_conn() as conn:
            done = conn.execute(
                _TRIALS.update()
                .where(_TRIALS.c.id == trial_id, _TRIALS.c.status.in_([TrialStatus.QUEUED, TrialStatus.RUNNING]))
                .values(**values)
            ).rowcount
            if not done:
                self._raise_not_open(trial_id, conn, "start")

    def retry_failed(self, search: str, trial_ids: Iterable[int] | None = None) -> list[int]:
        """Puts failed trials of a search back in the queue, to be run again (their next start is a new attempt).

        Their outcome (reward, metrics, error, times, host) and learning curve are cleared, in one transaction; the
        attempt count is kept. Trials of other statuses are left alone.

        Args:
          search: the search (or study).
          trial_ids: which of its failed trials (default: all of them).

        Returns:
          The ids of the trials re-queued.

        Raises:
          LookupError: unknown search.
        """
        with self._write_conn() as conn:
            sid = self._search_id_conn(search, conn)
            where = [_TRIALS.c.search_id == sid, _TRIALS.c.status == TrialStatus.FAILED]
            if trial_ids is not None:
                where.append(_TRIALS.c.id.in_([int(i) for i in trial_ids]))
            ids = [r[0] for r in conn.execute(select(_TRIALS.c.id).where(*where).order_by(_TRIALS.c.id))]
            if ids:
                conn.execute(_REPORTS.delete().where(_REPORTS.c.trial_id.in_(ids)))
                conn.execute(_TRIALS.update().where(_TRIALS.c.id.in_(ids)).values(
                    status=TrialStatus.QUEUED, reward=None, metrics=None, error=None, wall_s=None, started_at=None,
                    finished_at=None, host=None, precision=None))
        return ids

    @staticmethod
    def _raise_not_open(trial_id: int, conn: Connection, what: str) -> None:
        old = conn.scalar(select(_TRIALS.c.status).where(_TRIALS.c.id == trial_id))
        if old is None:
            raise LookupError(f"unknown trial id {trial_id!r}")
        raise RuntimeError(
            f"trial {trial_id} cannot {what}: it already finished with status {TrialStatus(old).value!r}"
        )

    def finish_trial(
        self,
        trial_id: int,
        *,
        status: str | TrialStatus,
        reward: float | None = None,
        metrics: Mapping[str, Any] | None = None,
        error: str | None = None,
        wall_s: float | None = None,
        finished_at: datetime.datetime | None = None,
        flops: int | None = None,
        params: int | None = None,
        cached_from: int | None = None,
        host: str | None = None,
        precision: str | None = None,
        reports: Iterable[tuple[int, Mapping[str, Any]]] | None = None,
    ) -> None:
        """Records a trial's outcome, in one transaction: status, reward, metrics, error, times and the arch's cost.

        With `reports`, the trial's learning curve is written in the same transaction (the search job's one write
        per trial); see `add_reports`.

        Args:
          trial_id: the trial.
          status: 'completed', 'failed', 'cached' (a stored result reused; give `cached_from`), 'rejected' (not
            trained: over the search's FLOPs limit) or 'pruned' (stopped at a rung by the search's scheduler).
          reward: the controller's reward (finite), or None.
          metrics: the proxy's raw outputs (JSON-able), e.g. ``ProxyResult.metrics``.
          error: why the trial failed.
          wall_s: the trial's wall-clock seconds.
          finished_at: UTC end time; default now.
          flops, params: the proxy detector's cost; stored on the arch if it had none.
          cached_from: the trial whose result a cached trial reuses.
          host: the worker host that ran it (the host given to `start_trial` is kept when None).
          precision: what it trained in (`ProxyResult.precision`), if it trained.
          reports: ``(step, metrics)`` pairs, as for `add_reports`; nothing is written if the finish fails.

        Raises:
          LookupError: unknown trial. RuntimeError: the trial has already finished. ValueError: a bad value
          (a NaN or infinite reward, an unknown status, a malformed report).
        """
        st = _check_status(status, _FINAL_STATUSES, "final status")
        if precision is not None and (not isinstance(precision, str) or not 0 < len(precision) <= 16):
            raise ValueError(f"precision must be a name of at most 16 characters or None, got {precision!r}")
        reward = _check_number(reward, "reward")
        wall_s = _check_number(wall_s, "wall_s")
        flops, params = _check_count(flops, "flops"), _check_count(params, "params")
        try:
            metrics_json = None if metrics is None else json.dumps(dict(metrics), separators=(",", ":"))
        except (TypeError, ValueError) as e:
            raise ValueError(f"metrics must be a JSON-able mapping, got an error: {e}") from None
        report_rows = [] if reports is None else _report_rows(trial_id, reports)
        values = {
            "status": st,
            "reward": reward,
            "metrics": metrics_json,
            "error": error,
            "wall_s": wall_s,
            "finished_at": finished_at or utcnow(),
            "cached_from": cached_from,
            "host": host,
            "precision": precision,
        }
        with self._write_conn() as conn:
            if conn.execute(_FINISH_TRIAL, {"trial_id": trial_id, **values}).rowcount != 1:
                self._raise_not_open(trial_id, conn, "finish")
            if flops is not None or params is not None:
                conn.execute(_SET_ARCH_COST, {"trial_id": trial_id, "flops": flops, "params": params})
            if report_rows:
                self._upsert_reports(conn, report_rows)

    # ------------------------------------------------------------------------------------------- reports
    def add_reports(self, trial_id: int, reports: Iterable[tuple[int, Mapping[str, Any]]]) -> int:
        """Stores reports of a trial (points of its learning curve) in one transaction; returns how many.

        A report of a step the trial already has replaces it: a trial run again after a driver crash, or retried
        by Ray, reports the same steps again. The trial may be in any status.

        Args:
          trial_id: the trial.
          reports: ``(step, metrics)`` pairs: a non-negative training step and a mapping of metric name to
            number, e.g. ``(300, {'train_loss': 1.7, 'learning_rate': 0.08, 'images_per_s': 40.5})``. Numbers
            are stored as floats; NaN and infinite values (a diverged loss) are stored as None, the rest of the
            report kept. Of two reports of one step in `reports` the later one is kept.

        Raises:
          LookupError: unknown trial. ValueError: a malformed report (a negative step, a metric that is not a
          number or None).

        Example::

          store.add_reports(trial_id, [(100, {'train_loss': 2.31}), (200, {'train_loss': float('nan')})])
          store.reports([trial_id])[trial_id][-1].metrics      # {'train_loss': None}
        """
        rows = _report_rows(trial_id, reports)
        if not rows:
            return 0
        try:
            with self._write_conn() as conn:
                self._upsert_reports(conn, rows)
        except sa_exc.IntegrityError:
            # The only constraint a checked report can break is the trial's foreign key.
            with self._executor() as ex:
                known = list(ex("SELECT 1 FROM trials WHERE id = :id", {"id": trial_id}))
            if not known:
                raise LookupError(f"unknown trial id {trial_id!r}") from None
            raise
        return len(rows)

    @staticmethod
    def _upsert_reports(conn: Connection, rows: list[dict[str, Any]]) -> None:
        stmt = _upsert_reports_stmt(conn.dialect)
        if stmt is not None:
            conn.execute(stmt, rows)
            return
        for row in rows:  # other backends: update the step's row, or insert it
            replaced = conn.execute(
                _REPORTS.update()
                .where(_REPORTS.c.trial_id == row["trial_id"], _REPORTS.c.step == row["step"])
                .values(metrics=row["metrics"], created_at=row["created_at"])
            ).rowcount
            if not replaced:
                conn.execute(_REPORTS.insert(), row)

    # ------------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, search: str, step: int, state: Mapping[str, Any], *, keep: int | None = 3) -> None:
        """Saves the controller's state after update `step` (replacing one of the same step).

        Args:
          search: the search's name.
          step: the controller's update step.
          state: ``controller.state_dict()``: JSON-able.
          keep: how many of the newest checkpoints to keep (older ones are deleted in the same transaction);
            None keeps all.

        Raises:
          LookupError: unknown search. ValueError: a state that is not JSON-able, or keep < 1.
        """
        if keep is not None and keep < 1:
            raise ValueError(f"keep must be at least 1 or None, got {keep!r}")
        try:
            state_json = json.dumps(state, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"controller state must be JSON-able (no NaN), got an error: {e}") from None
        now = utcnow()
        with self._write_conn() as conn:
            sid = self._search_id_conn(search, conn)
            replaced = conn.execute(
                _CHECKPOINTS.update()
                .where(_CHECKPOINTS.c.search_id == sid, _CHECKPOINTS.c.step == step)
                .values(state=state_json, created_at=now)
            ).rowcount
            if not replaced:
                conn.execute(_CHECKPOINTS.insert(), {"search_id": sid, "step": int(step), "state": state_json,
                                                     "created_at": now})
            if keep is not None:
                old = list(
                    conn.scalars(
                        select(_CHECKPOINTS.c.id)
                        .where(_CHECKPOINTS.c.search_id == sid)
                        .order_by(_CHECKPOINTS.c.step.desc())
                        .offset(keep)
                    )
                )
                if old:
                    conn.execute(_CHECKPOINTS.delete().where(_CHECKPOINTS.c.id.in_(old)))

    def load_checkpoint(self, search: str) -> CheckpointRecord | None:
        """The latest (highest-step) controller checkpoint of the search, or None.

        Raises:
          LookupError: unknown search.
        """
        with self._read() as session:
            sid = self._search_id(search, session)
            row = CheckpointModel.find_latest(sid, session)
            if row is None:
                return None
            return CheckpointRecord(
                search=search, step=row.step, state=json.loads(row.state), created_at=row.created_at
            )
