"""TensorBoard scalars and HParams sessions from the search driver without importing TensorFlow.

Uses TensorBoard's own record writer and event protos (the `tensorboard` package) on a plain file: the driver
stays light, and `tensorboard --logdir RUN_DIR` reads the file as usual. Each trial is a run of its own
(`trial_run_name`: its index and key) holding its curve and, once it has ended, an HParams session (its decisions,
key and status as hyper-parameters, its reward and AP as metrics), so TensorBoard's HParams tab lists every trial.

The events are a view of what the results database holds, so a write that fails (a full disk, a read-only or
failing file system) never stops a search: the first failure logs one warning, and from then on no writer of this
process writes to that file system.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

# File systems (st_dev) where a TensorBoard write failed in this process -> the first error. A full or failing file
# system fails every later write as well, so its writers write nothing more: one warning, not one per scalar.
_FAILED: dict[int | None, str] = {}

# Writers made in one second by one process each get their own file (TensorBoard's own writer numbers them too).
_FILE_NUMBER = itertools.count()

#: A trial's status (`results_db.status.TrialStatus` values) -> the HParams session status TensorBoard filters by
#: (it knows success, failure, running and unknown). A pruned trial ended as its scheduler meant, with valid metrics
#: at its rung: a success there; its `status` hyper-parameter says 'pruned'.
SESSION_STATUS = {"completed": "STATUS_SUCCESS", "cached": "STATUS_SUCCESS", "pruned": "STATUS_SUCCESS",
                  "failed": "STATUS_FAILURE", "rejected": "STATUS_FAILURE"}

#: The tag prefix of a session's metrics (the HParams tab's columns: `hparams/reward`, `hparams/ap`).
METRIC_PREFIX = "hparams/"


def trial_run_name(index: int, key: str) -> str:
    """A trial's TensorBoard run (folder under ``tensorboard/trials``): its index, then its arch key.

    Example::

      trial_run_name(8, '1d6b8727da56915a')  # 'trial_00008_1d6b8727da56915a'
    """
    return f"trial_{index:05d}_{key}"


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
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{next(_FILE_NUMBER)}"
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
        from tensorboard.compat.proto import summary_pb2

        self._write(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))]), step)

    def session(self, hparams: Mapping[str, bool | int | float | str], metrics: Mapping[str, float | None], *,
                status: str, start_time_s: float, group: str = "", step: int = 0) -> None:
        """Writes this run's HParams session: its hyper-parameters, its metrics (as ``hparams/NAME`` scalars at
        `step`), and its end with `status`.

        The protos are those `tensorboard.plugins.hparams.summary_v2.hparams_pb` writes, built here without its
        TensorFlow import. No experiment summary is written: TensorBoard infers the hyper-parameters and their
        domains from the sessions, and the metrics from the sessions' scalars.

        Args:
          hparams: name -> value (bool, number or string; other values are written as text).
          metrics: name -> value; None and non-finite values are left out.
          status: a trial status ('completed', 'pruned', ...): `SESSION_STATUS` maps it.
          group: the session group (''; TensorBoard makes each run a group of its own).
          start_time_s: when the trial started (seconds since the epoch).
          step: the step the metrics are written at (the trial's last).
        """
        import math

        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        start = plugin_data_pb2.SessionStartInfo(group_name=group, start_time_secs=float(start_time_s))
        for name, value in sorted(hparams.items()):
            if isinstance(value, bool):
                start.hparams[name].bool_value = value
            elif isinstance(value, (int, float)):
                start.hparams[name].number_value = float(value)
            else:
                start.hparams[name].string_value = str(value)
        end = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(SESSION_STATUS.get(status,
                                                                                            "STATUS_UNKNOWN")),
                                             end_time_secs=time.time())

        def plugin_summary(tag: str, data: Any) -> Any:
            return summary_pb2.Summary(value=[summary_pb2.Summary.Value(
                tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)])

        self._write(plugin_summary(metadata.SESSION_START_INFO_TAG,
                                   plugin_data_pb2.HParamsPluginData(session_start_info=start)), 0)
        for name, value in sorted(metrics.items()):
            if value is not None and math.isfinite(value):
                self.scalar(METRIC_PREFIX + name, float(value), step)
        self._write(plugin_summary(metadata.SESSION_END_INFO_TAG,
                                   plugin_data_pb2.HParamsPluginData(session_end_info=end)), step)

    def _write(self, summary: Any, step: int) -> None:
        if not self._live():
            return
        event = self._event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
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
