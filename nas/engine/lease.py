"""One driver per search: a lease on the search row, renewed by a heartbeat while the driver's loop is alive.

A driver takes the lease (atomically: `ResultStore.take_lease`) before it touches a search it resumes, and right
after it creates a new one. A second driver for the same search is refused in one line naming the holder and the
age of its heartbeat. The lease is taken over when its heartbeat is older than `LEASE_TIMEOUT_S`, or at once when
its holder ran on this host and its process is gone (a `kill -9` then an immediate `--resume`); a heartbeat further
than the timeout in the future (a clock set back) counts as expired too. A thread renews
it every `RENEW_S` while the driver's loop turns; a loop stuck for longer than the timeout stops renewing, so the
lease expires and another driver may take over. The driver's store is fenced by its lease (`ResultStore.fence`):
a driver that was paused past its lease (SIGSTOP, a suspended VM) and taken over finds out at its next write,
which stores nothing, and stops. `spinenas searches` shows a running search whose lease expired as `interrupted`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

# LeaseLostError: another driver took this driver's lease over, so this one stops at once, writing nothing more.
# Raised by the loop when the heartbeat finds the lease gone, and by every write of a fenced store.
from results_db.errors import LeaseLostError

logger = logging.getLogger(__name__)

#: A lease whose heartbeat is older than this belongs to a driver that died (or whose loop is stuck).
LEASE_TIMEOUT_S = 60.0
#: How often the heartbeat is renewed.
RENEW_S = 5.0


class LeaseHeldError(RuntimeError):
    """Another live driver holds the search."""



def host_identity() -> str:
    """This host's name and PID namespace: containers that share a hostname (host networking) do not share
    process ids, so 'its process is gone' is only judged in the namespace the holder ran in."""
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()} {ns}"


def _process_gone(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def holder_gone(record: Any) -> bool:
    """True when the lease's holder ran on this host and its process no longer exists."""
    return record.lease_host == host_identity() and _process_gone(record.lease_pid)


def describe_holder(record: Any, now: Any) -> str:
    """'pid 123 on host h (heartbeat 4 s ago)'."""
    age = record.lease_age_s(now)
    if age is None:
        beat = ""
    elif age < 0:
        beat = f" (heartbeat {-age:.0f} s in the future: a clock was set back or runs ahead)"
    else:
        beat = f" (heartbeat {age:.0f} s ago)"
    return f"pid {record.lease_pid} on host {record.lease_host}{beat}"


class LeaseKeeper:
    """Holds a search's lease for this driver: takes it, renews it from a thread, gives it up.

    Args:
      store: the open `ResultStore`.
      name: the search.
      alive: seconds since the driver's loop last turned (the heartbeat stops when it exceeds the timeout).
      timeout_s, renew_s: see `LEASE_TIMEOUT_S`, `RENEW_S`.
    """

    def __init__(self, store: Any, name: str, *, alive: Callable[[], float] = lambda: 0.0,
                 timeout_s: float = LEASE_TIMEOUT_S, renew_s: float = RENEW_S) -> None:
        self.store = store
        self.name = name
        self.alive = alive
        self.timeout_s = timeout_s
        self.renew_s = renew_s
        self.owner = uuid.uuid4().hex
        self.host = host_identity()
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def take(self) -> str | None:
        """Takes the lease.

        Returns:
          A line saying whose lease was taken over, or None when it was free.

        Raises:
          LeaseHeldError: another live driver holds it (the message names it).
        """
        from results_db.models import utcnow

        taken, before = self.store.take_lease(self.name, owner=self.owner, host=self.host, pid=self.pid,
                                              timeout_s=self.timeout_s, may_take=holder_gone)
        now = utcnow()
        if not taken:
            raise LeaseHeldError(
                f"search {self.name!r} is being run by another driver, {describe_holder(before, now)}; wait for it "
                f"to finish or stop it (its lease expires {self.timeout_s:.0f} s after its last heartbeat)"
            )
        if before.lease_owner is not None and before.lease_owner != self.owner:
            why = "its process is gone" if holder_gone(before) else "its heartbeat expired"
            return f"took over the lease of {describe_holder(before, now)}: {why}"
        return None

    def start(self) -> None:
        """Renews the lease from a thread until `stop`."""
        self._thread = threading.Thread(target=self._run, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.renew_s):
            # A beat far later than asked for: the whole process was paused (SIGSTOP, a suspended VM), not its loop
            # stuck while it ran. The renewal finds out whether another driver took the lease meanwhile; a warning
            # that the loop is stuck would be wrong (the loop turns again now).
            now = time.monotonic()
            paused = now - last > self.renew_s + self.timeout_s / 2
            last = now
            stuck = self.alive()
            if stuck > self.timeout_s and not paused:
                logger.warning("the driver's loop has not turned for %.0f s: the lease of %r is left to expire",
                               stuck, self.name)
                continue
            try:
                if not self.store.renew_lease(self.name, self.owner):
                    self.lost = True  # the loop stops at its next turn and the command says so in one line
                    logger.info("the lease of %r was taken over by another driver", self.name)
                    return
            except Exception:  # noqa: BLE001 - a busy database: try again at the next beat
                logger.warning("could not renew the lease of %r", self.name, exc_info=True)

    def stop(self) -> None:
        """Stops renewing and gives the lease up."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.store.release_lease(self.name, self.owner)
        except Exception:  # noqa: BLE001 - the lease then expires on its own
            logger.warning("could not release the lease of %r", self.name, exc_info=True)


def lease_state(record: Any, now: Any, timeout_s: float = LEASE_TIMEOUT_S) -> str:
    """A search's status as `spinenas searches` shows it: 'running' only while a driver's heartbeat is fresh and,
    for a driver of this host, its process lives; else 'interrupted' (derived when read, never stored)."""
    if record.status != "running":
        return record.status
    if not record.lease_fresh(now, timeout_s) or holder_gone(record):  # holder_gone: a driver of this host that died
        return "interrupted"
    return "running"


def last_seen(record: Any) -> Any:
    """When a search's driver was last seen: its lease's heartbeat, else the search's last update."""
    return record.lease_heartbeat or record.updated_at


__all__ = ["LEASE_TIMEOUT_S", "LeaseHeldError", "LeaseKeeper", "LeaseLostError", "RENEW_S", "describe_holder", "holder_gone",
           "last_seen", "lease_state"]
