"""The search console: live lines per running trial on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from nas.cli.console import LiveView, PlainView, TrialProgress, duration


def _progress(now: float) -> TrialProgress:
    p = TrialProgress(index=3, key="ae60a66622d69645", started=now - 100, total_steps=800)
    p.update(50, {"loss": 1.6, "learning_rate": 0.002}, now - 80)
    p.update(450, {"loss": 0.68, "ap": 0.154}, now)
    return p


def test_a_running_trials_line_has_its_step_loss_ap_and_eta():
    now = 1000.0
    p = _progress(now)
    assert p.eta_s(now) == 80 / 400 * 350  # the step rate since the first report (after the trace)
    text = p.text(now)
    assert text.startswith("trial 3 ae60a666") and "step 450/800" in text and "loss 0.6800" in text
    assert "AP 0.1540" in text and "ETA 70 s" in text
    fresh = TrialProgress(index=4, key="f" * 16, started=now - 5, total_steps=800)
    assert "starting (5 s)" in fresh.text(now) and fresh.eta_s(now) is None
    assert (duration(45), duration(600), duration(7200)) == ("45 s", "10 min", "2.0 h")


def test_the_plain_view_prints_finished_trials_and_a_heartbeat_at_most_once_a_minute(monkeypatch):
    lines = []
    view = PlainView(lines.append)
    clock = [1000.0]
    monkeypatch.setattr("nas.cli.console.time.time", lambda: clock[0])
    view._last = clock[0]
    view.line("[1/6] trial 0 done")
    view.refresh([_progress(clock[0])], "done 1")
    assert lines == ["[1/6] trial 0 done"]  # no heartbeat yet
    clock[0] += 61
    view.refresh([_progress(clock[0])], "done 1")
    assert len(lines) == 2 and lines[1].startswith("  ... running: trial 3") and lines[1].endswith("| done 1")


def test_the_live_view_draws_the_running_trials_and_keeps_finished_lines():
    from rich.console import Console

    out = io.StringIO()
    view = LiveView(Console(file=out, force_terminal=True, width=150))
    view.refresh([_progress(1000.0)], "done 1 failed 0 cached 0 running 1 | best 0.3282")
    view.line("[1/6] trial 0 ae60a66622d69645 reward 0.3282 215 s")
    view.close()
    text = out.getvalue()
    assert "[1/6] trial 0 ae60a66622d69645 reward 0.3282" in text
    assert "trial 3 ae60a666" in text and "best 0.3282" in text


def test_a_finished_trials_line_keeps_its_summary_at_the_bottom_of_a_terminal_and_after_it_in_plain_lines():
    from rich.console import Console

    out = io.StringIO()
    view = LiveView(Console(file=out, force_terminal=True, width=80))
    view.line("[1/6] trial 0 ae60a66622d69645 reward 0.3282 215 s", status="done 1 failed 0 | best 0.3282")
    view.close()
    scrolled = [ln for ln in out.getvalue().splitlines() if "[1/6]" in ln]
    assert scrolled and all("best 0.3282" not in ln for ln in scrolled)  # fits 80 columns; the summary stays below
    assert "best 0.3282" in out.getvalue()
    lines: list = []
    PlainView(lines.append).line("[1/6] trial 0 done", status="done 1")
    assert lines == ["[1/6] trial 0 done | done 1"]
