"""The dashboard's plots as plotly figures (plain dicts in, `plotly.graph_objects.Figure` out).

The colours are the report's (`nas.cli.report.STATUS_COLOURS`, `SEARCH_COLOURS`), so a trial's status reads the
same on the page and in `spinenas report`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from nas.cli.report import SEARCH_COLOURS, STATUS_COLOURS

# Above this many points a plot draws with WebGL (plotly's Scattergl); below it SVG, which every browser draws.
_WEBGL_POINTS = 5000

# Margins that leave the plot most of a laptop's width; the legend goes above the plot, not beside it.
_LAYOUT = dict(margin=dict(l=60, r=20, t=50, b=50), template="plotly_white", hovermode="closest",
               legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))


def _figure(**layout: Any) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(**{**_LAYOUT, **layout})
    return fig


def message(text: str, height: int = 300) -> Any:
    """An empty figure that says `text` (no data yet, a database error)."""
    fig = _figure(height=height)
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font=dict(size=14))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def curves(data: Mapping[str, Any], metric: str) -> Any:
    """Every trial's curve of `metric` ('ap' or 'loss') against proxy steps, one colour per status; a pruned trial's
    curve ends at its rung with an x; the scheduler's rungs are dotted lines with their current cut (AP) marked.

    A click on a point opens its trial (the point's customdata is the trial's id).
    """
    import plotly.graph_objects as go

    fig = _figure(height=460, xaxis_title="proxy step", yaxis_title="AP" if metric == "ap" else "training loss")
    by_status: dict[str, list[Mapping[str, Any]]] = {}
    scatter = go.Scattergl if sum(len(t["steps"]) for t in data["trials"]) > _WEBGL_POINTS else go.Scatter
    for t in data["trials"]:
        by_status.setdefault(t["status"], []).append(t)
    for status, trials in sorted(by_status.items()):
        xs: list[Any] = []
        ys: list[Any] = []
        ids: list[Any] = []
        ends: list[tuple[int, float, int]] = []
        for t in trials:
            pts = [(s, v) for s, v in zip(t["steps"], t[metric]) if v is not None]
            if not pts:
                continue
            xs += [s for s, _ in pts] + [None]
            ys += [v for _, v in pts] + [None]
            ids += [t["id"]] * len(pts) + [None]
            ends.append((pts[-1][0], pts[-1][1], t["id"]))
        if not ends:
            continue
        colour = STATUS_COLOURS.get(status, "#888888")
        fig.add_trace(scatter(
            x=xs, y=ys, customdata=ids, mode="lines+markers" if metric == "ap" else "lines", name=status,
            line=dict(color=colour, width=1.2), marker=dict(size=4), opacity=0.75, connectgaps=False,
            hovertemplate="trial id %{customdata}<br>step %{x}<br>%{y:.4f}<extra>" + status + "</extra>"))
        if status == "pruned":
            fig.add_trace(scatter(
                x=[e[0] for e in ends], y=[e[1] for e in ends], customdata=[e[2] for e in ends], mode="markers",
                marker=dict(symbol="x", size=8, color=colour), name="pruned: stopped here", showlegend=True,
                hovertemplate="trial id %{customdata} stopped at step %{x}<extra></extra>"))
    for r in data["rungs"]:
        fig.add_vline(x=r["step"], line=dict(color="#888888", dash="dot", width=1))
        if metric == "ap" and r["cut"] is not None:
            fig.add_trace(go.Scatter(
                x=[r["step"]], y=[r["cut"]], mode="markers+text", marker=dict(symbol="line-ew-open", size=28,
                                                                              color="#222222", line=dict(width=3)),
                text=[f"cut {r['cut']:.3f}"], textposition="middle right", showlegend=False,
                hovertemplate=(f"rung {r['step']}: {r['rule']}, AP cut {r['cut']:.4f}"
                               + ("" if r["exact"] else " (the scheduler compares rewards; AP of the cut trial)")
                               + "<extra></extra>")))
    if not data["trials"]:
        return message("no trial has reported yet", height=460)
    return fig


def best_vs_compute(series: Mapping[str, Sequence[tuple[float, float | None]]]) -> Any:
    """Best reward against cumulative trial-seconds, one step line per search (the report's
    `plot_best_vs_compute`, interactive)."""
    import plotly.graph_objects as go

    total = max((pts[-1][0] for pts in series.values() if pts), default=0.0)
    unit, scale = ("trial-hours", 3600.0) if total >= 3 * 3600 else ("trial-minutes", 60.0)
    fig = _figure(height=420, xaxis_title=f"cumulative {unit} (the trained trials' seconds, summed over workers)",
                  yaxis_title="best reward")
    drawn = False
    for i, (name, pts) in enumerate(series.items()):
        pts = [(x / scale, y) for x, y in pts if y is not None]
        if not pts:
            continue
        drawn = True
        fig.add_trace(go.Scatter(x=[x for x, _ in pts], y=[y for _, y in pts], mode="lines", line_shape="hv",
                                 name=name, showlegend=True,
                                 line=dict(color=SEARCH_COLOURS[i % len(SEARCH_COLOURS)], width=2)))
    return fig if drawn else message("no completed trial yet", height=420)


def parallel(d: Mapping[str, Any], axes: str) -> Any:
    """Parallel coordinates of the completed trials, coloured by reward.

    Args:
      d: `DashboardData.decisions`.
      axes: 'level', 'block_fn' or 'parents' (one axis per block: its level, its type, its two parents), or
        'decisions' (one axis per decision, by its label).
    """
    import plotly.graph_objects as go

    rows = d["rows"]
    if not rows:
        return message("no completed trial yet", height=460)
    dims = []
    if axes == "decisions":
        for j, label in enumerate(d["labels"]):
            values = [r["decisions"][j] if j < len(r["decisions"]) else None for r in rows]
            dims.append(dict(label=label, values=values))
    else:
        names = sorted({k for r in rows for k in r["blocks"] if k.endswith("." + axes)},
                       key=lambda k: int(k.split(".")[0].removeprefix("block")))
        for name in names:
            raw = [r["blocks"].get(name) for r in rows]
            if axes == "level":
                dims.append(dict(label=name.split(".")[0], values=raw, range=[2, 7], tickvals=list(range(2, 8))))
            else:  # categorical: numbered in a sorted order, labelled with the value
                cats = sorted({v for v in raw if v is not None}, key=_natural)
                dims.append(dict(label=name.split(".")[0], values=[cats.index(v) if v in cats else None for v in raw],
                                 tickvals=list(range(len(cats))), ticktext=cats))
    rewards = [r["reward"] for r in rows]
    dims.append(dict(label="reward", values=rewards))
    fig = _figure(height=480, margin=dict(l=60, r=60, t=70, b=30))
    fig.add_trace(go.Parcoords(line=dict(color=rewards, colorscale="Viridis", showscale=True,
                                         colorbar=dict(title="reward")), dimensions=dims,
                               labelangle=-30, labelfont=dict(size=10), tickfont=dict(size=9)))
    return fig


def _natural(v: Any) -> Any:
    if isinstance(v, str) and "," in v:
        try:
            return tuple(int(p) for p in v.split(","))
        except ValueError:
            return (math.inf, v)
    return v


def importance(d: Mapping[str, Any]) -> Any:
    """The decisions' importance as horizontal bars, the most important on top."""
    import plotly.graph_objects as go

    fig = _figure(height=max(260, 24 * len(d["labels"]) + 110), margin=dict(l=200, r=20, t=40, b=50),
                  xaxis_title="share of the forest's variance reduction made by splits on the decision")
    fig.add_trace(go.Bar(x=d["importance"][::-1], y=d["labels"][::-1], orientation="h",
                         error_x=dict(type="data", array=d["std"][::-1]), marker_color=SEARCH_COLOURS[0]))
    return fig


