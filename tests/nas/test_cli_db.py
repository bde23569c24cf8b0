"""`spinenas searches / top / show / report`: output, machine-readable formats, and one-line errors on bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli.diagram import draw_arch, text_diagram
from search_space import SPINENET_49
from tests.nas.helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]


def _files(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


# --------------------------------------------------------------------------------------------------- output
def test_searches(capsys, db):
    path, facts = db
    code, out, err = run_cli(capsys, "searches", "--db", path)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["name", "controller", "family", "status"]
    ppo = next(ln for ln in lines if ln.startswith("ppo-1"))
    n = facts["n"]
    # 'running' in the table, but no driver holds it (no lease): it was interrupted.
    assert ppo.split()[1:3] == ["ppo", "spinenet49"] and "interrupted (driver last seen" in ppo
    # trials, done, failed, cached, rejected, pruned, open
    assert ppo.split("ago)")[1].split()[:7] == [str(n + 1), str(n - 2), "1", "1", "0", "0", "1"]
    code, out, _ = run_cli(capsys, "searches", "--db", path, "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["random-1"]["status"] == "completed" and rows["random-1"]["best_reward"] == 0.9
    assert rows["ppo-1"]["counts"]["failed"] == 1 and rows["ppo-1"]["status"] == "interrupted"
    # The compute its trials spent: the failed one's 12 s and the completed ones' 600 + i s; none recorded steps.
    assert rows["random-1"]["trial_s"] == 1234.5 and rows["random-1"]["steps"] == 0
    assert rows["ppo-1"]["trial_s"] == pytest.approx(12.0 + sum(600.0 + i for i in range(n - 1) if i != 3))
    assert lines[0].split()[-3:] == ["trial", "time", "steps"] and ppo.split()[-2:] == ["3h44m", "0"]


def test_top_ranks_within_the_newest_searchs_fingerprint_by_default(capsys, db):
    path, facts = db
    # 'random-1' (newer) has no fingerprint (written before schema 0002, never upgraded): 'ppo-1''s is the newest.
    code, out, _ = run_cli(capsys, "top", "--db", path, "-k", "3")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("ranking fingerprint fp-ppo") and "1 other fingerprint" in lines[0]
    assert lines[1].split()[:6] == ["rank", "key", "reward", "AP", "FLOPs", "params"]
    assert facts["key49"] not in out and "random-1" not in out
    code, out, _ = run_cli(capsys, "top", "--db", path, "-k", "3", "--json")
    assert {r["fingerprint"] for r in json.loads(out)} == {"fp-ppo"}
    code, out, _ = run_cli(capsys, "top", "--db", path, "-k", "3", "--search", "random-1", "--json")
    assert [r["key"] for r in json.loads(out)] == [facts["key49"]]  # no fingerprint to rank within: its own trials


def test_top_table_json_csv(capsys, db):
    path, facts = db
    code, out, _ = run_cli(capsys, "top", "--db", path, "-k", "3", "--all-fingerprints")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("ranking results of every fingerprint")
    assert lines[1].split()[:6] == ["rank", "key", "reward", "AP", "FLOPs", "params"]
    assert lines[3].split()[:3] == ["1", facts["key49"], "0.9000"]
    assert SPINENET_49.summary() in lines[3] and "random-1" in lines[3]  # several searches: a search column
    code, out, _ = run_cli(capsys, "top", "--db", path, "-k", "3", "--json", "--all-fingerprints")
    rows = json.loads(out)
    assert [r["rank"] for r in rows] == [1, 2, 3] and rows[0]["key"] == facts["key49"]
    assert rows[0]["flops"] == int(2.5e9) and rows[0]["wall_s"] == 1234.5 and rows[0]["ap"] == 0.9
    code, out, _ = run_cli(capsys, "top", "--db", path, "-k", "3", "--csv", "--all-fingerprints")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert [r["key"] for r in parsed] == [r["key"] for r in rows]
    code, out, _ = run_cli(capsys, "top", "--db", path, "--search", "ppo-1", "--max-flops", "1e9", "--json")
    rows = json.loads(out)
    assert rows and all(r["search"] == "ppo-1" and r["flops"] <= 1e9 for r in rows)
    code, out, _ = run_cli(capsys, "top", "--db", path, "--max-flops", "1", "--json", "--all-fingerprints")
    assert json.loads(out) == []


def test_show(capsys, db, tmp_path):
    path, facts = db
    key = facts["key49"]
    code, out, err = run_cli(capsys, "show", key[:7], "--db", path)
    assert code == 0, err
    assert out.startswith(f"arch {key}")
    assert "(2, 'bottleneck', (0, 1), False)," in out  # Model Garden tuples
    assert "random-1" in out and "completed" in out and "0.9000" in out  # its trial
    assert text_diagram(SPINENET_49.canonical()) in out
    code, out, _ = run_cli(capsys, "show", key, "--db", path, "--json")
    shown = json.loads(out)
    assert shown["key"] == key and shown["trials"][0]["reward"] == 0.9
    tuples = [(lvl, fn, tuple(offsets), out) for lvl, fn, offsets, out in shown["model_garden"]]
    assert tuples == SPINENET_49.canonical().to_model_garden()


@pytest.mark.slow
def test_show_image(capsys, db, tmp_path):
    path, facts = db
    key = facts["key49"]
    for ext in ("png", "svg"):
        image = tmp_path / f"arch.{ext}"
        code, out, err = run_cli(capsys, "show", key, "--db", path, "--image", str(image))
        assert code == 0 and image.stat().st_size > 1000, err
    assert (tmp_path / "arch.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "arch.svg").read_bytes()[:2000]


@pytest.mark.slow
def test_report_is_self_contained(capsys, db, tmp_path):
    path, _ = db
    out_dir = tmp_path / "report"
    code, out, err = run_cli(capsys, "report", "--db", path, "--search", "ppo-1", "--search", "random-1",
                         "--out", str(out_dir))
    assert code == 0, err
    page = (out_dir / "index.html").read_text()
    assert _files(out_dir) == {"index.html"}
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 6
    assert "Best reward against compute" in page
    # Nothing to fetch: no remote or relative resources at all.
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "ppo-1" in page and "random-1" in page and "Pareto" in page


def test_the_compute_curve_counts_every_trained_second_and_ranks_measured_rewards_only():
    from types import SimpleNamespace

    from nas.cli.report import compute_curve

    def trial(order, status, reward, wall_s):
        return SimpleNamespace(finish_order=order, status=status, reward=reward, wall_s=wall_s)

    trials = [trial(3, "pruned", 0.9, 50.0),  # the controller's stand-in reward: its seconds count, not its reward
              trial(1, "failed", None, 20.0), trial(2, "completed", 0.3, 200.0), trial(4, "cached", 0.4, 0.0),
              trial(5, "rejected", 0.0, None), trial(None, "running", None, None), trial(6, "completed", 0.35, 210.0)]
    assert compute_curve(trials) == [(20.0, None), (220.0, 0.3), (270.0, 0.3), (270.0, 0.4), (270.0, 0.4),
                                     (480.0, 0.4)]


# --------------------------------------------------------------------------------------------------- bad input
READ_COMMANDS = [
    ("searches",),
    ("top",),
    ("top", "--json"),
    ("show", "abc"),
    ("report", "--search", "x", "--out", "OUT"),
]


def _argv(command, db, out_dir):
    return [a.replace("OUT", str(out_dir)) for a in command] + ["--db", db]


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: " ".join(c))
def test_missing_database_is_one_line_and_creates_nothing(capsys, tmp_path, command):
    missing = tmp_path / "nowhere" / "results.db"
    code, out, err = run_cli(capsys, *_argv(command, str(missing), tmp_path / "out"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("spinenas: error: no database at ")
    assert _files(tmp_path) == set()


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: " ".join(c))
def test_default_location_is_not_created(capsys, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPINENAS_DB", raising=False)
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in command]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and "runs/spinenas.db" in err
    assert _files(tmp_path) == set()
    monkeypatch.setenv("SPINENAS_DB", str(tmp_path / "env.db"))
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "env.db" in err and _files(tmp_path) == set()


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: " ".join(c))
def test_corrupt_file_is_one_line_and_left_unchanged(capsys, tmp_path, command):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database\n" * 200)
    code, _, err = run_cli(capsys, *_argv(command, str(bad), tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1
    assert "not a database" in err
    assert bad.read_bytes() == b"this is not a database\n" * 200 and _files(tmp_path) == {"bad.db"}


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: " ".join(c))
def test_unreachable_url_is_one_line(capsys, tmp_path, command):
    # Port 1 on localhost: refused at once (or the PostgreSQL driver is missing): one line either way.
    code, _, err = run_cli(capsys, *_argv(command, "postgresql://nobody@127.0.0.1:1/none", tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("spinenas: error: cannot open database")
    assert _files(tmp_path) == set()


@pytest.mark.parametrize("command", [("db", "check"), ("db", "upgrade"), *READ_COMMANDS], ids=lambda c: " ".join(c))
def test_a_directory_is_one_line_the_same_for_every_command(capsys, tmp_path, command):
    """A directory as --db is the same one line for every command (`db check` does not call it DAMAGED)."""
    code, out, err = run_cli(capsys, *_argv(command, str(tmp_path), tmp_path / "out"))
    assert (code, out) == (2, "")
    assert err == f"spinenas: error: {tmp_path} is not a database file (it is a directory or a device)\n"
    assert _files(tmp_path) == set()


@pytest.mark.parametrize("db", ["sqlite://", ":memory:"])
@pytest.mark.parametrize("command", [
    ("db", "upgrade"), ("db", "check"),
    ("search", "--runner", "local", "--evaluator", "surrogate", "--controller", "random", "--trials", "1"),
], ids=lambda c: " ".join(c[:2]))
def test_an_in_memory_database_is_refused_by_commands_that_write(capsys, tmp_path, monkeypatch, command, db):
    """An upgrade of it would vanish, a check of it has nothing to check; ':memory:' was a file called that."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, *command, "--db", db)
    assert (code, out) == (2, "")
    assert err == (f"spinenas: error: {db!r} is an in-memory database: it holds nothing before a command and keeps "
                   "nothing after it, so results written there would vanish; expected a file path or a database URL "
                   "such as sqlite:///runs/spinenas.db\n")
    assert _files(tmp_path) == set()


