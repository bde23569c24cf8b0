"""The dashboard's pages and live updates, as a Dash app over `DashboardData`.

One page with tabs (searches, trials, curves, compute, decisions, calibration) and a trial's own page at
``/trial/ID``; a `dcc.Interval` re-reads the database every `refresh_s` seconds, and each tab's callback reads only
while its tab is shown. Every read goes through `_guarded`: a database that fails (damaged, gone, locked) is a line
on the page, never a traceback or a broken page. Dash serves its JavaScript (React, plotly.js) from the installed
packages, so the page works on a machine without a network.
"""

from __future__ import annotations

import datetime
import logging
import re
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nas.cli.report import STATUS_COLOURS
from nas.cli.ui import fmt_count, fmt_seconds

if TYPE_CHECKING:
    from nas.dashboard.data import DashboardData

logger = logging.getLogger(__name__)

#: Seconds between two reads of the database (the issue asks for updates within 5 s).
REFRESH_S = 2.0
#: Rows of a table page.
PAGE_SIZE = 25

_TRIAL_PATH = re.compile(r"^/trial/(\d+)/?$")

# The page's own CSS (no file beside the package, no CDN): readable on a 1366x768 laptop screen.
_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 0; color: #222;
       background: #fafafa; }
#page { max-width: 1400px; margin: 0 auto; padding: 0.6em 1em 2em; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 0.4em 1.2em; margin-bottom: 0.5em; }
header h1 { font-size: 1.25em; margin: 0; }
.meta { color: #666; font-size: 0.85em; }
.error { color: #a40000; background: #fdecea; padding: 0.4em 0.7em; border-radius: 4px; font-size: 0.9em; }
.note { color: #555; font-size: 0.85em; margin: 0.4em 0; }
.controls { display: flex; flex-wrap: wrap; gap: 0.8em; align-items: center; margin: 0.5em 0; font-size: 0.9em; }
.controls .Select, .controls .dash-dropdown { min-width: 16em; }
pre { background: #f3f3f3; padding: 0.6em; overflow-x: auto; font-size: 0.8em; max-height: 30em; }
.kv { border-collapse: collapse; font-size: 0.85em; }
.kv td { padding: 0.15em 0.8em 0.15em 0; border-bottom: 1px solid #eee; vertical-align: top; }
.kv td:first-child { color: #666; white-space: nowrap; }
.cols { display: flex; flex-wrap: wrap; gap: 1.5em; }
.cols > div { flex: 1 1 30em; min-width: 0; }
img.diagram { max-width: 100%; height: auto; background: white; }
.ag-root-wrapper { --ag-font-size: 13px; --ag-spacing: 4px; }
.figures th { text-align: left; padding: 0.2em 0.8em 0.2em 0; border-bottom: 1px solid #ccc; font-weight: 600; }
.figures td:first-child { color: inherit; }
"""

_INDEX = """<!DOCTYPE html>
<html lang="en">
<head>{%metas%}<title>{%title%}</title>{%favicon%}{%css%}<style>""" + _CSS + """</style></head>
<body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body>
</html>"""

_TAB = {"padding": "6px 12px", "lineHeight": "20px"}
_TAB_SELECTED = {**_TAB, "fontWeight": "bold", "borderTop": "3px solid #4c72b0"}

# A grid column's kind: 'text', 'status' (coloured), 'int', 'float4' (4 decimals), 'si' (12.3M), 's1' (1 decimal).
_FORMATS = {"float4": "d3.format('.4f')(params.value)", "si": "d3.format('.3s')(params.value)",
            "s1": "d3.format('.1f')(params.value)"}


def _column(field: str, header: str, kind: str) -> dict[str, Any]:
    # Wide enough for its header, its sort arrow and (for status) 'completed' in bold.
    width = max(70, 8 * len(header) + 44, {"status": 110, "float4": 90, "si": 80}.get(kind, 0))
    col: dict[str, Any] = {"field": field, "headerName": header, "minWidth": width,
                           "filter": "agTextColumnFilter" if kind in ("text", "status") else "agNumberColumnFilter"}
    if kind in _FORMATS:
        col["valueFormatter"] = {"function": f"params.value == null ? '-' : {_FORMATS[kind]}"}
    if kind == "status":
        col["cellStyle"] = {"styleConditions": [
            {"condition": f"params.value == '{s}'", "style": {"color": c, "fontWeight": "bold"}}
            for s, c in STATUS_COLOURS.items()]}
    if kind not in ("text", "status"):
        col["type"] = "rightAligned"
    return col


def _grid(grid_id: str, columns: list[tuple[str, str, str]], *, pagination: bool = True, filters: bool = True) -> Any:
    """An AG Grid (dash-ag-grid) of `columns`: every column sortable, filterable under its header and resizable;
    rows keep their place by their `id` (a string, as AG Grid wants row ids) while new data comes in (sort and
    filter stay as the user set them)."""
    import dash_ag_grid as dag

    options = {"pagination": pagination, "paginationPageSize": PAGE_SIZE,
               "paginationPageSizeSelector": [PAGE_SIZE, 50, 100], "domLayout": "autoHeight", "animateRows": False,
               "tooltipShowDelay": 300, "enableCellTextSelection": True, "rowHeight": 28, "headerHeight": 32,
               "floatingFiltersHeight": 32}
    return dag.AgGrid(id=grid_id, columnDefs=[_column(*c) for c in columns], rowData=[],
                      getRowId="params.data.id",
                      # flex widths, not columnSize's sizeColumnsToFit: that one warns in a hidden tab (zero width)
                      defaultColDef={"sortable": True, "filter": filters, "floatingFilter": filters,
                                     "resizable": True, "flex": 1},
                      dashGridOptions=options, style={"height": None})


def _guarded(what: str, fn: Callable[[], Any], on_error: Callable[[str], Any]) -> Any:
    """`fn()`, or `on_error(one line)` when reading the database fails (damaged, gone, locked, unknown search)."""
    from nas.cli.commands.common import one_line

    try:
        return fn()
    except (LookupError, ValueError, OSError, sqlite3.Error) as e:
        logger.info("dashboard: %s: %s", what, one_line(e))
        return on_error(f"{what}: {one_line(e)}")
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's errors (PostgreSQL) and anything else: a line, not a 500
        if type(e).__module__.startswith("sqlalchemy"):
            return on_error(f"{what}: {one_line(e)}")
        logger.warning("dashboard: %s failed", what, exc_info=True)
        return on_error(f"{what}: {type(e).__name__}: {one_line(e)}")


class _Pace:
    """How often the page asks for new data: every `refresh_s`, or less often while reads take longer.

    Dash drops a callback's answer when its input changes again before the answer arrives (each tick of the
    interval is a new input), so on a database whose reads take longer than the interval the page would never
    update: the interval is kept at `SLACK` times the slowest read of the last `WINDOW_S` seconds.
    """

    SLACK = 2.5
    WINDOW_S = 30.0

    def __init__(self, refresh_s: float) -> None:
        self.refresh_ms = int(refresh_s * 1000)
        self._reads: dict[str, tuple[float, float]] = {}  # what -> (seconds it took, when it ended)

    def timed(self, what: str, fn: Callable[[], Any]) -> Any:
        """`fn()`, its duration recorded under `what`."""
        t0 = time.monotonic()
        try:
            return fn()
        finally:
            end = time.monotonic()
            self._reads[what] = (end - t0, end)

    def interval_ms(self) -> int:
        """The interval the page should tick at now."""
        now = time.monotonic()
        recent = [d for d, end in list(self._reads.values()) if now - end <= self.WINDOW_S]
        return max(self.refresh_ms, round(self.SLACK * max(recent, default=0.0) * 1000))


def _signature(*parts: Any) -> str:
    """A digest of what a callback would send: the same digest as last time means the page has it already."""
    import hashlib
    import json

    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _error(text: str) -> Any:
    from dash import html

    return html.Div(text, className="error")


def build_app(data: DashboardData, *, search: str | None = None, refresh_s: float = REFRESH_S) -> Any:
    """The Dash app.

    Args:
      data: what it reads.
      search: the search shown first (default: the newest).
      refresh_s: seconds between reads.

    Returns:
      A `dash.Dash`; serve ``app.server`` (a Flask WSGI app).
    """
    import dash
    from dash import dcc, html

    app = dash.Dash("spinenas", title="spinenas dashboard", update_title=None, serve_locally=True,
                    suppress_callback_exceptions=False, compress=False)
    app.index_string = _INDEX
    app.layout = html.Div(id="page", children=[
        dcc.Location(id="url", refresh=False),
        dcc.Interval(id="tick", interval=int(refresh_s * 1000)),
        dcc.Store(id="trials-sig"), dcc.Store(id="curves-sig"), dcc.Store(id="trial-sig"),
        html.Header([
            html.H1(dcc.Link("spinenas dashboard", href="/", style={"color": "inherit", "textDecoration": "none"})),
            html.Span(f"database {data.display_url}", className="meta"),
            html.Span(id="health", className="meta"),
        ]),
        html.Div(id="main-page", children=[
            html.Div(className="controls", children=[
                html.Label("search"),
                dcc.Dropdown(id="search", value=search, clearable=False, style={"minWidth": "22em"}),
            ]),
            dcc.Tabs(id="tabs", value="searches", children=[
                dcc.Tab(label=label, value=value, children=content, style=_TAB, selected_style=_TAB_SELECTED)
                for label, value, content in (
                    ("Searches", "searches", _searches_tab()), ("Trials", "trials", _trials_tab()),
                    ("Curves", "curves", _curves_tab()), ("Best vs compute", "compute", _compute_tab()),
                    ("Decisions", "decisions", _decisions_tab()), ("Calibration", "calibration", _calibration_tab()))
            ]),
        ]),
        html.Div(id="trial-page", style={"display": "none"}, children=[
            dcc.Link("< back to the search", href="/", id="back"),
            html.Div(id="trial-content"),
        ]),
    ])
    _callbacks(app, data, search, _Pace(refresh_s))
    return app


# --------------------------------------------------------------------------------------------------- tabs
def _searches_tab() -> list[Any]:
    from dash import html

    columns = [("name", "search", "text"), ("kind", "kind", "text"), ("controller", "controller", "text"),
               ("status", "status", "status"), ("budget", "budget", "int"), ("trials", "trials", "int"),
               ("completed", "done", "int"), ("running", "running", "int"), ("pruned", "pruned", "int"),
               ("failed", "failed", "int"), ("cached", "cached", "int"), ("rejected", "rejected", "int"),
               ("best_reward", "best reward", "float4"), ("trial_time", "trial time", "text"),
               ("steps", "steps", "int"), ("updates", "updates", "int"), ("scheduler", "scheduler", "text"),
               ("started", "started (UTC)", "text")]
    return [
        html.P("Every search and calibration study in the database. Click a search to open its trials. trial time: "
               "the trained trials' seconds, summed over workers; updates: the controller's, as of its last stored "
               "checkpoint.", className="note"),
        html.Div(id="searches-note"),
        _grid("searches-table", columns, pagination=False, filters=False),
    ]


def _trials_tab() -> list[Any]:
    from dash import html

    columns = [("index", "trial", "int"), ("status", "status", "status"), ("reward", "reward", "float4"),
               ("ap", "AP", "float4"), ("flops", "FLOPs", "si"), ("params", "params", "si"),
               ("steps", "steps", "int"), ("seconds", "seconds", "s1"), ("host", "worker", "text"),
               ("attempt", "attempt", "int"), ("precision", "precision", "text"), ("error", "error", "text"),
               ("key", "key", "text")]
    grid = _grid("trials-table", columns)
    for col in grid.columnDefs:
        if col["field"] == "error":
            col.update(tooltipField="error", minWidth=160, flex=3)
        elif col["field"] == "key":
            col.update(minWidth=165, flex=2)
    return [
        html.P("All trials of the search. Click a column's name to sort by it; type under it to filter (its filter "
               "icon offers greater than, less than, ...); click a row to open the trial.", className="note"),
        html.Div(id="trials-note"),
        grid,
    ]


def _curves_tab() -> list[Any]:
    from dash import dcc, html

    return [
        html.Div(className="controls", children=[
            dcc.RadioItems(id="curve-metric", value="ap", inline=True, options=[
                {"label": " AP at the evaluations ", "value": "ap"}, {"label": " training loss", "value": "loss"}]),
        ]),
        html.P("Every trial's curve, coloured by status; a pruned trial's ends at its rung (x). Dotted lines: the "
               "scheduler's rungs, with the AP a trial reaching them now must beat (its cut). Click a point to open "
               "its trial.", className="note"),
        html.Div(id="curves-note"),
        dcc.Graph(id="curves-graph", config={"displaylogo": False}),
    ]


def _compute_tab() -> list[Any]:
    from dash import dcc, html

    return [
        html.Div(className="controls", children=[
            html.Label("searches"),
            dcc.Dropdown(id="compute-searches", multi=True, style={"minWidth": "30em"}),
        ]),
        html.P("Best reward against the trial-seconds spent (cached and rejected trials cost nothing): searches with "
               "and without early stopping compare here on equal compute.", className="note"),
        html.Div(id="compute-note"),
        dcc.Graph(id="compute-graph", config={"displaylogo": False}),
    ]


def _decisions_tab() -> list[Any]:
    from dash import dcc, html

    return [
        html.Div(className="controls", children=[
            html.Label("axes, one per block:"),
            dcc.RadioItems(id="axes", value="level", inline=True, options=[
                {"label": " level ", "value": "level"}, {"label": " block type ", "value": "block_fn"},
                {"label": " parents ", "value": "parents"},
                {"label": " or one per decision (the controller's choices)", "value": "decisions"}]),
        ]),
        html.P("The completed trials' architectures, coloured by reward; drag along an axis to select.",
               className="note"),
        html.Div(id="decisions-note"),
        dcc.Graph(id="parallel-graph", config={"displaylogo": False}),
        html.H3("Which decisions matter", style={"fontSize": "1em"}),
        html.Div(id="importance-note", className="note"),
        dcc.Graph(id="importance-graph", config={"displaylogo": False}),
    ]


def _calibration_tab() -> list[Any]:
    from dash import dcc, html

    return [
        html.Div(className="controls", children=[
            html.Label("study"),
            dcc.Dropdown(id="study", clearable=False, style={"minWidth": "22em"}),
        ]),
        html.Div(id="calibration-content"),
    ]


# --------------------------------------------------------------------------------------------------- callbacks
def _callbacks(app: Any, data: DashboardData, default_search: str | None, pace: _Pace) -> None:
    """Registers every callback of the page; each read is timed by `pace` and its failure shown, not raised."""

    def guarded(what: str, fn: Callable[[], Any], on_error: Callable[[str], Any]) -> Any:
        return pace.timed(what, lambda: _guarded(what, fn, on_error))

    _navigation_callbacks(app, data, default_search, pace, guarded)
    _table_callbacks(app, data, guarded)
    _plot_callbacks(app, data, guarded)
    _page_callbacks(app, data, guarded)


def _navigation_callbacks(app: Any, data: DashboardData, default_search: str | None, pace: _Pace,
                          guarded: Callable[..., Any]) -> None:
    """The refresh's pace, which page shows, the search chosen, the tab a click opens."""
    import dash
    from dash import Input, Output, State, html, no_update

    @app.callback(Output("tick", "interval"), Input("tick", "n_intervals"), State("tick", "interval"))
    def interval(_n: Any, current: int | None) -> Any:
        ms = pace.interval_ms()
        return ms if ms != current else no_update

    @app.callback(Output("main-page", "style"), Output("trial-page", "style"), Input("url", "pathname"))
    def route(pathname: str | None) -> tuple[dict, dict]:
        if pathname and _TRIAL_PATH.match(pathname):
            return {"display": "none"}, {}
        return {}, {"display": "none"}

    @app.callback(Output("search", "options"), Output("search", "value"), Output("compute-searches", "options"),
                  Output("study", "options"), Output("health", "children"), Input("tick", "n_intervals"),
                  Input("searches-table", "cellClicked"), State("search", "value"))
    def header(_n: Any, cell: Any, current: str | None) -> tuple:
        def read() -> tuple:
            names = data.search_names()
            studies = data.calibration_names()
            value = current
            if dash.ctx.triggered_id == "searches-table" and cell and cell.get("rowId") is not None:
                value = cell["rowId"]  # each row's id is its search's name
            if value not in names:
                value = default_search if default_search in names else (names[-1] if names else None)
            now = datetime.datetime.now().strftime("%H:%M:%S")
            health = f"{len(names)} searches; read at {now}"
            return names, value, names, studies, health

        return guarded("cannot read the database", read,
                       lambda msg: (no_update, no_update, no_update, no_update, html.Span(msg, className="error")))

    @app.callback(Output("tabs", "value"), Input("searches-table", "cellClicked"), prevent_initial_call=True)
    def to_trials(cell: Any) -> str:
        return "trials" if cell else no_update

    @app.callback(Output("url", "pathname"), Input("trials-table", "cellClicked"),
                  Input("curves-graph", "clickData"), prevent_initial_call=True)
    def open_trial(cell: Any, click: Any) -> Any:
        if dash.ctx.triggered_id == "trials-table" and cell and cell.get("rowId") is not None:
            return f"/trial/{int(cell['rowId'])}"
        if dash.ctx.triggered_id == "curves-graph" and click:
            point = (click.get("points") or [{}])[0]
            if point.get("customdata") is not None:
                return f"/trial/{int(point['customdata'])}"
        return no_update


def _table_callbacks(app: Any, data: DashboardData, guarded: Callable[..., Any]) -> None:
    """The searches' and the trials' tables, sent again only when they changed."""
    from dash import Input, Output, State, html, no_update

    @app.callback(Output("searches-table", "rowData"), Output("searches-note", "children"),
                  Input("tick", "n_intervals"), Input("tabs", "value"))
    def searches(_n: Any, tab: str) -> tuple:
        if tab != "searches":
            return no_update, no_update

        def read() -> tuple:
            rows = data.overview()
            for r in rows:
                r["trial_time"] = fmt_seconds(r.pop("trial_s"))
                r["id"] = r["name"]
            return rows, None if rows else html.P("no searches in this database yet", className="note")

        return guarded("cannot read the searches", read, lambda msg: (no_update, _error(msg)))

    @app.callback(Output("trials-table", "rowData"), Output("trials-note", "children"), Output("trials-sig", "data"),
                  Input("tick", "n_intervals"), Input("tabs", "value"), Input("search", "value"),
                  State("trials-sig", "data"))
    def trials(_n: Any, tab: str, search: str | None, sent: str | None) -> tuple:
        if tab != "trials" or not search:
            return no_update, no_update, no_update

        def read() -> tuple:
            rows = data.trial_rows(search)
            sig = _signature(search, rows)
            if sig == sent:  # a tick with nothing new: 800 KB for 3,000 trials not sent again
                return no_update, no_update, no_update
            counts: dict[str, int] = {}
            for r in rows:
                counts[r["status"]] = counts.get(r["status"], 0) + 1
                r["id"] = str(r["id"])
            note = html.P(f"{len(rows)} trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
                          className="note", id="trials-count")
            return rows, note, sig

        return guarded(f"cannot read the trials of {search!r}", read, lambda msg: (no_update, _error(msg), None))


def _plot_callbacks(app: Any, data: DashboardData, guarded: Callable[..., Any]) -> None:
    """The curves, best reward against trial-seconds, the decisions' parallel coordinates and importance."""
    from dash import Input, Output, State, html, no_update

    from nas.dashboard import figures

    @app.callback(Output("curves-graph", "figure"), Output("curves-note", "children"), Output("curves-sig", "data"),
                  Input("tick", "n_intervals"), Input("tabs", "value"), Input("search", "value"),
                  Input("curve-metric", "value"), State("curves-sig", "data"))
    def curves(_n: Any, tab: str, search: str | None, metric: str, sent: str | None) -> tuple:
        if tab != "curves" or not search:
            return no_update, no_update, no_update

        def read() -> tuple:
            d = data.curves(search)
            sig = _signature(search, metric, d["trials"], d["rungs"])
            if sig == sent:
                return no_update, no_update, no_update
            rungs = d["rungs"]
            note = None
            if rungs:
                note = html.P("rungs: " + "; ".join(
                    f"{r['step']} ({r['rule']}" + (f", AP cut {r['cut']:.4f})" if r["cut"] is not None else ")")
                    for r in rungs) + ("" if not rungs or rungs[0]["exact"] else
                                       " - the scheduler compares rewards (ap-flops): the cut is the AP of the trial "
                                       "at the cut"), className="note")
            return figures.curves(d, metric), note, sig

        return guarded(f"cannot read the curves of {search!r}", read,
                       lambda msg: (figures.message(msg), _error(msg), None))

    @app.callback(Output("compute-searches", "value"), Input("search", "value"), State("compute-searches", "value"))
    def compute_default(search: str | None, chosen: Any) -> Any:
        return [search] if search and not chosen else no_update

    @app.callback(Output("compute-graph", "figure"), Output("compute-note", "children"),
                  Input("tick", "n_intervals"), Input("tabs", "value"), Input("compute-searches", "value"))
    def compute(_n: Any, tab: str, names: Any) -> tuple:
        if tab != "compute" or not names:
            return no_update, no_update
        return guarded("cannot read the trials", lambda: (figures.best_vs_compute(data.compute(names)), None),
                       lambda msg: (figures.message(msg), _error(msg)))

    @app.callback(Output("parallel-graph", "figure"), Output("decisions-note", "children"),
                  Output("importance-graph", "figure"), Output("importance-note", "children"),
                  Input("tick", "n_intervals"), Input("tabs", "value"), Input("search", "value"),
                  Input("axes", "value"))
    def decisions(_n: Any, tab: str, search: str | None, axes: str) -> tuple:
        if tab != "decisions" or not search:
            return no_update, no_update, no_update, no_update

        def read() -> tuple:
            d = data.decisions(search)
            try:
                imp = data.importance(search)
            except ValueError as e:
                return figures.parallel(d, axes), None, figures.message(str(e), height=200), None
            fit = (f"the forest explains {imp['oob_r2']:.0%} of the reward's variance out of bag"
                   if imp["oob_r2"] > 0 else "the forest explains none of the reward out of bag: the ranking below "
                   "is noise until more trials complete")
            note = (f"Impurity importance of each decision in a random forest (scikit-learn) fitted from the "
                    f"decisions to the reward of {imp['n']} completed trials (bars: the spread over its trees; it "
                    f"favours decisions with many choices); {fit}.")
            return figures.parallel(d, axes), None, figures.importance(imp), note

        return guarded(f"cannot read the decisions of {search!r}", read,
                       lambda msg: (figures.message(msg), _error(msg), figures.message(msg, height=200), None))


def _page_callbacks(app: Any, data: DashboardData, guarded: Callable[..., Any]) -> None:
    """The calibration studies and a trial's own page."""
    from dash import Input, Output, State, html, no_update

    @app.callback(Output("study", "value"), Input("study", "options"), State("study", "value"))
    def study_default(options: Any, chosen: str | None) -> Any:
        names = [o if isinstance(o, str) else o.get("value") for o in (options or [])]
        return names[-1] if names and chosen not in names else no_update

    @app.callback(Output("calibration-content", "children"), Input("tick", "n_intervals"), Input("tabs", "value"),
                  Input("study", "value"))
    def calibration(_n: Any, tab: str, study: str | None) -> Any:
        if tab != "calibration":
            return no_update
        if not study:
            return html.P("no calibration study in this database (spinenas calibrate makes one)", className="note")
        return guarded(f"cannot read study {study!r}", lambda: _calibration_view(study, data.calibration(study)),
                       _error)

    @app.callback(Output("trial-content", "children"), Output("trial-sig", "data"), Input("url", "pathname"),
                  Input("tick", "n_intervals"), State("trial-sig", "data"))
    def trial_page(pathname: str | None, _n: Any, sent: str | None) -> Any:
        m = _TRIAL_PATH.match(pathname or "")
        if not m:
            return no_update, no_update
        trial_id = int(m.group(1))

        def read() -> tuple:
            d = data.trial(trial_id)
            t = d["trial"]
            # Drawn again only when the trial changed (an open details element, a zoomed curve stay as they are).
            sig = _signature(trial_id, t.status, t.finished_at, t.attempt, d["curve"], d["log"])
            if sig == sent:
                return no_update, no_update
            return _trial_view(data, d), sig

        return guarded(f"cannot read trial {trial_id}", read, lambda msg: (_error(msg), None))


# --------------------------------------------------------------------------------------------------- views
def _kv(pairs: list[tuple[str, Any]]) -> Any:
    from dash import html

    return html.Table(className="kv", children=[html.Tr([html.Td(k), html.Td(v)]) for k, v in pairs])


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    if isinstance(x, float):
        return f"{x:.{digits}f}" if abs(x) < 1e5 else f"{x:.4g}"
    return str(x)


def _trial_view(data: DashboardData, d: dict[str, Any]) -> Any:
    """A trial's page: what it is, its diagram, its curve, its metrics, the commands, its log and its config."""
    from dash import dcc, html

    from nas.dashboard import figures

    t, arch = d["trial"], d["arch"]
    facts = [("status", html.B(t.status, style={"color": STATUS_COLOURS.get(t.status, "#222")})),
             ("reward", _num(t.reward)), ("AP", _num(t.ap)), ("FLOPs", fmt_count(arch.flops)),
             ("params", fmt_count(arch.params)), ("seconds", _num(t.wall_s, 1)), ("worker", t.host or "-"),
             ("attempt", t.attempt), ("precision", t.precision or "-"),
             ("started (UTC)", t.started_at.strftime("%Y-%m-%d %H:%M:%S") if t.started_at else "-"),
             ("finished (UTC)", t.finished_at.strftime("%Y-%m-%d %H:%M:%S") if t.finished_at else "-"),
             ("fingerprint", t.fingerprint or "-"), ("key", arch.key), ("spec", arch.summary)]
    if t.cached_from is not None:
        facts.append(("reused from", dcc.Link(f"trial id {t.cached_from}", href=f"/trial/{t.cached_from}")))
    metrics = [(k, _num(v)) for k, v in sorted(t.metrics.items())]
    if d["log"] is not None:
        log = html.Pre("\n".join(d["log"]) or f"(no line of trial {t.index} in {d['log_path']})")
    elif d["log_path"]:
        log = html.P(f"no log at {d['log_path']}", className="note")
    else:
        log = html.P("its log: start the dashboard with --runs DIR, the folder holding NAME/search.log",
                     className="note")
    return html.Div([
        html.H2(f"trial {t.index} of {t.search}", style={"fontSize": "1.15em"}),
        html.Div(className="cols", children=[
            html.Div([_kv(facts)]),
            html.Div([html.H3("metrics", style={"fontSize": "1em", "marginTop": 0}),
                      _kv(metrics) if metrics else html.P("none", className="note")]),
        ]),
        html.Pre(t.error, className="error") if t.error else None,
        html.H3("architecture (as spinenas show --image draws it)", style={"fontSize": "1em"}),
        html.Img(src="data:image/png;base64," + data.diagram(arch.spec_json, arch.key), className="diagram",
                 alt=f"diagram of {arch.key}"),
        html.H3("curve", style={"fontSize": "1em"}),
        dcc.Graph(figure=figures.trial_curve(d["curve"]), config={"displaylogo": False}),
        html.H3("export it to Model Garden, or draw it", style={"fontSize": "1em"}),
        html.Pre(f"{d['export']}\n{d['show']}"),
        html.H3("its log (last lines)", style={"fontSize": "1em"}),
        log,
        html.Details([html.Summary("the search's config"), html.Pre(d["config"] or "(none stored)")]),
    ])


def _calibration_view(name: str, d: dict[str, Any]) -> Any:
    """A study: its verdict, tau per rung (or per variant) with intervals, seed CV, and the variants' cost table."""
    from dash import dcc, html

    from nas.dashboard import figures

    t = d["trainings"]
    parts: list[Any] = [
        html.P(f"{name} ({d['status']}): {t['done']} of {t['total']} trainings, {t['failed']} failed; reference "
               f"{d['reference']['steps']} steps", className="note"),
        html.P(["verdict: ", html.B(d["verdict"]["text"])]),
        dcc.Graph(figure=figures.calibration_tau(name, d), config={"displaylogo": False}),
    ]

    def tau(a: dict[str, Any]) -> str:
        if a["tau"] is None:
            return "-"
        low, high = a.get("tau_low"), a.get("tau_high")
        return f"{a['tau']:.2f} [{_num(low, 2)}, {_num(high, 2)}]"

    if "variants" in d:
        rows = [{"variant": v["name"], "rung": r["step"], "s/trial": _num(r["seconds_per_trial"], 0),
                 "n": r["all"]["n"], "tau (all) [90%]": tau(r["all"]), "tau (random)": tau(r["random"]),
                 "seed CV": _num(r.get("cv_max"), 2), "overrides": " ".join(v["overrides"]) or "(as stored)"}
                for v in d["variants"] for r in v["rungs"]]
        title = "cost against tau, per variant and rung"
    else:
        rows = [{"rung": r["step"], "s/trial": _num(r["seconds_per_trial"], 0), "n": r["all"]["n"],
                 "tau (all) [90%]": tau(r["all"]), "p": _num(r["all"].get("tau_p"), 3),
                 "tau (random)": tau(r["random"])} for r in d["rungs"]]
        title = "rank agreement per rung"
    parts += [html.H3(title, style={"fontSize": "1em"}), _plain_table(rows)]
    noise = ([(v["name"], c) for v in d["variants"] for c in v["variance"]["candidates"]] if "variants" in d
             else [("", c) for c in d["variance"]["candidates"]])
    if noise:
        parts += [html.H3("seed noise (CV only where the mean AP is >= 0.05)", style={"fontSize": "1em"}),
                  _plain_table([{**({"variant": v} if "variants" in d else {}), "candidate": c["name"],
                                 "APs": " ".join(f"{x:.3f}" for x in c["aps"]), "mean": _num(c["mean"]),
                                 "std": _num(c["std"]), "CV": _num(c["cv"], 2)} for v, c in noise])]
    return html.Div(parts)


def _plain_table(rows: list[dict[str, Any]]) -> Any:
    """A small static table (a study's figures: a few rows each)."""
    from dash import html

    if not rows:
        return html.P("none yet", className="note")
    header = list(rows[0])
    return html.Table(className="kv figures", children=[
        html.Thead(html.Tr([html.Th(h) for h in header])),
        html.Tbody([html.Tr([html.Td(r.get(h, "")) for h in header]) for r in rows]),
    ])


__all__ = ["PAGE_SIZE", "REFRESH_S", "build_app"]
