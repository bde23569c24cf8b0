"""The ORM models of the results database: searches, archs, trials, their reports and controller checkpoints.

Written the Optuna way (``optuna/storages/_rdb/models.py``): plural table names, ``*Model`` classes, enum status
columns, JSON kept in text columns, and ``find_by_*`` / ``find_or_raise_by_*`` classmethods that take an explicit
session. Only the search job's driver writes, from one process: SQLite has no ``SELECT ... FOR UPDATE``, so the
store never relies on row locks.

Changing a table means a new Alembic revision in ``results_db/migrations/versions`` and a new `SCHEMA_VERSION`;
a test checks that the migrations build exactly these tables.
"""

from __future__ import annotations

import datetime
import enum
import logging

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from results_db.records import FINGERPRINT_LENGTH
from results_db.status import FINISHED_STATUSES, SearchStatus, TrialStatus  # noqa: F401 - re-exported
from results_db.version import SCHEMA_VERSION as _SCHEMA_VERSION

logger = logging.getLogger(__name__)

# The schema these models describe (the newest Alembic revision); the database records its own revision in
# Alembic's `alembic_version` table.
SCHEMA_VERSION = _SCHEMA_VERSION

MAX_NAME_LENGTH = 128
KEY_LENGTH = 16
# The kinds of search rows (`SearchModel.kind`).
SEARCH_KIND = "search"
CALIBRATION_KIND = "calibration"
SEARCH_KINDS = (SEARCH_KIND, CALIBRATION_KIND)  # `ArchSpec.key`: sha256 hex digest, first 16 characters


def utcnow() -> datetime.datetime:
    """The current UTC time, naive (SQLite keeps no time zone; every stored time is UTC)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Store the lowercase values ('completed'), not the member names, so the table reads well in `sqlite3`; a
    # VARCHAR with a CHECK constraint rather than a native PostgreSQL ENUM, so adding a status is a plain migration.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class BaseModel(DeclarativeBase):
    """Declarative base of the results database."""


class SearchModel(BaseModel):
    """One search: a controller exploring one family's space under one resolved config."""

    __tablename__ = "searches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), unique=True)
    # The fully resolved config (YAML as `nas.config.codec.to_yaml` writes it, or JSON), as text.
    config: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int | None] = mapped_column(Integer)
    controller: Mapped[str] = mapped_column(String(64), default="")
    family: Mapped[str] = mapped_column(String(32), default="")
    # The lease of the driver running the search (None when no driver holds it): who, where, and when it last
    # renewed it. A lease whose heartbeat is older than the timeout belongs to a driver that died.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_host: Mapped[str | None] = mapped_column(String(255))
    lease_pid: Mapped[int | None] = mapped_column(Integer)
    lease_heartbeat: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    # 'search', or 'calibration' (a `spinenas calibrate` study of a proxy: its trials are not search results).
    kind: Mapped[str] = mapped_column(String(16), default=SEARCH_KIND, server_default=SEARCH_KIND)
    status: Mapped[SearchStatus] = mapped_column(_enum(SearchStatus, "search_status"), default=SearchStatus.RUNNING)
    # The fingerprint of the search's own config (None for a search written before revision 0002 until
    # `spinenas db upgrade` computes it from `config`).
    fingerprint: Mapped[str | None] = mapped_column(String(FINGERPRINT_LENGTH))
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)

    @classmethod
    def find_by_name(cls, name: str, session: Session) -> SearchModel | None:
        """The search called `name`, or None."""
        return session.scalars(select(cls).where(cls.name == name)).one_or_none()

    @classmethod
    def find_or_raise_by_name(cls, name: str, session: Session) -> SearchModel:
        """The search called `name`.

        Raises:
          LookupError: no such search; the message lists the known names.
        """
        row = cls.find_by_name(name, session)
        if row is None:
            known = session.scalars(select(cls.name).order_by(cls.id)).all()
            raise LookupError(
                f"unknown search {name!r}; "
                + (f"expected one of: {', '.join(known)}" if known else "the database holds no searches yet")
            )
        return row


class ArchModel(BaseModel):
    """One architecture, by its canonical key: every trial of the same network points here."""

    __tablename__ = "archs"
    key: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    # `ArchSpec.to_json()` of the canonical spec (dead blocks dropped).
    spec_json: Mapped[str] = mapped_column(Text)
    # `ArchSpec.summary()`, kept so that `spinenas top` needs neither search_space nor numpy.
    summary: Mapped[str] = mapped_column(String(255), default="")
    family: Mapped[str | None] = mapped_column(String(32))
    # Multiply-adds per image and parameter count of the proxy detector, once a trial has measured them.
    flops: Mapped[int | None] = mapped_column(BigInteger)
    params: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)