@pytest.mark.parametrize("command", [("db", "upgrade"), ("db", "check"), *READ_COMMANDS], ids=lambda c: " ".join(c))
def test_a_sqlite_uri_as_a_path_is_one_line_and_creates_nothing(capsys, tmp_path, monkeypatch, command):
    """`file:x.db?mode=rw` as a path is refused in one line and makes no file literally named 'file:x.db'."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *_argv(command, "file:x.db?mode=rw", tmp_path / "out"))
    assert code == 2
    assert err == ("spinenas: error: expected a database URL (sqlite:///path.db, postgresql://user@host/db) or a "
                   "plain file path, got the SQLite URI 'file:x.db?mode=rw': give its path (x.db) or sqlite:///x.db\n")
    assert _files(tmp_path) == set()


def test_unknown_search_lists_the_known_ones(capsys, db, tmp_path):
    path, _ = db
    for argv in (["top", "--search", "nope"], ["report", "--search", "nope", "--out", str(tmp_path / "r")]):
        code, _, err = run_cli(capsys, *argv, "--db", path)
        assert code == 2 and err.count("\n") == 1
        assert "unknown search 'nope'" in err and "ppo-1" in err and "random-1" in err
    assert _files(tmp_path) == set()


def test_unknown_and_ambiguous_keys(capsys, db, tmp_path):
    path, facts = db
    code, _, err = run_cli(capsys, "show", "fffffffffffffffff", "--db", path)
    assert code == 2 and err.count("\n") == 1 and "no key starts with it" in err
    firsts = [k[0] for k in facts["keys"]]
    prefix = next(c for c in firsts if firsts.count(c) > 1)
    code, _, err = run_cli(capsys, "show", prefix, "--db", path, "--image", str(tmp_path / "x.png"))
    assert code == 2 and err.count("\n") == 1 and "is ambiguous" in err
    for key in facts["keys"]:
        if key.startswith(prefix):
            assert key in err
    assert _files(tmp_path) == set()
    code, _, err = run_cli(capsys, "show", "xyz", "--db", path)
    assert code == 2 and "hex digits" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["top", "-k", "0"], "-k must be at least 1"),
        (["top", "--max-flops", "abc"], "expected a number"),
        (["top", "--json", "--csv"], "not allowed with argument"),
        (["show", "abc", "--image", "x.jpg"], "--image must end in .png or .svg"),
        (["report", "--search", "a", "--out", "OUT", "--top", "0"], "--top must be at least 1"),
    ],
)
def test_bad_arguments_are_one_line(capsys, db, tmp_path, argv, message):
    path, _ = db
    code, _, err = run_cli(capsys, *[a.replace("OUT", str(tmp_path / "o")) for a in argv], "--db", path)
    assert code == 2 and err.count("\n") == 1 and message in err


def test_the_database_is_not_changed_by_reads(capsys, db, tmp_path):
    path, _ = db
    before = Path(path).read_bytes()
    for argv in (["searches"], ["top"], ["show", db[1]["key49"]]):
        assert run_cli(capsys, *argv, "--db", path)[0] == 0
    assert Path(path).read_bytes() == before


# --------------------------------------------------------------------------------------------------- speed
def test_top_answers_without_sqlalchemy(db):
    """The read path of a SQLite file never imports SQLAlchemy (its import alone is ~0.3 s here)."""
    path, _ = db
    code = (
        "import io, contextlib, sys\nfrom nas import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert cli.main(['top', '--db', {path!r}]) == 0\n"
        f"    assert cli.main(['searches', '--db', {path!r}]) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'numpy', 'matplotlib')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------------- diagram
@pytest.mark.slow
def test_draw_arch_png_svg_and_text(tmp_path):
    assert draw_arch(SPINENET_49, tmp_path / "a.png", title="SpineNet-49") == str(tmp_path / "a.png")
    draw_arch(SPINENET_49, tmp_path / "a.svg")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    svg = (tmp_path / "a.svg").read_text()
    assert "<svg" in svg and "P7" in svg and "dead block" in svg
    with pytest.raises(ValueError, match=r"must end in \.png or \.svg"):
        draw_arch(SPINENET_49, tmp_path / "a.pdf")
    text = text_diagram(SPINENET_49).splitlines()
    assert text[1].startswith("L7") and text[-1].startswith("L2")
    # SpineNet-49's trailing level-2 block feeds no endpoint: drawn dead (lowercase); five outputs are marked.
    assert text[-1].rstrip().endswith("b") and sum(ln.count("*") for ln in text) == 5


def test_db_upgrade_whose_disk_fills_after_the_migrations_is_one_line_and_a_rerun_finishes(capsys, tmp_path,
                                                                                           monkeypatch):
    """The upgrade commits, then the fingerprints' backfill writes: a full disk there is one line, not a traceback."""
    from results_db import DatabaseFullError, ResultStore
    from tests.results_db.fixtures import make_0001_db

    path = tmp_path / "old.db"
    make_0001_db(f"sqlite:///{path}")

    def full(self):
        raise DatabaseFullError(f"cannot write database {self.url}: its file system is full")

    monkeypatch.setattr(ResultStore, "list_searches", full)
    code, out, err = run_cli(capsys, "db", "upgrade", "--db", str(path))
    assert (code, out) == (2, "schema version 0001 -> 0006\n")
    assert err == f"spinenas: error: cannot write database sqlite:///{path}: its file system is full\n"
    monkeypatch.undo()
    code, out, _ = run_cli(capsys, "db", "upgrade", "--db", str(path))
    assert code == 0 and out.startswith("already at schema version 0006\n")


