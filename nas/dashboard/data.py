"""What the dashboard shows, read from the results database into plain rows and dicts (no Dash here).

`DashboardData` wraps one read-only reader (`results_db.reader.ResultReader`: SQLite read-only, safe while a search
writes; PostgreSQL through SQLAlchemy) behind a lock, since the web server answers from several threads. It runs the
read queries the CLI runs (`ReadAPI`), the report's curve of best reward against trial-seconds
(`nas.cli.report.compute_curve`) and the calibration figures `calibration show` prints
(`nas.calibration.study.read_figures`); what it adds is what a live page needs: the curves of every trial with the
scheduler's rungs and thresholds, per-block features of the architectures, and an importance estimate of the
decisions.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from nas.cli.commands.common import SearchSettings, search_settings
from nas.cli.report import rung_thresholds
from results_db.status import FINISHED_STATUSES, TrialStatus

if TYPE_CHECKING:
    from results_db.queries import ReadAPI
    from results_db.records import SearchRecord, TrialRecord

logger = logging.getLogger(__name__)

#: Lines of a trial's log a trial page shows (its own lines of ``RUNS/NAME/search.log``).
LOG_TAIL_LINES = 40
#: Bytes read from the end of a search's log to find them (a long search's log may be large).
LOG_TAIL_BYTES = 4 << 20
#: Completed trials an importance estimate needs at least.
MIN_IMPORTANCE_TRIALS = 8
#: Decisions the importance chart shows at most (the most important first).
MAX_IMPORTANCE_BARS = 20
#: Seconds a search's importance estimate is kept while its trials complete (a fit takes ~0.5 s on 300 trials).
IMPORTANCE_EVERY_S = 10.0


def block_features(spec_json: str) -> dict[str, Any]:
    """Per block of an architecture: its level, block type and parents (Model Garden's fields), for the parallel
    coordinates: ``{'block3.level': 4, 'block3.block_fn': 'residual', 'block3.parents': '1,4', ...}``."""
    from search_space import ArchSpec

    arch = ArchSpec.from_json(spec_json)
    out: dict[str, Any] = {}
    for i, b in enumerate(arch.blocks):
        out[f"block{i}.level"] = b.level
        out[f"block{i}.block_fn"] = b.block_fn
        out[f"block{i}.parents"] = f"{b.input_offsets[0]},{b.input_offsets[1]}"
    return out


def decision_labels(settings: SearchSettings, n: int) -> list[str]:
    """The names of a search's `n` decisions (`SearchSpace.label`), or d0, d1, ... when its space is unknown."""
    if settings.family:
        try:
            from search_space import SearchSpace

            space = SearchSpace(settings.family, window=settings.window)
            if len(space.num_choices) == n:
                return [space.label(i) for i in range(n)]
        except (LookupError, ValueError):
            pass
    return [f"d{i}" for i in range(n)]


def importance(labels: Sequence[str], decisions: Sequence[Sequence[int]], rewards: Sequence[float], *,
               seed: int = 0) -> dict[str, Any]:
    """Which decisions matter: a random forest fitted from decisions to reward (scikit-learn), and each decision's
    impurity importance (the share of the forest's variance reduction its splits make), with its spread over the
    trees.

    Impurity importance, not permutation importance: it comes with the fit (permuting 46 decisions five times
    took ~7 s on 300 trials here, against 0.5 s for the fit), which a live page can afford after every trial. It
    favours decisions with many choices; the out-of-bag R^2 says whether the forest has found anything at all.

    Returns:
      {'labels', 'importance', 'std' (over the trees), 'oob_r2' (the forest's out-of-bag R^2: how much of the
      reward the decisions explain; at or below 0 the ranking is noise), 'n'}, most important first, at most
      `MAX_IMPORTANCE_BARS`.

    Raises:
      ValueError: fewer than `MIN_IMPORTANCE_TRIALS` trials.
    """
    if len(rewards) < MIN_IMPORTANCE_TRIALS:
        raise ValueError(f"an importance estimate needs at least {MIN_IMPORTANCE_TRIALS} completed trials, got "
                         f"{len(rewards)}")
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor

    x = np.asarray(decisions, dtype=float)
    y = np.asarray(rewards, dtype=float)
    forest = RandomForestRegressor(n_estimators=100, min_samples_leaf=2, oob_score=True, random_state=seed,
                                   n_jobs=1).fit(x, y)
    mean = forest.feature_importances_
    std = np.std([tree.feature_importances_ for tree in forest.estimators_], axis=0)
    order = np.argsort(-mean, kind="stable")[:MAX_IMPORTANCE_BARS]
    return {
        "labels": [labels[i] for i in order],
        "importance": [float(mean[i]) for i in order],
        "std": [float(std[i]) for i in order],
        "oob_r2": float(forest.oob_score_),
        "n": len(y),
    }


def log_tail(path: str, index: int, lines: int = LOG_TAIL_LINES) -> list[str] | None:
    """The last `lines` lines of a search log tagged ``[trial INDEX]`` (None: no log at `path`)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    tag = re.compile(rf"\[trial {index}\][ :]")
    return [ln for ln in text.splitlines() if tag.search(ln)][-lines:]


def warm_up() -> threading.Thread:
    """Imports what the pages need later (plotly's figures, scikit-learn's forest: ~4 s on these machines, matplotlib
    for the diagrams) in a background thread, so that the first visit to a tab is no slower than the next; the
    page's interval grows with its slowest read (`nas.dashboard.app`), which a first import would make."""

    def imports() -> None:
        import plotly.graph_objects  # noqa: F401
        import sklearn.ensemble  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401

    thread = threading.Thread(target=imports, name="dashboard-warm-up", daemon=True)
    thread.start()
    return thread


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)  # the store's UTC, naive


