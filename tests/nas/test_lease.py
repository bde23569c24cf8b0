"""One driver per search: the lease taken atomically, refused while its holder lives, taken over when it died."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from nas.engine.lease import LeaseHeldError, LeaseKeeper, LeaseLostError, holder_gone, lease_state
from results_db import ResultStore
from tests.nas.helpers import finished, spinenas


def _store(url):
    store = ResultStore(url)
    store.create_search("s", config="{}")
    return store


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'r.db'}"
        return
    pg = os.environ.get("SPINENAS_TEST_PG_URL")
    if not pg:
        pytest.skip("set SPINENAS_TEST_PG_URL=postgresql://... to run")
    from tests.results_db.test_postgres import _drop_everything

    _drop_everything()  # the test database empty before and after, as the store's PostgreSQL tests leave it
    yield pg
    _drop_everything()


def test_a_lease_is_refused_while_its_holder_lives_and_taken_when_it_expired(url):
    store = _store(url)
    a, b = LeaseKeeper(store, "s"), LeaseKeeper(store, "s")
    b.pid = a.pid  # both "alive": this test process
    assert a.take() is None
    with pytest.raises(LeaseHeldError, match=r"being run by another driver, pid \d+ on host .* \(heartbeat 0 s ago\)"):
        b.take()
    assert a.take() is None  # its own lease, again
    # Expired: a heartbeat older than the timeout belongs to a dead driver.
    b.timeout_s = -1.0
    note = b.take()
    assert note.startswith("took over the lease of pid") and note.endswith("its heartbeat expired")
    assert not store.renew_lease("s", a.owner) and store.renew_lease("s", b.owner)
    b.stop()
    assert store.open_search("s").lease_owner is None
    store.close()


def test_a_lease_whose_holder_process_is_gone_on_this_host_is_taken_at_once(url):
    store = _store(url)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    a = LeaseKeeper(store, "s")
    a.pid = dead.pid  # a driver that has exited (kill -9)
    assert a.take() is None
    assert holder_gone(store.open_search("s"))
    b = LeaseKeeper(store, "s")
    assert b.take().endswith("its process is gone")
    store.close()


def test_a_lease_renewed_while_another_driver_judged_it_expired_stays_with_its_holder(url):
    store = _store(url)
    a, b = LeaseKeeper(store, "s"), LeaseKeeper(store, "s")
    a.take()
    b.timeout_s = -1.0  # b judges a's heartbeat expired ...
    record = store.open_search("s")
    time.sleep(0.01)
    assert store.renew_lease("s", a.owner)  # ... but a renews before b writes
    original = store.open_search
    store.open_search = lambda name: record  # b's read, from before the renewal
    try:
        with pytest.raises(LeaseHeldError):
            b.take()
    finally:
        store.open_search = original
    assert store.open_search("s").lease_owner == a.owner and store.renew_lease("s", a.owner)
    store.close()


def test_a_driver_whose_lease_was_taken_over_stops_without_writing_more(tmp_path):
    from nas.engine.driver import SearchDriver
    from tests.nas.helpers import cfg_of

    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    driver = SearchDriver(cfg_of(trials=50, workers=1, duration=0.05), name="s", store=store,
                          run_dir=str(tmp_path / "runs"), out=lambda _: None)
    driver.start()
    keeper = LeaseKeeper(store, "s")
    keeper.take()
    driver.lease = keeper
    keeper.lost = True  # as the heartbeat thread finds when another driver took the lease
    with pytest.raises(LeaseLostError):
        driver.run()
    assert store.open_search("s").status == "running"  # the new holder's to set, not this driver's
    store.close()


def _take_over(url, name="s"):
    """A second driver's store that has taken the lease over (as after the first one's heartbeat expired)."""
    other = ResultStore(url)
    keeper = LeaseKeeper(other, name, timeout_s=-1.0)
    keeper.take()
    other.fence(name, keeper.owner)
    return other, keeper


def test_every_write_of_a_fenced_out_store_stores_nothing(url):
    import numpy as np

    from results_db.records import NewTrial
    from search_space import SearchSpace, seeds

    space = SearchSpace("r0-sp53")
    other = space.decode(space.random(np.random.default_rng(0)))
    store = _store(url)
    a = LeaseKeeper(store, "s")
    a.take()
    store.fence("s", a.owner)
    key = store.register_arch(seeds.SPINENET_49)
    [t0, t1] = store.add_trials("s", [NewTrial(key, (1, 2)), NewTrial(key, (1, 2))], status="running")
    store.save_checkpoint("s", 1, {"x": 1})
    b_store, b = _take_over(url)
    before = (store.trials("s"), store.load_checkpoint("s"), store.open_search("s").status)
    writes = {
        "add_trials": lambda: store.add_trials("s", [NewTrial(key, (1, 2))]),
        "start_trial": lambda: store.start_trial(t0),
        "finish_trial": lambda: store.finish_trial(t0, status="completed", reward=0.5, reports=[(1, {"ap": 0.5})]),
        "add_reports": lambda: store.add_reports(t1, [(5, {"train_loss": 1.0})]),
        "save_checkpoint": lambda: store.save_checkpoint("s", 2, {"x": 2}),
        "set_search_status": lambda: store.set_search_status("s", "stopped"),
        "retry_failed": lambda: store.retry_failed("s"),
        "register_arch": lambda: store.register_arch(other),
    }
    for what, write in writes.items():
        with pytest.raises(LeaseLostError, match="another driver took over search 's'"):
            write()
            pytest.fail(f"{what} wrote")
    assert (store.trials("s"), store.load_checkpoint("s"), store.open_search("s").status) == before
    assert store.reports([t1])[t1] == []
    # The rightful holder writes as usual, and its lease operations were never fenced.
    b_store.finish_trial(t0, status="completed", reward=0.5)
    assert b_store.renew_lease("s", b.owner) and not store.renew_lease("s", a.owner)
    a.stop()  # gives up nothing: the lease is b's
    assert b_store.open_search("s").lease_owner == b.owner
    b_store.close()
    store.close()


def test_a_heartbeat_from_the_future_does_not_lock_the_search_out(url):
    store = _store(url)
    a = LeaseKeeper(store, "s")
    a.take()
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    later = now + datetime.timedelta(days=1)  # written by a clock set back since (or a host a day ahead)
    with store._write_conn(fenced=False) as conn:
        from results_db.store import _SEARCHES

        conn.execute(_SEARCHES.update().values(lease_heartbeat=later))
    record = store.open_search("s")
    assert lease_state(record, now) == "interrupted"
    from nas.engine.lease import describe_holder

    assert "s in the future" in describe_holder(record, now)
    b = LeaseKeeper(store, "s")
    b.pid = a.pid  # the same live process: only the heartbeat's age can free the lease
    note = b.take()
    assert note.startswith("took over the lease of pid") and "in the future" in note
    # A heartbeat a little ahead (clocks of two hosts a few seconds apart) is a live driver's.
    with store._write_conn(fenced=False) as conn:
        conn.execute(_SEARCHES.update().values(lease_heartbeat=now + datetime.timedelta(seconds=5)))
    assert lease_state(store.open_search("s"), now) == "running"
    store.close()


def test_a_paused_driver_taken_over_stops_and_the_new_holder_finishes_the_search(tmp_path):
    """The split brain of a SIGSTOP past the lease, in one process: driver A is taken over between two of its
    writes (as when it was paused that long); its next write stores nothing and it stops; B resumes and finishes
    every trial once."""
    from nas.engine.driver import SearchDriver
    from tests.nas.helpers import cfg_of

    url = f"sqlite:///{tmp_path / 'r.db'}"
    cfg = cfg_of(trials=12, workers=2)
    store = ResultStore(url)
    a = SearchDriver(cfg, name="s", store=store, run_dir=str(tmp_path / "runs"), out=lambda _: None)
    a.prepare()
    keeper = LeaseKeeper(store, "s")
    keeper.take()
    store.fence("s", keeper.owner)
    a.lease = keeper
    a.start_runner()
    taken: list = []
    finish = a._finish

    def finish_then_pause(item, result, host):
        finish(item, result, host)
        if a.finished == 4 and not taken:  # A "pauses" here; B takes the search over meanwhile
            taken.append(_take_over(url))

    a._finish = finish_then_pause
    with pytest.raises(LeaseLostError):
        a.run()
    b_store, b_keeper = taken[0]
    stored = {t.index: t.status for t in b_store.trials("s")}
    assert sum(st == "completed" for st in stored.values()) == 4  # nothing of A after the takeover
    b = SearchDriver(cfg, name="s", store=b_store, run_dir=str(tmp_path / "runs"), resume=True, out=lambda _: None)
    b.lease = b_keeper
    b.start()
    outcome = b.run()
    trials = b_store.trials("s")
    assert outcome.trials == 12 and not outcome.interrupted
    assert sorted(t.index for t in trials) == list(range(len(trials)))
    assert sum(t.status in ("completed", "cached") for t in trials) == 12
    assert b_store.open_search("s").status == "completed"
    b_store.close()
    store.close()


def test_two_drivers_racing_for_a_free_lease_one_wins(url):
    store = _store(url)
    store.close()
    results: list[str] = []
    barrier = threading.Barrier(2)

    def race(i):
        s = ResultStore(url)
        keeper = LeaseKeeper(s, "s")
        barrier.wait()
        try:
            keeper.take()
            results.append("took")
        except LeaseHeldError:
            results.append("refused")
        s.close()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["refused", "took"]


def test_the_heartbeat_renews_while_the_loop_turns_and_stops_when_it_is_stuck(tmp_path):
    store = _store(f"sqlite:///{tmp_path / 'r.db'}")
    stuck = [0.0]
    keeper = LeaseKeeper(store, "s", alive=lambda: stuck[0], timeout_s=0.5, renew_s=0.05)
    keeper.take()
    taken = store.open_search("s").lease_heartbeat
    keeper.start()
    time.sleep(0.3)
    fresh = store.open_search("s").lease_heartbeat
    assert fresh > taken  # renewed
    stuck[0] = 10.0  # the loop stopped turning
    time.sleep(0.3)
    later = store.open_search("s").lease_heartbeat
    time.sleep(0.3)
    assert store.open_search("s").lease_heartbeat == later  # no more beats once the loop is stuck
    keeper.stop()
    store.close()


def test_searches_shows_a_running_search_whose_lease_expired_as_interrupted(tmp_path):
    store = _store(f"sqlite:///{tmp_path / 'r.db'}")
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert lease_state(store.open_search("s"), now) == "interrupted"  # running, no driver
    keeper = LeaseKeeper(store, "s")
    keeper.take()
    assert lease_state(store.open_search("s"), now) == "running"
    assert lease_state(store.open_search("s"), now + datetime.timedelta(seconds=120)) == "interrupted"
    store.set_search_status("s", "completed")
    assert lease_state(store.open_search("s"), now) == "completed"
    # A driver of this host killed a moment ago: its heartbeat is fresh, its process gone.
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    store.create_search("k", config="{}")
    killed = LeaseKeeper(store, "k")
    killed.pid = gone
    killed.take()
    assert lease_state(store.open_search("k"), now) == "interrupted"
    store.close()


@pytest.mark.slow
def test_a_second_driver_for_a_running_search_is_refused_in_one_line(tmp_path):
    db = tmp_path / "r.db"
    args = ["search", "--runner", "local", "--evaluator", "surrogate", "--controller", "random", "--trials", "8",
            "--surrogate-duration", "1", "--cpus-per-trial", "1", "--db", str(db), "--top", "0"]
    first = subprocess.Popen([sys.executable, "-m", "nas.cli", *args, "--name", "x"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.time() + 60
        while finished(str(db), "x") < 1 and time.time() < deadline:
            time.sleep(0.1)
        second = spinenas("search", "--resume", "x", "--db", str(db), "--runner", "local", cwd=tmp_path)
        assert second.returncode == 2, second.stdout + second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "is being run by another driver, pid" in lines[0], second.stderr
        # kill -9 of the first, then at once a resume: its process is gone, so its lease is taken over.
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        listed = spinenas("searches", "--db", str(db), cwd=tmp_path)
        assert "interrupted (driver last seen" in listed.stdout  # its heartbeat is fresh, its process gone
        resumed = spinenas("search", "--resume", "x", "--db", str(db), "--runner", "local", "--top", "0",
                           cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert "took over the lease of pid" in resumed.stdout and "its process is gone" in resumed.stdout
    finally:
        if first.poll() is None:
            first.kill()
    store = ResultStore(f"sqlite:///{db}")
    assert sum(t.status == "completed" for t in store.trials("x")) == 8
    assert store.open_search("x").lease_owner is None  # released at the end


def test_a_heartbeat_late_after_the_process_was_paused_renews_or_finds_the_lease_lost_and_warns_not(tmp_path,
                                                                                                    caplog):
    """After SIGSTOP and SIGCONT the heartbeat thread woke late with the loop's last turn long ago, and warned that
    the loop was stuck (a second line beside the command's own 'another driver took over'). A late beat is a paused
    process: it renews, or finds the lease taken over."""
    import logging

    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = _store(url)
    keeper = LeaseKeeper(store, "s", alive=lambda: 10.0, timeout_s=0.5, renew_s=0.05)  # 10 s since the loop turned
    keeper.take()

    class PausedOnce(threading.Event):
        def wait(self, timeout=None):
            if not hasattr(self, "paused"):
                self.paused = True
                time.sleep(1.0)  # the whole process stopped for twice the lease; another driver took it meanwhile
                other = ResultStore(url)
                assert other.take_lease("s", owner="other", host="h", pid=1, timeout_s=0.0)[0]
                other.close()
                return False
            return super().wait(timeout)

    keeper._stop = PausedOnce()
    with caplog.at_level(logging.INFO, logger="nas.engine.lease"):
        keeper.start()
        keeper._thread.join(timeout=10)
    assert keeper.lost
    assert "has not turned" not in caplog.text and "taken over by another driver" in caplog.text
    store.close()


def test_a_resume_that_finds_the_write_lock_held_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    """A driver paused inside a commit holds the write lock: a resume waited the busy timeout, then failed with
    SQLAlchemy's ~60-line 'database is locked' traceback and left its run folder (runs/, runs/NAME/search.log)."""
    import sqlite3

    import results_db.store
    from nas import cli
    from tests.nas.helpers import cfg_of, run_search

    store, _, _ = run_search(tmp_path, cfg_of(trials=2), name="x")
    store.close()
    monkeypatch.setattr(results_db.store, "BUSY_TIMEOUT_S", 0.1)
    holder = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        code = cli.main(["search", "--resume", "x", "--trials", "4", "--db", str(tmp_path / "r.db"), "--run-dir",
                         str(tmp_path / "out" / "x"), "--top", "0", "--plain"])
    finally:
        holder.close()
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "(database is locked: a writer paused or hung" in err, err
    assert not (tmp_path / "out").exists()