def test_a_database_that_fails_under_a_running_command_is_one_line_and_exit_1(capsys, monkeypatch):
    """A fault the user did not cause (a disk that filled up while a search wrote) is no traceback."""
    from nas.cli.commands import db as db_commands
    from results_db.errors import DatabaseFullError

    def full(args):
        raise DatabaseFullError("cannot write the database r.db: its file system is full")

    monkeypatch.setattr(db_commands, "_cmd_searches", full)
    code, out, err = run_cli(capsys, "searches")
    assert (code, out) == (1, "")
    assert err == "spinenas: error: cannot write the database r.db: its file system is full\n"


# --------------------------------------------------------------------------------------------------- newcomers
def test_searches_shows_a_searchs_trials_of_its_budget_until_it_is_done(capsys, tmp_path):
    from results_db import NewTrial, ResultStore
    from search_space import SPINENET_49

    path = str(tmp_path / "r.db")
    with ResultStore(path) as store:
        for name in ("open", "done"):
            store.create_search(name, config="search:\n  trials: 10\n", seed=0, controller="random",
                                family="spinenet49")
            key = store.register_arch(SPINENET_49)
            store.add_trials(name, [NewTrial(key, [0])] * 3, status="queued")
        store.set_search_status("done", "stopped")
    code, out, _ = run_cli(capsys, "searches", "--db", path)
    rows = {ln.split()[0]: ln for ln in out.splitlines()[2:]}
    assert code == 0 and " 3/10 " in rows["open"] and " 3/10 " not in rows["done"]
    code, out, _ = run_cli(capsys, "searches", "--db", path, "--json")
    assert [r["budget"] for r in json.loads(out)] == [10, 10]