class DashboardData:
    """The dashboard's reads, on one read-only reader; every method may be called from any thread.

    Finished trials' curves, their architectures' diagrams and a search's importance estimate are kept once read:
    a page refreshing every two seconds reads only what changed.

    Args:
      reader: an open `ResultReader` (or any `ReadAPI`).
      runs: the folder holding the searches' run folders (``RUNS/NAME/search.log``), or None.
      db_arg: the --db the dashboard was given (None: the default), for the commands a page prints.
    """

    def __init__(self, reader: ReadAPI, *, runs: str | None = None, db_arg: str | None = None) -> None:
        self.reader = reader
        self.runs = runs
        self.db_arg = db_arg
        self._lock = threading.RLock()
        self._curves: dict[int, tuple[Any, list[Any]]] = {}  # finished trial id -> (its finished_at, its reports)
        self._importance: dict[str, dict[str, Any]] = {}
        self._diagrams: dict[str, str] = {}
        self._blocks: dict[str, dict[str, Any]] = {}  # arch key -> its `block_features`
        self._settings: dict[tuple[str, Any], SearchSettings] = {}

    @property
    def display_url(self) -> str:
        """The database's URL with any password hidden."""
        return getattr(self.reader, "display_url", "")

    # ------------------------------------------------------------------------------------------- searches
    def search_names(self) -> list[str]:
        """Every search's name, oldest first."""
        with self._lock:
            return [s.name for s in self.reader.list_searches()]

    def settings(self, record: SearchRecord) -> SearchSettings:
        """`search_settings`, read once per search (its stored config does not change)."""
        key = (record.name, record.created_at)
        if key not in self._settings:
            self._settings[key] = search_settings(record)
        return self._settings[key]

    def overview(self) -> list[dict[str, Any]]:
        """One row per search: kind, controller, status, budget, trials per status, best reward, trial-seconds,
        proxy steps and the controller's updates."""
        from nas.engine.lease import lease_state

        with self._lock:
            summaries = self.reader.search_summaries()
            updates = self.reader.controller_updates()
        now = _utcnow()
        rows = []
        for s in summaries:
            c = s.counts
            rec = s.search
            settings = self.settings(rec)
            rows.append({
                "name": rec.name, "kind": rec.kind, "controller": rec.controller or "-", "family": rec.family or "-",
                "status": lease_state(rec, now), "budget": settings.budget if settings.budget is not None else s.trials,
                "trials": s.trials, "completed": c.get(TrialStatus.COMPLETED, 0),
                "running": c.get(TrialStatus.RUNNING, 0) + c.get(TrialStatus.QUEUED, 0),
                "pruned": c.get(TrialStatus.PRUNED, 0), "failed": c.get(TrialStatus.FAILED, 0),
                "cached": c.get(TrialStatus.CACHED, 0), "rejected": c.get(TrialStatus.REJECTED, 0),
                "best_reward": s.best_reward, "trial_s": s.trial_s, "steps": s.steps,
                "updates": updates.get(rec.name, (None, None))[0], "scheduler": settings.scheduler,
                "started": rec.created_at.strftime("%Y-%m-%d %H:%M") if rec.created_at else "-",
            })  # fmt: skip
        return rows

    # ------------------------------------------------------------------------------------------- trials
    def _trials(self, search: str) -> tuple[SearchRecord, list[TrialRecord]]:
        with self._lock:
            return self.reader.open_search(search), self.reader.trials(search)

    def curves_of(self, trials: Sequence[TrialRecord]) -> dict[int, list[Any]]:
        """Trial id -> its reports; finished trials' are read once, running ones' at every call."""
        with self._lock:
            want = [t.id for t in trials
                    if t.id not in self._curves or self._curves[t.id][0] != t.finished_at
                    or t.status not in FINISHED_STATUSES]
            fresh = self.reader.reports(want) if want else {}
        for t in trials:
            if t.id in fresh and t.status in FINISHED_STATUSES:
                self._curves[t.id] = (t.finished_at, fresh[t.id])
        return {t.id: self._curves[t.id][1] if t.id in self._curves and t.id not in fresh else fresh.get(t.id, [])
                for t in trials}

    def trial_rows(self, search: str) -> list[dict[str, Any]]:
        """The search's trials as table rows (index order): status, reward, AP, FLOPs, params, steps, seconds,
        worker host, attempt, precision, the first line of the error, key; `id` for its page."""
        _, trials = self._trials(search)
        with self._lock:
            archs = self.reader.archs({t.arch_key for t in trials}) if trials else {}
        curves = self.curves_of(trials)
        rows = []
        for t in trials:
            a = archs.get(t.arch_key)
            steps = t.metrics.get("steps")
            if steps is None and curves.get(t.id):
                steps = curves[t.id][-1].step
            rows.append({
                "id": t.id, "index": t.index, "status": t.status, "reward": t.reward, "ap": t.ap,
                "flops": a.flops if a else None, "params": a.params if a else None,
                "steps": int(steps) if isinstance(steps, (int, float)) else None,
                "seconds": round(t.wall_s, 1) if t.wall_s is not None else None, "host": t.host or "",
                "attempt": t.attempt, "precision": t.precision or "",
                "error": t.error.strip().splitlines()[-1][:200] if t.error and t.error.strip() else "",
                "key": t.arch_key,
            })  # fmt: skip
        return rows

    def curves(self, search: str) -> dict[str, Any]:
        """Every trial's learning curve (steps, AP, loss) with its status, and the scheduler's rungs with their
        current cuts (`rung_thresholds`)."""
        record, trials = self._trials(search)
        settings = self.settings(record)
        curves = self.curves_of(trials)
        out = []
        for t in trials:
            curve = curves.get(t.id, [])
            if not curve:
                continue
            out.append({
                "id": t.id, "index": t.index, "status": t.status, "key": t.arch_key,
                "steps": [r.step for r in curve],
                "ap": [r.metrics.get("ap") for r in curve],
                "loss": [r.metrics.get("loss", r.metrics.get("train_loss")) for r in curve],
            })  # fmt: skip
        return {"trials": out, "rungs": rung_thresholds(settings, trials, curves), "settings": settings,
                "train_steps": settings.train_steps}

    def compute(self, names: Iterable[str]) -> dict[str, list[tuple[float, float | None]]]:
        """Per search: (cumulative trial-seconds, best reward so far) after each finished trial
        (`nas.cli.report.compute_curve`)."""
        from nas.cli.report import compute_curve

        out = {}
        for name in names:
            _, trials = self._trials(name)
            out[name] = compute_curve(trials)
        return out

    def decisions(self, search: str) -> dict[str, Any]:
        """The completed trials' decisions (named `decision_labels`) and per-block features (`block_features`)
        with their rewards, for the parallel coordinates."""
        record, trials = self._trials(search)
        settings = self.settings(record)
        done = [t for t in trials if t.status == TrialStatus.COMPLETED and t.reward is not None]
        with self._lock:
            archs = self.reader.archs({t.arch_key for t in done}) if done else {}
        rows = []
        for t in done:
            a = archs.get(t.arch_key)
            if a is not None and a.key not in self._blocks:
                self._blocks[a.key] = block_features(a.spec_json)
            rows.append({"id": t.id, "index": t.index, "reward": t.reward, "decisions": list(t.decisions),
                         "blocks": self._blocks.get(t.arch_key, {})})
        n = len(done[0].decisions) if done else 0
        return {"labels": decision_labels(settings, n), "rows": rows}

    def importance(self, search: str) -> dict[str, Any]:
        """`importance` of the search's decisions over its completed trials (refitted when more have completed,
        at most every `IMPORTANCE_EVERY_S` seconds).

        Raises:
          ValueError: too few completed trials.
        """
        d = self.decisions(search)
        rows = [r for r in d["rows"] if len(r["decisions"]) == len(d["labels"])]
        kept = self._importance.get(search)
        if kept is None or (kept["n"] != len(rows) and time.monotonic() - kept["at"] >= IMPORTANCE_EVERY_S):
            kept = {**importance(d["labels"], [r["decisions"] for r in rows], [r["reward"] for r in rows]),
                    "at": time.monotonic()}
            self._importance[search] = kept
        return kept

    # ------------------------------------------------------------------------------------------- one trial
    def trial(self, trial_id: int) -> dict[str, Any]:
        """A trial's page: the trial, its arch, its search's config, its curve, the tail of its log and the export
        command.

        Raises:
          LookupError: no such trial.
        """
        with self._lock:
            t = self.reader.get_trial(trial_id)
            arch = self.reader.get_arch(t.arch_key)
            record = self.reader.open_search(t.search)
        curve = self.curves_of([t])[t.id]
        log_path = os.path.join(self.runs, t.search, "search.log") if self.runs else None
        db = f" --db {_quote(self.db_arg)}" if self.db_arg else ""
        return {
            "trial": t, "arch": arch, "config": record.config, "kind": record.kind,
            "curve": [{"step": r.step, **dict(r.metrics)} for r in curve],
            "log_path": log_path, "log": log_tail(log_path, t.index) if log_path else None,
            "export": f"spinenas export {t.arch_key}{db} --out exports/{t.arch_key}",
            "show": f"spinenas show {t.arch_key}{db} --image {t.arch_key}.png",
        }

    def diagram(self, spec_json: str, key: str) -> str:
        """The architecture's diagram as `spinenas show --image` draws it, as base64 PNG (kept per key)."""
        if key not in self._diagrams:
            import base64
            import io

            from search_space import ArchSpec

            from nas.cli.diagram import arch_figure

            buf = io.BytesIO()
            arch_figure(ArchSpec.from_json(spec_json)).savefig(buf, format="png", dpi=100)
            self._diagrams[key] = base64.b64encode(buf.getvalue()).decode("ascii")
        return self._diagrams[key]

    # ------------------------------------------------------------------------------------------- calibration
    def calibration_names(self) -> list[str]:
        """The calibration studies in the database, oldest first."""
        from nas.calibration.study import KIND

        with self._lock:
            return [s.name for s in self.reader.list_searches() if getattr(s, "kind", "search") == KIND]

    def calibration(self, name: str) -> dict[str, Any]:
        """A study's figures, as `spinenas calibration show --json` prints them.

        Raises:
          LookupError: no such search. CalibrationError: it is not a study, or one this version cannot read.
        """
        from nas.calibration.study import KIND, CalibrationError, read_figures

        with self._lock:
            record = self.reader.open_search(name)
            if getattr(record, "kind", "search") != KIND:
                raise CalibrationError(f"{name!r} is a search, not a calibration study")
            return {"name": name, "status": record.status, **read_figures(self.reader, record)}


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


__all__ = ["DashboardData", "SearchSettings", "block_features", "decision_labels", "importance", "log_tail",
           "rung_thresholds", "search_settings", "warm_up"]
