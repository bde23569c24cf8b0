"""TensorBoard scalars from the search driver without importing TensorFlow.

Uses TensorBoard's own record writer and event protos (the `tensorboard` package) on a plain file: the driver
stays light, and `tensorboard --logdir RUN_DIR` reads the file as usual.

The events are a view of what the results database holds, so a write that fails (a full disk, a read-only or
failing file system) never stops a search: the first failure logs one warning, and from then on no writer of this
process writes to that file system.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from typing import Any

logger = logging.getLogger(__name__)

# File systems (st_dev) where a TensorBoard write failed in this process -> the first error. A full or failing file
# system fails every later write as well, so its writers write nothing more: one warning, not one per scalar.
_FAILED: dict[int | None, str] = {}


def _device(path: str) -> int | None:
    """The file system of `path`, or of its nearest existing parent (the folder may not exist yet)."""
    p = os.path.abspath(path)
    while True:
        try:
            return os.stat(p).st_dev
        except OSError:
            parent = os.path.dirname(p)
            if parent == p:
                return None
            p = parent


class ScalarWriter:
    """Appends scalar summaries to an events file in `logdir`.

    A write that fails with an OSError is logged once and turns this writer, and every writer of this process on
    the same file system, into one that writes nothing (`enabled` False); none of its methods raises an OSError.

    Args:
      logdir: folder of the events file (created if missing).
    """

    def __init__(self, logdir: str) -> None:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_pb2 = event_pb2
        self._device = _device(logdir)
        self._fh: Any = None
        self._writer: Any = None
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(logdir, name)
        if self._device in _FAILED:
            return
        try:
            os.makedirs(logdir, exist_ok=True)
            self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in close()
            self._writer = RecordWriter(self._fh)
            self._writer.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        except OSError as e:
            self._fail(e)

    @property
    def enabled(self) -> bool:
        """Does this writer still write (no write on its file system has failed)?"""
        return self._writer is not None and self._device not in _FAILED

    def _fail(self, e: OSError | None) -> None:
        if e is not None and self._device not in _FAILED:
            _FAILED[self._device] = str(e)
            logger.warning("cannot write TensorBoard events to %s (%s): no more TensorBoard events on that file "
                           "system; the search goes on, its results are in the database", self.path, e)
        self._writer = None
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError):  # a full disk fails the close's flush too; the file is closed anyway
                fh.close()

    def _live(self) -> bool:
        if self._writer is None:
            return False
        if self._device in _FAILED:  # another writer on this file system failed: close, quietly
            self._fail(None)
            return False
        return True

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Writes one scalar."""
        if not self._live():
            return
        from tensorboard.compat.proto import summary_pb2

        event = self._event_pb2.Event(
            wall_time=time.time(),
            step=int(step),
            summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))]),
        )
        try:
            self._writer.write(event.SerializeToString())
        except OSError as e:
            self._fail(e)

    def flush(self) -> None:
        """Makes what was written visible to TensorBoard."""
        if not self._live():
            return
        try:
            self._writer.flush()
        except OSError as e:
            self._fail(e)

    def close(self) -> None:
        """Flushes and closes the file."""
        if self._fh is None:
            return
        try:
            self._writer.flush()
        except OSError as e:
            self._fail(e)
            return
        fh, self._fh, self._writer = self._fh, None, None
        try:
            fh.close()
        except OSError as e:
            self._fail(e)
