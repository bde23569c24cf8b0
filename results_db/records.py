"""Plain, frozen records the store returns: ORM rows never leave `results_db` (STYLE.md section 9)."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

# The statuses are plain strings here ('completed'), so a caller needs no SQLAlchemy import to compare them.

# The longest result fingerprint the database holds (`trials.fingerprint`, `searches.fingerprint`): the search job
# computes a short hash of what determines a trial's score; results_db only compares fingerprints for equality.
FINGERPRINT_LENGTH = 16


@dataclasses.dataclass(frozen=True)
class SearchRecord:
    """A search row.

    Attributes:
      id: database id.
      name: unique name.
      config: the resolved config text (YAML or JSON) the search ran with.
      seed: the search's seed, if any.
      controller: the controller's name, e.g. 'ppo', 'random', 'evolution'.
      family: the search space family, e.g. 'spinenet49'.
      status: 'running', 'completed', 'failed' or 'stopped'.
      created_at, updated_at, finished_at: UTC times (naive); finished_at is None until a final status is set.
      fingerprint: the fingerprint of the search's config (None if not computed: a search from before schema
        0002 until `spinenas db upgrade` backfills it).
      kind: 'search', or 'calibration' (a `spinenas calibrate` study).
      lease_owner, lease_host, lease_pid, lease_heartbeat: the lease of the driver running it (None: no driver).
    """

    id: int
    name: str
    config: str
    seed: int | None
    controller: str
    family: str
    status: str
    created_at: datetime.datetime
    updated_at: datetime.datetime
    finished_at: datetime.datetime | None
    fingerprint: str | None
    kind: str = "search"
    lease_owner: str | None = None
    lease_host: str | None = None
    lease_pid: int | None = None
    lease_heartbeat: datetime.datetime | None = None

    def lease_age_s(self, now: datetime.datetime) -> float | None:
        """Seconds since the lease's last heartbeat (None without a lease)."""
        if self.lease_owner is None or self.lease_heartbeat is None:
            return None
        return (now - self.lease_heartbeat).total_seconds()

    def lease_fresh(self, now: datetime.datetime, timeout_s: float) -> bool:
        """Whether the lease's heartbeat says its driver is alive: no older than `timeout_s`, and no further than
        `timeout_s` in the future. A heartbeat from the future was written by a clock that has since been set back
        (or by a host whose clock runs ahead): its age says nothing, so it counts as expired rather than locking
        the search out until that time comes (a driver that still lives is then fenced out by its next write)."""
        age = self.lease_age_s(now)
        return age is not None and -timeout_s <= age <= timeout_s


@dataclasses.dataclass(frozen=True)
class ArchRecord:
    """An architecture row.

    Attributes:
      key: `ArchSpec.key`.
      spec_json: canonical `ArchSpec.to_json()`; `ArchSpec.from_json(spec_json)` gives the spec back.
      summary: `ArchSpec.summary()`.
      family: the family it was searched in (None if unknown).
      flops, params: of the proxy detector, once measured.
      created_at: UTC time of registration.
    """

    key: str
    spec_json: str
    summary: str
    family: str | None
    flops: int | None
    params: int | None
    created_at: datetime.datetime


@dataclasses.dataclass(frozen=True)
class NewTrial:
    """A trial to add: which arch, from which decisions.

    Attributes:
      arch_key: key of an arch registered with `ResultStore.register_arch`.
      decisions: the controller's decision sequence.
    """

    arch_key: str
    decisions: Sequence[int]


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """A trial row, with its search's name.

    Attributes:
      id: database id, unique across searches (the trial id to pass to `start_trial` / `finish_trial`).
      search: the search's name.
      index: 0, 1, ... within the search, in proposal order.
      arch_key: the arch evaluated.
      status: 'queued', 'running', 'completed', 'failed', 'cached', 'rejected' or 'pruned'.
      decisions: the decision sequence.
      reward: the controller's reward (None if none was stored).
      metrics: the proxy's raw outputs (empty if none).
      error: why the trial failed (None otherwise).
      attempt: how many times the trial was started.
      host: the worker host of the last start.
      cached_from: for a cached trial, the trial whose result was reused.
      created_at, started_at, finished_at: UTC times (naive).
      wall_s: wall-clock seconds of the trial, as measured by the worker.
      finish_order: 1, 2, ... within the search, in completion order (None until finished).
      fingerprint: what its score was measured under (evaluator, score-changing proxy settings, reward
        function), as the search job computed it; None for a trial from before schema 0002 not backfilled yet.
      precision: what it trained in ('float32', 'float16', 'bfloat16'); None for a trial that did not train or
        from before schema 0006 (which trained in float32).
    """

    id: int
    search: str
    index: int
    arch_key: str
    status: str
    decisions: tuple[int, ...]
    reward: float | None
    metrics: Mapping[str, Any]
    error: str | None
    attempt: int
    host: str | None
    cached_from: int | None
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    wall_s: float | None
    finish_order: int | None
    fingerprint: str | None
    precision: str | None = None

    @property
    def ap(self) -> float | None:
        """The trial's AP metric, if measured."""
        ap = self.metrics.get("ap")
        return None if ap is None else float(ap)


