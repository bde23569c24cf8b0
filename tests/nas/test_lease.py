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

from nas.lease import LeaseHeldError, LeaseKeeper, holder_gone, lease_state
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
    from nas.loop import SearchDriver
    from tests.nas.helpers import cfg_of

    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    driver = SearchDriver(cfg_of(trials=50, workers=1, duration=0.05), name="s", store=store,
                          run_dir=str(tmp_path / "runs"), out=lambda _: None)
    driver.start()
    keeper = LeaseKeeper(store, "s")
    keeper.take()
    driver.lease = keeper
    keeper.lost = True  # as the heartbeat thread finds when another driver took the lease
    outcome = driver.run()
    assert outcome.interrupted and outcome.trials < 50
    assert store.open_search("s").status == "running"  # the new holder's to set, not this driver's
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