def calibration_tau(name: str, d: Mapping[str, Any]) -> Any:
    """A study's Kendall tau per rung with its 90% interval (all and random candidates), the target dashed; for a
    study of variants, each variant's rungs as seconds per trial against tau."""
    import plotly.graph_objects as go

    target = d["verdict"]["target_tau"]
    if "variants" in d:
        fig = _figure(height=420, xaxis_title="seconds per trial (to the rung)",
                      yaxis_title="Kendall tau vs reference", yaxis_range=[-1.05, 1.05])
        for i, v in enumerate(d["variants"]):
            rows = [r for r in v["rungs"] if r["all"]["tau"] is not None and r["seconds_per_trial"] is not None]
            if rows:
                fig.add_trace(_tau_trace(go, rows, [r["seconds_per_trial"] for r in rows], v["name"],
                                         SEARCH_COLOURS[i % len(SEARCH_COLOURS)], "all"))
    else:
        fig = _figure(height=420, xaxis_title="proxy step (rung)", yaxis_title="Kendall tau vs reference",
                      yaxis_range=[-1.05, 1.05])
        for i, (subset, label) in enumerate((("all", "all candidates"), ("random", "random candidates"))):
            rows = [r for r in d["rungs"] if r[subset]["tau"] is not None]
            if rows:
                fig.add_trace(_tau_trace(go, rows, [r["step"] for r in rows], label, SEARCH_COLOURS[i], subset))
    fig.add_hline(y=target, line=dict(color="#888888", dash="dash"), annotation_text=f"target {target}")
    fig.update_layout(title=dict(text=f"{name}: rank agreement with {d['reference']['steps']} steps", font_size=13),
                      margin=dict(l=60, r=20, t=80, b=50))
    return fig