@dataclasses.dataclass(frozen=True)
class KnownResult:
    """The best stored result of an arch, for deduplication: "this key already has a result".

    Attributes:
      arch_key: the arch.
      trial_id: the trial that measured it.
      search: that trial's search.
      status: 'completed' (or 'failed' when only failures exist and they were asked for).
      reward, metrics, error, wall_s: the trial's outcome.
      flops, params: the arch's measured cost.
    """

    arch_key: str
    trial_id: int
    search: str
    status: str
    reward: float | None
    metrics: Mapping[str, Any]
    error: str | None
    wall_s: float | None
    flops: int | None
    params: int | None


@dataclasses.dataclass(frozen=True)
class TrialReport:
    """One point of a trial's learning curve: what the evaluator reported at a training step.

    Attributes:
      trial_id: the trial.
      step: the training step reported at.
      metrics: e.g. {'train_loss': 1.93, 'learning_rate': 0.08, 'images_per_s': 41.0}, or {'ap': 0.12} at an
        intermediate evaluation; a value that was NaN or infinite (a diverged loss) is None.
      created_at: UTC time it was stored (a re-run's report of the same step replaces the earlier one).
    """

    trial_id: int
    step: int
    metrics: Mapping[str, float | None]
    created_at: datetime.datetime


@dataclasses.dataclass(frozen=True)
class FingerprintSummary:
    """What the database holds under one result fingerprint, for `spinenas top` to say what it ranks.

    Attributes:
      fingerprint: the fingerprint (None: searches and trials that have none yet).
      searches: searches whose own fingerprint it is, or that hold a trial with it.
      completed: completed trials with this fingerprint (what `top(fingerprint=...)` ranks).
      newest_search: the name of the newest (highest id) of those searches.
    """

    fingerprint: str | None
    searches: int
    completed: int
    newest_search: str


@dataclasses.dataclass(frozen=True)
class CheckpointRecord:
    """A controller checkpoint.

    Attributes:
      search: the search's name.
      step: the controller update step it was taken after.
      state: the controller's `state_dict()` (JSON-decoded).
      created_at: UTC time it was saved.
    """

    search: str
    step: int
    state: Mapping[str, Any]
    created_at: datetime.datetime


@dataclasses.dataclass(frozen=True)
class SearchSummary:
    """A search with its trial counts, for `spinenas searches`.

    Attributes:
      search: the search row.
      trials: trials of every status.
      counts: trials per status, e.g. {'completed': 120, 'failed': 3}.
      best_reward: the highest reward of a completed trial (None if none).
      last_finished_at: when the last trial finished (None if none).
      trial_s: the trial-seconds its trials spent (trained trials only: completed, failed and pruned, as their
        workers measured them), the compute two searches are compared on.
      steps: the proxy steps its trials trained (each trial's counted ``steps``, else its last reported step).
    """

    search: SearchRecord
    trials: int
    counts: Mapping[str, int]
    best_reward: float | None
    last_finished_at: datetime.datetime | None
    trial_s: float = 0.0
    steps: int = 0


@dataclasses.dataclass(frozen=True)
class RankedArch:
    """One line of `spinenas top`: an arch and its best completed trial.

    Attributes:
      rank: 1, 2, ...
      arch_key, summary, flops, params: the arch.
      reward: the best reward of a completed trial of the arch.
      trial_id, search, metrics, wall_s, fingerprint: that trial.
      evaluations: completed trials of the arch in the searches (and the fingerprint) considered.
    """

    rank: int
    arch_key: str
    summary: str
    flops: int | None
    params: int | None
    reward: float
    trial_id: int
    search: str
    metrics: Mapping[str, Any]
    wall_s: float | None
    evaluations: int
    fingerprint: str | None

    @property
    def ap(self) -> float | None:
        """The AP of the best trial, if measured."""
        ap = self.metrics.get("ap")
        return None if ap is None else float(ap)