def test_calibration_show_names_the_studies_and_the_committed_one(capsys, db):
    path, _ = db
    code, _, err = run_cli(capsys, "calibration", "show", "ppo-1", "--db", path)
    assert code == 2 and err.count("\n") == 1
    assert "'ppo-1' is a search, not a calibration study: it holds no calibration study; the demo proxy's study is " \
           "in another database: give --db " in err and err.rstrip().endswith("calibration-demo.db")
    code, _, err = run_cli(capsys, "calibration", "show", "nope", "--db", path)
    assert code == 2 and "no calibration study 'nope' in " in err and "give --db" in err


def test_a_search_of_the_demo_proxy_hears_of_the_committed_calibration_study(db):
    from nas.cli.commands.common import load_config
    from nas.cli.commands.search import _calibration_note
    from nas.engine.fingerprint import fingerprint
    from results_db.reader import ResultReader

    with ResultReader(db[0]) as reader:
        note = _calibration_note(reader, fingerprint(load_config("demo", [])), "demo")
        other = _calibration_note(reader, "0" * 16, "demo")
    assert "no calibration of this proxy in this database, but " in note
    # The demo's 400 steps are the steps400 variant of the demo study's proxy (issue 31), scored against demo-cal.
    assert "calibration-variants.db holds one ('spinenas calibration show demo-variants --db " in note
    assert "'demo-variants' of this proxy: tau 0.78" in note and "rung 400 is the cheapest proxy that ranks" in note
    assert other.startswith("  warning: no calibration of this proxy in the database")


