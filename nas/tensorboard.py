"""TensorBoard scalars from the search driver without importing TensorFlow.

Uses TensorBoard's own record writer and event protos (the `tensorboard` package) on a plain file: the driver
stays light, and `tensorboard --logdir RUN_DIR` reads the file as usual.
"""

from __future__ import annotations

import os
import socket
import time


class ScalarWriter:
    """Appends scalar summaries to an events file in `logdir`.

    Args:
      logdir: folder of the events file (created if missing).
    """

    def __init__(self, logdir: str) -> None:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(logdir, name)
        self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._writer = RecordWriter(self._fh)
        self._event_pb2 = event_pb2
        self._writer.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Writes one scalar."""
        from tensorboard.compat.proto import summary_pb2

        event = self._event_pb2.Event(
            wall_time=time.time(),
            step=int(step),
            summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))]),
        )
        self._writer.write(event.SerializeToString())

    def flush(self) -> None:
        """Makes what was written visible to TensorBoard."""
        self._writer.flush()

    def close(self) -> None:
        """Flushes and closes the file."""
        if not self._fh.closed:
            self._writer.flush()
            self._fh.close()