class TrialModel(BaseModel):
    """One evaluation of one arch in one search (or a reuse of a stored result: status CACHED)."""

    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("search_id", "index"),
        # `spinenas top`: walk completed trials from the best reward down and stop after k distinct archs.
        Index("ix_trials_status_reward", "status", "reward"),
        Index("ix_trials_search_status", "search_id", "status"),
        # `history`: finished trials of a search in completion order.
        Index("ix_trials_search_finish_order", "search_id", "finish_order"),
        # `find_result` (dedup): an arch's completed trials under one fingerprint. With arch_key alone SQLite
        # prefers the (status, reward) index and scans every completed trial (milliseconds a lookup at the paper's
        # 14,000 trials); without fingerprint here it takes the (fingerprint, status, ...) index below, as good a
        # match to its planner, and scans every completed trial of the fingerprint.
        Index("ix_trials_arch_status_fingerprint", "arch_key", "status", "fingerprint"),
        # `top` within one fingerprint: the same walk down the rewards, over that fingerprint's trials only.
        Index("ix_trials_fingerprint_status_reward", "fingerprint", "status", "reward"),
        CheckConstraint("attempt >= 0", name="ck_trials_attempt"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    # 0, 1, 2, ... within the search, in the order the trials were proposed.
    index: Mapped[int] = mapped_column(Integer)
    arch_key: Mapped[str] = mapped_column(ForeignKey("archs.key"))
    status: Mapped[TrialStatus] = mapped_column(_enum(TrialStatus, "trial_status"), default=TrialStatus.QUEUED)
    # The controller's decision sequence as a JSON list of ints: what `controller.recover` replays.
    decisions: Mapped[str] = mapped_column(Text, default="[]")
    reward: Mapped[float | None] = mapped_column(Float)
    # The proxy's raw outputs (ap, ap50, ..., train_loss, steps) as a JSON object.
    metrics: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    # How many times the trial was started (a driver resumed after a crash starts a RUNNING trial again).
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    host: Mapped[str | None] = mapped_column(String(255))
    # For CACHED trials: the trial whose result was reused.
    cached_from: Mapped[int | None] = mapped_column(ForeignKey("trials.id", ondelete="SET NULL"))
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    wall_s: Mapped[float | None] = mapped_column(Float)
    # 1, 2, 3, ... within the search, in the order trials finished (timestamps can tie or step back).
    finish_order: Mapped[int | None] = mapped_column(Integer)
    # What the reward was measured under (see FINGERPRINT_LENGTH): only a result of the same fingerprint may be
    # reused for an arch. None for trials written before revision 0002 (until their search is backfilled).
    fingerprint: Mapped[str | None] = mapped_column(String(FINGERPRINT_LENGTH))
    # What it trained in ('float32', 'float16', 'bfloat16'; `proxy.mixed_precision`), as the trial decided it. None
    # for trials written before revision 0006 (float32, the only precision then) and for untrained ones.
    precision: Mapped[str | None] = mapped_column(String(16))


class TrialReportModel(BaseModel):
    """One intermediate report of a trial: its learning curve, one row per reported step.

    Training loss, learning rate and images/s every `log_every` steps; AP at intermediate evaluations. A trial run
    again (after a driver crash, or retried by Ray) reports the same steps again: the newer report replaces the
    row of its step.
    """

    __tablename__ = "trial_reports"
    __table_args__ = (UniqueConstraint("trial_id", "step"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    # A JSON object of floats; a non-finite value (a NaN loss) is stored as null.
    metrics: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)


class CheckpointModel(BaseModel):
    """A controller's state after an update step, as JSON (`state_dict()` with a version field)."""

    __tablename__ = "controller_checkpoints"
    __table_args__ = (UniqueConstraint("search_id", "step"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)

    @classmethod
    def find_latest(cls, search_id: int, session: Session) -> CheckpointModel | None:
        """The checkpoint of the highest step of the search, or None."""
        stmt = select(cls).where(cls.search_id == search_id).order_by(cls.step.desc()).limit(1)
        return session.scalars(stmt).one_or_none()