def test_shows_table_and_its_picture_number_the_blocks_alike():
    """The picture's columns carry the offsets the table's rows and the blocks' inputs use (stem candidates first),
    not the blocks' own indices."""
    from matplotlib.figure import Figure

    from nas.cli.diagram import draw_arch_on

    ax = Figure().subplots()
    draw_arch_on(ax, SPINENET_49)
    n = SPINENET_49.num_stem_candidates + len(SPINENET_49.blocks)
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(j) for j in range(n)]
    assert text_diagram(SPINENET_49).splitlines()[0].split() == [str(j) for j in range(2)] + ["|"] + \
        [str(j) for j in range(2, n)]


def test_top_of_a_search_that_only_reused_results_says_so(capsys, tmp_path):
    from results_db import NewTrial, ResultStore

    path = str(tmp_path / "r.db")
    with ResultStore(path) as store:
        key = store.register_arch(SPINENET_49)
        for name in ("first", "again"):
            store.create_search(name, config="", seed=0, controller="random", family="spinenet49", fingerprint="fp")
        [trained] = store.add_trials("first", [NewTrial(key, [0])], status="running", fingerprint="fp")
        store.finish_trial(trained, status="completed", reward=0.3, metrics={"ap": 0.3}, wall_s=1.0)
        [reused] = store.add_trials("again", [NewTrial(key, [0])], status="running", fingerprint="fp")
        store.finish_trial(reused, status="cached", reward=0.3, metrics={"ap": 0.3}, cached_from=trained)
    code, out, _ = run_cli(capsys, "top", "--db", path, "--search", "again")
    assert code == 0 and out == ("search 'again' trained no architecture: its 1 cached trial reused results measured "
                                 "by other searches, which `spinenas top` (without --search) ranks under the searches "
                                 "that trained them\n")
    code, out, _ = run_cli(capsys, "top", "--db", path)
    assert code == 0 and key in out and "first" not in out.splitlines()[0]


def test_the_report_of_a_pruning_search_draws_its_rungs_and_a_studys_plots_its_proxy_trainings_only(tmp_path):
    from nas.cli.report import collect, proxy_trials
    from results_db.reader import ResultReader
    from tests.nas.helpers import cfg_of, run_search

    store, _, _ = run_search(tmp_path, cfg_of(trials=8, workers=1, asha={"rungs": (100,), "eta": 2,
                                                                        "min_results": 2}), tensorboard=False)
    store.close()
    with ResultReader(str(tmp_path / "r.db")) as reader:
        data = collect(reader, ["s"], top_k=3)
    [rung] = data.rungs["s"]
    trained = [t for t in data.trials["s"] if t.status in ("completed", "pruned")]
    assert rung["step"] == 100 and rung["n"] == len(trained) == 8 and rung["cut"] is not None
    assert all(t.id in data.curves for t in trained)  # the pruned trials' curves are drawn too
    # A study's rewards are its proxy trainings' (the study's fingerprint), not its reference trainings'.
    with ResultReader(str(ROOT / "scripts/bench/results/calibration-demo.db")) as reader:
        [study] = [s for s in reader.search_summaries() if s.search.name == "demo-cal"]
        trials = reader.trials("demo-cal")
    kept = proxy_trials(study, trials)
    assert 0 < len(kept) < len(trials) and {t.fingerprint for t in kept} == {study.search.fingerprint}
