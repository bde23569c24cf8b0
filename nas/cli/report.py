"""`spinenas report`: one self-contained HTML page about one or more searches (plots embedded, works offline).

`collect` reads what the page needs from the database into plain records; `write_report` draws the plots with
matplotlib (Agg, no pyplot state) and embeds them as base64 PNG, so the page needs no other file and no network.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import html
import io
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from results_db.status import TrialStatus

if TYPE_CHECKING:
    from results_db.queries import ReadAPI
    from results_db.records import ArchRecord, RankedArch, SearchSummary, TrialRecord

logger = logging.getLogger(__name__)

STATUSES = tuple(s.value for s in (TrialStatus.COMPLETED, TrialStatus.CACHED, TrialStatus.FAILED,
                                    TrialStatus.REJECTED, TrialStatus.PRUNED, TrialStatus.RUNNING, TrialStatus.QUEUED))
STATUS_COLOURS = {TrialStatus.COMPLETED.value: "#4c72b0", TrialStatus.CACHED.value: "#8da0cb",
                  TrialStatus.FAILED.value: "#c44e52", TrialStatus.REJECTED.value: "#937860",
                  TrialStatus.PRUNED.value: "#da8bc3",
                  TrialStatus.RUNNING.value: "#dd8452", TrialStatus.QUEUED.value: "#bbbbbb"}
# The trials whose reward is a measured one (the best reward, the running best).
_RANKED = (TrialStatus.COMPLETED, TrialStatus.CACHED)
# The trials that trained (a curve of their own).
_TRAINED = (TrialStatus.COMPLETED, TrialStatus.PRUNED, TrialStatus.FAILED)
SEARCH_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


@dataclasses.dataclass(frozen=True)
class ReportData:
    """What the report shows, read from the database.

    Attributes:
      db: the database URL (password hidden).
      searches: the searches compared, in the order asked.
      trials: search name -> its trials in index order.
      archs: the archs of those trials, by key.
      top: the best archs over the searches (within `fingerprint`).
      fingerprint: the fingerprint `top` ranks within (the newest search's), None when mixed.
      curves: trial id -> its learning curve (reports in step order), for the trials of the top archs.
      calibrations: study name -> its figures (`nas.calibration.study.analyze`), for the searches of kind calibration.
      generated_at: UTC time the data was read.
      rungs: search name -> its scheduler's rungs with their cuts (`rung_thresholds`), for searches with rungs; their
        trained trials' curves are in `curves` then.
    """

    db: str
    searches: tuple[SearchSummary, ...]
    trials: dict[str, list[TrialRecord]]
    archs: dict[str, ArchRecord]
    top: tuple[RankedArch, ...]
    generated_at: datetime.datetime
    fingerprint: str | None = None
    curves: dict[int, list[Any]] = dataclasses.field(default_factory=dict)
    calibrations: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    rungs: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)


def collect(reader: ReadAPI, names: Sequence[str], *, top_k: int = 10) -> ReportData:
    """Reads the searches called `names` (LookupError, listing the known names, for an unknown one)."""
    summaries = {s.search.name: s for s in reader.search_summaries()}
    for name in names:
        if name not in summaries:
            known = ", ".join(summaries) or "(none)"
            raise LookupError(f"unknown search {name!r}; expected one of: {known}")
    trials = {name: reader.trials(name) for name in names}
    keys = {t.arch_key for ts in trials.values() for t in ts}
    fingerprint = reader.newest_fingerprint(list(names))
    top = tuple(reader.top(searches=list(names), k=top_k, fingerprint=fingerprint))
    top_keys = {r.arch_key for r in top}
    curve_trials = [t.id for ts in trials.values() for t in ts if t.arch_key in top_keys]
    from nas.cli.commands.common import search_settings

    settings = {n: search_settings(summaries[n].search) for n in names}
    scheduled = [n for n in names if settings[n].rungs]
    # A search with rungs: every trained trial's curve, for its pruned trials and the rungs' cuts.
    curve_trials += [t.id for n in scheduled for t in trials[n] if t.status in _TRAINED and t.id not in curve_trials]
    curves = reader.reports(curve_trials) if curve_trials else {}
    return ReportData(
        db=getattr(reader, "display_url", ""),
        searches=tuple(summaries[n] for n in names),
        trials=trials,
        archs=reader.archs(keys),
        top=top,
        generated_at=datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None),
        fingerprint=fingerprint,
        curves=curves,
        calibrations=_calibrations(reader, [summaries[n].search for n in names]),
        rungs={n: rung_thresholds(settings[n], trials[n], curves) for n in scheduled},
    )


def proxy_trials(s: SearchSummary, trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The trials whose rewards compare with one another: a search's all; a calibration study's at its proxy's
    fidelity (its search fingerprint), not its reference trainings, whose APs come from a longer training."""
    if getattr(s.search, "kind", "search") == "search" or s.search.fingerprint is None:
        return list(trials)
    return [t for t in trials if t.fingerprint == s.search.fingerprint]


def _calibrations(reader: ReadAPI, searches: Sequence[Any]) -> dict[str, dict]:
    from nas.calibration.study import KIND, CalibrationError, read_figures

    out = {}
    for s in searches:
        if getattr(s, "kind", "search") != KIND:
            continue
        try:
            out[s.name] = read_figures(reader, s)  # a study of variants: with its reference study's trainings
        except CalibrationError:
            continue
    return out


def rung_thresholds(settings: Any, trials: Sequence[TrialRecord],
                    curves: Mapping[int, Sequence[Any]]) -> list[dict[str, Any]]:
    """Each rung of a search's scheduler with the AP a trial reaching it now must have to go on.

    ASHA continues a trial whose reward is among the top ``1/eta`` of those recorded at the rung (at least one),
    the median rule one whose reward is at least the completed trials' median there. The cut is computed from the
    stored curves over the AP at the rung, which is the reward when the search's reward is 'ap' (`exact`); for
    'ap-flops' it is the AP of the trial at the cut. Before the rung holds a result, the cut is None.

    Returns:
      [{'step', 'cut' (AP or None), 'n' (APs at the rung), 'rule' (text), 'exact'}], in rung order.
    """
    out = []
    by_id = {t.id: t for t in trials}
    for step in settings.rungs:
        aps = []
        for tid, curve in curves.items():
            t = by_id.get(tid)
            if t is None:
                continue
            if settings.scheduler == "median" and t.status != TrialStatus.COMPLETED:
                continue  # the median rule compares with completed trials only
            ap = next((r.metrics.get("ap") for r in curve if r.step == step), None)
            if isinstance(ap, (int, float)) and math.isfinite(ap):
                aps.append(float(ap))
        cut, rule = None, f"{settings.scheduler} at step {step}"
        if aps:
            ranked = sorted(aps, reverse=True)
            if settings.scheduler == "asha" and settings.eta:
                k = max(1, len(ranked) // settings.eta)
                cut, rule = ranked[k - 1], f"top 1/{settings.eta}: {k} of {len(ranked)}"
            elif settings.scheduler == "median":
                import statistics

                cut, rule = statistics.median(ranked), f"median of {len(ranked)} completed"
        out.append({"step": step, "cut": cut, "n": len(aps), "rule": rule, "exact": settings.reward == "ap"})
    return out


# --------------------------------------------------------------------------------------------------- plots
def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _label(s: SearchSummary) -> str:
    return f"{s.search.name} ({s.search.controller})" if s.search.controller else s.search.name


def plot_rewards(data: ReportData) -> str:
    """Reward of every finished trial in completion order, and the running best, one colour per search."""
    fig = _figure(10, 4.2)
    ax = fig.subplots()
    drawn = False
    for i, s in enumerate(data.searches):
        colour = SEARCH_COLOURS[i % len(SEARCH_COLOURS)]
        done = sorted(
            (t for t in proxy_trials(s, data.trials[s.search.name]) if t.finish_order is not None
             and t.reward is not None),
            key=lambda t: t.finish_order,
        )
        if not done:
            continue
        drawn = True
        xs = [t.finish_order for t in done]
        ys = [t.reward for t in done]
        fresh = [(x, y) for x, y, t in zip(xs, ys, done) if t.status == TrialStatus.COMPLETED]
        reused = [(x, y) for x, y, t in zip(xs, ys, done) if t.status == TrialStatus.CACHED]
        failed = [(x, y) for x, y, t in zip(xs, ys, done) if t.status == TrialStatus.FAILED]
        pruned = [(x, y) for x, y, t in zip(xs, ys, done) if t.status == TrialStatus.PRUNED]
        size = 10 if len(done) > 500 else 18
        if fresh:
            ax.scatter(*zip(*fresh), s=size, color=colour, alpha=0.45, linewidths=0)
        if reused:
            ax.scatter(*zip(*reused), s=size, facecolors="none", edgecolors=colour, alpha=0.6, linewidths=0.8)
        if failed:
            ax.scatter(*zip(*failed), s=size + 6, marker="x", color=colour, alpha=0.6, linewidths=0.8)
        if pruned:
            ax.scatter(*zip(*pruned), s=size, marker="v", color=colour, alpha=0.35, linewidths=0)
        best, running = -math.inf, []
        for t in done:
            if t.status in _RANKED:  # a pruned trial's reward is the controller's stand-in, not a measured one
                best = max(best, t.reward)
            running.append(best if best > -math.inf else None)
        ax.plot(xs, running, color=colour, linewidth=2.0, label=f"{_label(s)}: running best")
    if not drawn:
        ax.text(0.5, 0.5, "no finished trial with a reward yet", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("trial, in completion order")
    ax.set_ylabel("reward")
    ax.set_title("Reward per trial (dots: evaluated, circles: reused result, x: failed, triangles: pruned, their "
                 "reward the controller's) and running best", fontsize=10)
    ax.grid(color="#eeeeee")
    return _png(fig)


def compute_curve(trials: Sequence[TrialRecord]) -> list[tuple[float, float | None]]:
    """(cumulative trial-seconds, best reward so far) after each finished trial, in completion order.

    A trial's seconds are its `wall_s` (a cached or rejected trial's are 0); the best is over completed and cached
    trials only (a pruned trial's reward is the controller's stand-in; None until there is one), so two searches,
    with or without early stopping, compare on equal compute (`plot_best_vs_compute`).
    """
    done = sorted((t for t in trials if t.finish_order is not None), key=lambda t: t.finish_order)
    spent, best, out = 0.0, None, []
    for t in done:
        spent += t.wall_s or 0.0
        if t.status in _RANKED and t.reward is not None:
            best = t.reward if best is None else max(best, t.reward)
        out.append((spent, best))
    return out


def plot_best_vs_compute(data: ReportData) -> str:
    """Best reward against cumulative trial-seconds, one line per search: the multi-fidelity view."""
    fig = _figure(10, 4.0)
    ax = fig.subplots()
    hours = max((s.trial_s for s in data.searches), default=0.0) >= 3 * 3600
    unit, scale = ("trial-hours", 3600.0) if hours else ("trial-minutes", 60.0)
    drawn = False
    for i, s in enumerate(data.searches):
        points = [(x / scale, y) for x, y in compute_curve(proxy_trials(s, data.trials[s.search.name]))
                  if y is not None]
        if not points:
            continue
        drawn = True
        xs, ys = zip(*points)
        ax.step(xs, ys, where="post", color=SEARCH_COLOURS[i % len(SEARCH_COLOURS)], linewidth=2.0,
                label=f"{_label(s)}: {s.steps:,} steps in {s.trial_s / scale:.1f} {unit}")
    if drawn:
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no completed trial yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(f"cumulative {unit} (the trained trials' seconds, summed over workers)")
    ax.set_ylabel("best reward")
    ax.set_title("Best reward against compute spent", fontsize=10)
    ax.grid(color="#eeeeee")
    return _png(fig)


def plot_curves(data: ReportData) -> str | None:
    """The learning curves of the top architectures' trials: training loss and AP against proxy steps; with a
    scheduler, the pruned trials too (their curves end at their rung, marked x) and its rungs (dotted) with their
    cuts (the AP a trial reaching the rung must beat, as the dashboard marks them).

    As NNI's intermediate-results chart and Optuna's `plot_intermediate_values`: one line per trial, coloured by
    the architecture's rank, AP points at the intermediate evaluations and the final one.
    """
    rank = {r.arch_key: r.rank for r in data.top}
    by_trial = {t.id: t for ts in data.trials.values() for t in ts}
    lines = [(rank[by_trial[tid].arch_key], by_trial[tid], curve) for tid, curve in data.curves.items()
             if curve and tid in by_trial and by_trial[tid].arch_key in rank]
    pruned = [curve for tid, curve in data.curves.items()
              if curve and tid in by_trial and by_trial[tid].status == TrialStatus.PRUNED]
    if not lines and not pruned:
        return None
    fig = _figure(10, 4.0)
    ax_loss, ax_ap = fig.subplots(1, 2)
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    n = max(len(data.top), 2)
    labelled: set[int] = set()
    for r, trial, curve in sorted(lines, key=lambda x: (x[0], x[1].id)):
        colour = cmap((r - 1) / (n - 1) * 0.9)
        label = None if r in labelled else f"#{r} {trial.arch_key[:8]}"
        labelled.add(r)
        loss = [(p.step, p.metrics["loss"]) for p in curve if p.metrics.get("loss") is not None]
        ap = [(p.step, p.metrics["ap"]) for p in curve if p.metrics.get("ap") is not None]
        if loss:
            ax_loss.plot(*zip(*loss), color=colour, linewidth=1.2, alpha=0.85, label=label)
        if ap:
            ax_ap.plot(*zip(*ap), color=colour, linewidth=1.2, marker="o", markersize=4, alpha=0.85, label=label)
    colour = STATUS_COLOURS[TrialStatus.PRUNED.value]
    for i, curve in enumerate(pruned):
        label = "pruned (x: stopped at its rung)" if i == 0 else None
        loss = [(p.step, p.metrics["loss"]) for p in curve if p.metrics.get("loss") is not None]
        ap = [(p.step, p.metrics["ap"]) for p in curve if p.metrics.get("ap") is not None]
        if loss:
            ax_loss.plot(*zip(*loss), color=colour, linewidth=0.7, alpha=0.5, label=label)
        if ap:
            ax_ap.plot(*zip(*ap), color=colour, linewidth=0.7, alpha=0.5, label=label)
            ax_ap.scatter([ap[-1][0]], [ap[-1][1]], marker="x", s=18, color=colour, alpha=0.8)
    for rungs in data.rungs.values():
        for r in rungs:
            for ax in (ax_loss, ax_ap):
                ax.axvline(r["step"], color="#888888", linestyle=":", linewidth=1)
            if r["cut"] is not None:
                ax_ap.plot([r["step"]], [r["cut"]], marker="_", markersize=16, markeredgewidth=2.5, color="#222222")
                ax_ap.annotate(f"cut {r['cut']:.3f}", (r["step"], r["cut"]), textcoords="offset points",
                               xytext=(8, -3), fontsize=7)
    ax_loss.set_xlabel("proxy step")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("Training loss", fontsize=10)
    ax_ap.set_xlabel("proxy step")
    ax_ap.set_ylabel("AP")
    ax_ap.set_title("AP at the evaluations" + ("; dotted: the scheduler's rungs" if data.rungs else
                                               " (intermediate and final)"), fontsize=10)
    for ax in (ax_loss, ax_ap):
        ax.grid(color="#eeeeee")
    ax_ap.legend(loc="lower right", fontsize=7)
    return _png(fig)


def calibration_figure(name: str, d: dict[str, Any]) -> Any:
    """The figure `calibration show --image` writes: `variants_figure` for a study of variants, else `tau_figure`."""
    return variants_figure(name, d) if "variants" in d else tau_figure(name, d)


def plot_calibration_variants(name: str, d: dict[str, Any]) -> str:
    """`variants_figure` as base64 PNG."""
    return _png(variants_figure(name, d))


def variants_figure(name: str, d: dict[str, Any]) -> Any:
    """A study of variants: each variant's rungs as seconds per trial against Kendall tau (one line per variant, the
    90% interval as error bars, each point labelled with its step), the target dashed, the verdict's point ringed."""
    fig = _figure(7, 4.2)
    ax = fig.subplots()
    points = {}
    for i, v in enumerate(d["variants"]):
        rows = [r for r in v["rungs"] if r["all"]["tau"] is not None and r["seconds_per_trial"] is not None]
        if not rows:
            continue
        colour = SEARCH_COLOURS[i % len(SEARCH_COLOURS)]
        xs = [r["seconds_per_trial"] for r in rows]
        ys = [r["all"]["tau"] for r in rows]
        # A bootstrap percentile interval need not contain the estimate: clip, as error bars cannot be negative.
        low = [max(0.0, y - r["all"]["tau_low"]) if r["all"]["tau_low"] is not None else 0.0 for y, r in zip(ys, rows)]
        high = [max(0.0, r["all"]["tau_high"] - y) if r["all"]["tau_high"] is not None else 0.0
                for y, r in zip(ys, rows)]
        ax.errorbar(xs, ys, yerr=[low, high], marker="o", color=colour, capsize=3, label=v["name"])
        for x, y, r in zip(xs, ys, rows):
            points[(v["name"], r["step"])] = (x, y)
            ax.annotate(str(r["step"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=colour)
    verdict = d["verdict"]
    best = points.get((verdict.get("variant"), verdict.get("good_rung")))
    if best is not None:
        ax.scatter([best[0]], [best[1]], s=220, facecolors="none", edgecolors="#222222", linewidths=1.5, zorder=5,
                   label=f"cheapest: {verdict['variant']} at {verdict['good_rung']}")
    target = verdict["target_tau"]
    ax.axhline(target, color="#888888", linestyle="--", linewidth=1, label=f"target {target}")
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("seconds per trial (to the rung)")
    ax.set_ylabel("Kendall tau vs reference")
    ax.set_title(f"{name}: cost and rank agreement of each variant's rungs against {d['reference']['steps']} steps",
                 fontsize=10)
    ax.grid(color="#eeeeee")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_calibration_tau(name: str, d: dict[str, Any]) -> str:
    """`tau_figure` as base64 PNG."""
    return _png(tau_figure(name, d))


def tau_figure(name: str, d: dict[str, Any]) -> Any:
    """Kendall tau of each rung against the reference, over proxy steps, with its 90% interval as a band."""
    fig = _figure(7, 3.8)
    ax = fig.subplots()
    for subset, colour, label in (("all", SEARCH_COLOURS[0], "all candidates"),
                                  ("random", SEARCH_COLOURS[1], "random candidates")):
        rows = [r for r in d["rungs"] if r[subset]["tau"] is not None]
        if not rows:
            continue
        xs = [r["step"] for r in rows]
        ax.plot(xs, [r[subset]["tau"] for r in rows], marker="o", color=colour, label=label)
        ax.fill_between(xs, [r[subset]["tau_low"] for r in rows], [r[subset]["tau_high"] for r in rows],
                        color=colour, alpha=0.15, linewidth=0)
    target = d["verdict"]["target_tau"]
    ax.axhline(target, color="#888888", linestyle="--", linewidth=1, label=f"target {target}")
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("proxy step (rung)")
    ax.set_ylabel("Kendall tau vs reference")
    ax.set_title(f"{name}: rank agreement of each rung with {d['reference']['steps']} steps", fontsize=10)
    ax.grid(color="#eeeeee")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_calibration_scatter(name: str, d: dict[str, Any]) -> str:
    """Each candidate's proxy AP (at the proxy's last step) against its reference AP."""
    fig = _figure(5.5, 4.5)
    ax = fig.subplots()
    final = str(d["rungs"][-1]["step"])
    kinds = {"spinenet-49": ("*", "#c44e52"), "poor": ("v", "#8c8c8c"), "scale-decreased": ("s", "#8172b3"),
             "random": ("o", "#4c72b0"), "given": ("o", "#55a868")}
    for kind, (marker, colour) in kinds.items():
        pts = [(c["reference_ap"], c["proxy_ap"][final]) for c in d["candidates"] if c["kind"] == kind
               and c["reference_ap"] is not None and c["proxy_ap"][final] is not None]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, color=colour, s=40 if marker != "*" else 110, label=kind)
    ax.set_xlabel(f"reference AP ({d['reference']['steps']} steps)")
    ax.set_ylabel(f"proxy AP ({final} steps)")
    ax.set_title(f"{name}: proxy against reference", fontsize=10)
    ax.grid(color="#eeeeee")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both fewer FLOPs and higher AP, by increasing FLOPs."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def plot_ap_flops(data: ReportData) -> str:
    """Best AP of each arch against its FLOPs, per search, with the Pareto front over all of them."""
    fig = _figure(10, 4.6)
    ax = fig.subplots()
    everything: list[tuple[float, float]] = []
    for i, s in enumerate(data.searches):
        best: dict[str, float] = {}
        for t in proxy_trials(s, data.trials[s.search.name]):
            if t.status != TrialStatus.COMPLETED:
                continue
            ap = t.ap if t.ap is not None else t.reward
            if ap is not None and ap > best.get(t.arch_key, -math.inf):
                best[t.arch_key] = ap
        pts = [(data.archs[k].flops / 1e9, ap) for k, ap in best.items() if k in data.archs and data.archs[k].flops]
        if pts:
            ax.scatter(*zip(*pts), s=12, alpha=0.5, color=SEARCH_COLOURS[i % len(SEARCH_COLOURS)], linewidths=0,
                       label=_label(s))
            everything.extend(pts)
    if everything:
        front = pareto_front(everything)
        ax.step(*zip(*front), where="post", color="black", linewidth=1.2, label="Pareto front")
        ax.scatter(*zip(*front), s=30, facecolors="none", edgecolors="black", linewidths=1.2)
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no completed trial with measured FLOPs yet", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("GFLOPs (multiply-adds per image, proxy detector)")
    ax.set_ylabel("AP (proxy)")
    ax.set_title("AP against FLOPs, best trial of each architecture", fontsize=10)
    ax.grid(color="#eeeeee")
    return _png(fig)


def plot_top_levels(data: ReportData) -> str:
    """Levels and block types of the top architectures: one strip each, and the counts per level over them."""
    from search_space import ArchSpec

    from nas.cli.diagram import BLOCK_STYLE

    archs = [(r, ArchSpec.from_json(data.archs[r.arch_key].spec_json)) for r in data.top if r.arch_key in data.archs]
    rows = max(1, len(archs))
    fig = _figure(11, 1.0 + 0.62 * rows)
    left, right = fig.subplots(1, 2, width_ratios=(3, 1))
    if not archs:
        left.text(0.5, 0.5, "no completed trial yet", ha="center", va="center", transform=left.transAxes)
    counts = {fn: [0] * 6 for fn in BLOCK_STYLE}
    for row, (r, arch) in enumerate(archs):
        y0 = (rows - 1 - row) * 7.0  # each strip spans levels 2..7 in its own band
        xs = list(range(len(arch.blocks)))
        left.plot(xs, [y0 + b.level - 2 for b in arch.blocks], color="#cccccc", linewidth=0.8, zorder=1)
        for x, b in zip(xs, arch.blocks):
            marker, colour = BLOCK_STYLE[b.block_fn]
            left.scatter([x], [y0 + b.level - 2], marker=marker, s=40 if b.is_output else 24, c=colour,
                         edgecolors="black" if b.is_output else "none", linewidths=1.2, zorder=2)
            counts[b.block_fn][b.level - 2] += 1
        left.text(-0.8, y0 + 2.5, f"#{r.rank} {r.arch_key[:8]}  {r.reward:.4f}", ha="right", va="center", fontsize=8)
    left.set_yticks([])
    left.set_xlabel("block, in build order (height: level L2..L7 within each strip; outlined: output block)")
    left.set_title("Levels and block types of the top architectures (square bottleneck, circle residual)",
                   fontsize=10)
    for side in ("top", "right", "left"):
        left.spines[side].set_visible(False)
    bottom = [0] * 6
    for fn, (_, colour) in BLOCK_STYLE.items():
        right.barh([f"L{lvl}" for lvl in range(2, 8)], counts[fn], left=bottom, color=colour, label=fn)
        bottom = [a + b for a, b in zip(bottom, counts[fn])]
    right.set_title("blocks per level, top archs", fontsize=10)
    right.legend(fontsize=8, loc="lower right")
    return _png(fig)


def plot_best_arch(data: ReportData) -> str | None:
    """The best architecture's diagram (as `spinenas show --image` draws it), or None."""
    if not data.top or data.top[0].arch_key not in data.archs:
        return None
    from search_space import ArchSpec

    from nas.cli.diagram import draw_arch_on

    arch = ArchSpec.from_json(data.archs[data.top[0].arch_key].spec_json)
    n = arch.num_stem_candidates + len(arch.blocks)
    fig = _figure(max(7.0, 0.55 * n + 1.5) + 3.2, 4.6)
    draw_arch_on(fig.subplots(), arch, f"best: {arch.key}   reward {data.top[0].reward:.4f}")
    return _png(fig)


def plot_status_durations(data: ReportData) -> str:
    """Trial counts per status, and the distribution of trial durations, per search."""
    fig = _figure(11, 3.8)
    left, right = fig.subplots(1, 2)
    n = len(data.searches)
    width = 0.8 / max(1, n)
    for i, s in enumerate(data.searches):
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(STATUSES))]
        ys = [s.counts.get(st, 0) for st in STATUSES]
        left.bar(xs, ys, width=width, color=SEARCH_COLOURS[i % len(SEARCH_COLOURS)], label=_label(s))
        for x, y in zip(xs, ys):
            if y:
                left.text(x, y, str(y), ha="center", va="bottom", fontsize=7)
    left.set_xticks(range(len(STATUSES)))
    left.set_xticklabels(STATUSES)
    left.set_ylabel("trials")
    left.set_title("Trials per status", fontsize=10)
    left.legend(fontsize=8)
    durations = False
    for i, s in enumerate(data.searches):
        for status, style in ((TrialStatus.COMPLETED, "-"), (TrialStatus.FAILED, ":")):
            minutes = [t.wall_s / 60 for t in data.trials[s.search.name] if t.status == status and t.wall_s]
            if minutes:
                durations = True
                right.hist(minutes, bins=40, histtype="step", linestyle=style, linewidth=1.4,
                           color=SEARCH_COLOURS[i % len(SEARCH_COLOURS)], label=f"{s.search.name}: {status}")
    if durations:
        right.legend(fontsize=8)
    else:
        right.text(0.5, 0.5, "no trial durations yet", ha="center", va="center", transform=right.transAxes)
    right.set_xlabel("trial wall time (minutes)")
    right.set_ylabel("trials")
    right.set_title("Trial durations", fontsize=10)
    return _png(fig)


# --------------------------------------------------------------------------------------------------- html
_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #eee; text-align: left; white-space: nowrap; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: Menlo, Consolas, monospace; font-size: 0.85em; }
img { max-width: 100%; } .meta { color: #666; font-size: 0.85em; }
"""


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if j in numeric else ''}>{html.escape(_fmt(c))}</td>" for j, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(b64: str | None, alt: str) -> str:
    return "" if b64 is None else f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"></p>'


def render_html(data: ReportData) -> str:
    """The report page as one HTML string."""
    from nas.cli.ui import fmt_count, fmt_seconds, fmt_time

    names = ", ".join(s.search.name for s in data.searches)
    searches = _table(
        ("search", "controller", "family", "seed", "status", "trials", "completed", "failed", "cached", "rejected",
         "pruned", "best reward", "started (UTC)", "trial time", "steps"),
        [
            (s.search.name, s.search.controller or "-", s.search.family or "-", s.search.seed, s.search.status,
             s.trials, s.counts.get(TrialStatus.COMPLETED, 0), s.counts.get(TrialStatus.FAILED, 0),
             s.counts.get(TrialStatus.CACHED, 0), s.counts.get(TrialStatus.REJECTED, 0),
             s.counts.get(TrialStatus.PRUNED, 0), s.best_reward, fmt_time(s.search.created_at),
             fmt_seconds(s.trial_s), s.steps)
            for s in data.searches
        ],
        numeric=(5, 6, 7, 8, 9, 10, 11, 13, 14),
    )  # fmt: skip
    top = _table(
        ("rank", "key", "reward", "AP", "FLOPs", "params", "trial time", "n", "search", "spec"),
        [
            (r.rank, r.arch_key, r.reward, r.ap, fmt_count(r.flops), fmt_count(r.params), fmt_seconds(r.wall_s),
             r.evaluations, r.search, r.summary)
            for r in data.top
        ],
        numeric=(2, 3, 4, 5, 6, 7),
    )  # fmt: skip
    configs = "".join(
        f"<details><summary>config of {html.escape(s.search.name)}</summary><pre>{html.escape(s.search.config)}"
        "</pre></details>"
        for s in data.searches
        if s.search.config
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>spinenas report: {html.escape(names)}</title><style>{_CSS}</style></head><body>",
        f"<h1>SpineNet search report: {html.escape(names)}</h1>",
        f'<p class="meta">database {html.escape(data.db)} &middot; generated {fmt_time(data.generated_at)} UTC '
        f"&middot; spinenas report</p>",
        "<h2>Searches</h2>",
        searches,
        configs,
        "<h2>Reward over the search</h2>",
        '<p class="meta">calibration studies: their proxy trainings only (their reference trainings are longer, '
        "their APs not comparable)</p>" if any(s.search.kind != "search" for s in data.searches) else "",
        _img(plot_rewards(data), "reward per trial and running best"),
        "<h2>Best reward against compute</h2>",
        '<p class="meta">trial time: the trained trials\' seconds, summed over workers (cached and rejected trials '
        "cost nothing); searches with and without early stopping compare here on equal compute</p>",
        _img(plot_best_vs_compute(data), "best reward against cumulative trial-seconds"),
        f"<h2>Top {len(data.top)} architectures</h2>",
        f'<p class="meta">ranked within fingerprint {html.escape(data.fingerprint)} (the newest search\'s: one '
        "evaluator, proxy settings and reward)</p>" if data.fingerprint else "",
        top if data.top else "<p>No completed trial yet.</p>",
        '<p class="meta">spec: one entry per block of the canonical spec, &lt;level&gt;&lt;b|r&gt; '
        "(bottleneck or residual), * = output block. <code>spinenas show KEY</code> prints one in full.</p>",
        _img(plot_best_arch(data), "diagram of the best architecture"),
        _img(plot_top_levels(data), "levels and block types of the top architectures"),
        ("<h2>Learning curves of the top architectures and the pruned trials</h2>" if data.rungs else
         "<h2>Learning curves of the top architectures</h2>") if data.curves else "",
        _img(plot_curves(data), "training loss and AP against proxy steps"),
        "<h2>Accuracy and cost</h2>",
        _img(plot_ap_flops(data), "AP against FLOPs with the Pareto front"),
        "<h2>Trials</h2>",
        _img(plot_status_durations(data), "trial status counts and durations"),
        *(part for name, d in data.calibrations.items() for part in (
            f"<h2>Calibration {html.escape(name)}</h2>",
            f"<p>{html.escape(d['verdict']['text'])}</p>",
            *((_img(plot_calibration_variants(name, d), "seconds per trial against Kendall tau of each variant"),)
              if "variants" in d else
              (_img(plot_calibration_tau(name, d), "Kendall tau of each rung against the reference"),
               _img(plot_calibration_scatter(name, d), "proxy AP against reference AP"))))),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(data: ReportData, out_dir: str | os.PathLike[str]) -> str:
    """Writes ``out_dir/index.html`` (atomically) and returns its path."""
    page = render_html(data)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(os.fspath(out_dir), "index.html")
    tmp = f"{path}.{os.getpid()}.tmp"  # two reports into one folder at once each write their own
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(page)
        os.replace(tmp, path)
    except BaseException:  # a full disk, index.html a directory, Ctrl-C: leave no partial file behind
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    logger.info("wrote %s", path)
    return path
