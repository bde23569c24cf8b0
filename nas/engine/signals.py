"""SIGTERM handled like Ctrl-C: the job stops cleanly (nothing lost; resume later) and exits with code 143.

`install` puts our handlers in place when a command starts. Libraries replace a SIGTERM handler as they please
(`ray.init()` installs one that calls `sys.exit(15)`, which would leave a search 'running' with no message), so
the code that starts them calls `reassert` afterwards, and the trial loop calls it at every turn (one
`signal.getsignal` when nothing changed).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

logger = logging.getLogger(__name__)

#: The exit code of a command stopped by SIGTERM (128 + 15, as a shell reports it).
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so a job stops as on Ctrl-C."""


_state: dict[str, Any] = {"seen": False, "at": 0.0, "installed": False}


#: Seconds after a SIGTERM in which another one is ignored: the first one's stop (trials stopped, the search row
#: written, Ray's processes ended) is not cut short by a sender that repeats itself.
REPEAT_GRACE_S = 10.0


def _on_sigterm(signum: int, frame: object) -> None:
    now = time.monotonic()
    if _state["seen"] and now - _state["at"] < REPEAT_GRACE_S:
        return
    _state["seen"], _state["at"] = True, now
    raise Terminated()


def install() -> dict[int, Any]:
    """Our handlers: SIGTERM raises `Terminated`; SIGINT raises KeyboardInterrupt even when the shell that started a
    background job set it to be ignored.

    Returns:
      The handlers they replaced (for `restore`); empty when not on the main thread (an embedding host), where the
      signals stay as they are.
    """
    _state["seen"] = False
    try:
        previous = {sig: signal.signal(sig, handler) for sig, handler in (
            (signal.SIGTERM, _on_sigterm), (signal.SIGINT, signal.default_int_handler))}
    except ValueError:
        return {}
    _state["installed"] = True
    return previous


def restore(previous: dict[int, Any]) -> None:
    """Puts back the handlers `install` replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    if previous:
        _state["installed"] = False


def reassert() -> None:
    """Our SIGTERM handler again, if `install` put it in place and something has replaced it since."""
    if not _state["installed"] or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        logger.debug("SIGTERM handler replaced (by %r): ours again", signal.getsignal(signal.SIGTERM))
        signal.signal(signal.SIGTERM, _on_sigterm)


def terminated() -> bool:
    """Whether SIGTERM arrived since `install`."""
    return bool(_state["seen"])


__all__ = ["EXIT_TERMINATED", "Terminated", "install", "reassert", "restore", "terminated"]