def _tau_trace(go: Any, rows: Sequence[Mapping[str, Any]], xs: Sequence[float], name: str, colour: str,
               subset: str) -> Any:
    ys = [r[subset]["tau"] for r in rows]
    # A bootstrap percentile interval need not contain the estimate: clip, as error bars cannot be negative.
    hi = [max(0.0, r[subset]["tau_high"] - y) if r[subset]["tau_high"] is not None else 0.0 for r, y in zip(rows, ys)]
    lo = [max(0.0, y - r[subset]["tau_low"]) if r[subset]["tau_low"] is not None else 0.0 for r, y in zip(rows, ys)]
    labelled = subset == "all" and xs != [r["step"] for r in rows]  # on a seconds axis, say which rung a point is
    return go.Scatter(x=list(xs), y=ys, mode="lines+markers+text" if labelled else "lines+markers", name=name,
                      text=[str(r["step"]) for r in rows] if labelled else None, textposition="top right",
                      line=dict(color=colour),
                      error_y=dict(type="data", symmetric=False, array=hi, arrayminus=lo))


def trial_curve(curve: Sequence[Mapping[str, Any]]) -> Any:
    """One trial's training loss (left axis) and AP at its evaluations (right axis) against proxy steps."""
    import plotly.graph_objects as go

    if not curve:
        return message("no reports (a cached or rejected trial trains nothing)", height=320)
    fig = _figure(height=340, xaxis_title="proxy step", yaxis=dict(title="training loss"),
                  yaxis2=dict(title="AP", overlaying="y", side="right", showgrid=False))
    loss = [(r["step"], r.get("loss", r.get("train_loss"))) for r in curve]
    loss = [p for p in loss if p[1] is not None]
    ap = [(r["step"], r["ap"]) for r in curve if r.get("ap") is not None]
    if loss:
        fig.add_trace(go.Scatter(x=[s for s, _ in loss], y=[v for _, v in loss], name="loss", mode="lines",
                                 line=dict(color=SEARCH_COLOURS[1])))
    if ap:
        fig.add_trace(go.Scatter(x=[s for s, _ in ap], y=[v for _, v in ap], name="AP", mode="lines+markers",
                                 yaxis="y2", line=dict(color=SEARCH_COLOURS[0])))
    return fig


__all__ = ["best_vs_compute", "calibration_tau", "curves", "importance", "message", "parallel", "trial_curve"]
