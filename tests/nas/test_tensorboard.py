"""TensorBoard events never stop a search: a write that fails (a full disk) is one warning, and no writer of the
process writes to that file system again."""

from __future__ import annotations

import errno
import logging
import os

import pytest

import nas.engine.tensorboard
from nas.engine.tensorboard import ScalarWriter
from tests.nas.helpers import cfg_of, run_search


@pytest.fixture(autouse=True)
def _no_failed_file_systems(monkeypatch):
    # The record of failed file systems is the process's: each test starts and ends with its own.
    monkeypatch.setattr(nas.engine.tensorboard, "_FAILED", {})


def _full_after(monkeypatch, writes: int) -> list[int]:
    """Every file write after the first `writes` fails with ENOSPC, as on a full disk (file objects are C types, so
    the record writer's `write` is where the disk is simulated). Returns the count of attempts, in a list."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    attempts = [0]
    original = RecordWriter.write

    def write(self, data):
        attempts[0] += 1
        if attempts[0] > writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data)

    monkeypatch.setattr(RecordWriter, "write", write)
    return attempts


def test_a_failed_write_is_one_warning_and_every_writer_on_that_file_system_stops(tmp_path, monkeypatch, caplog):
    attempts = _full_after(monkeypatch, 3)
    first = ScalarWriter(str(tmp_path / "tb"))
    other = ScalarWriter(str(tmp_path / "tb" / "trials" / "trial_00000"))
    with caplog.at_level(logging.WARNING, logger="nas.engine.tensorboard"):
        for step in range(5):
            first.scalar("search/reward", 0.5, step)
            other.scalar("curve/loss", 1.0, step)  # the first one fails: two headers and a scalar fitted
        first.flush()
        later = ScalarWriter(str(tmp_path / "tb" / "trials" / "trial_00001"))
        later.scalar("curve/loss", 1.0, 0)
        for w in (first, other, later):
            w.close()
            w.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot write TensorBoard events to {other.path} ([Errno 28] No space left on device): no more TensorBoard "
        "events on that file system; the search goes on, its results are in the database"
    ]
    assert attempts[0] == 4  # two file headers, one scalar, the failed one: nothing tried after it
    assert not (first.enabled or other.enabled or later.enabled)
    assert not os.path.exists(tmp_path / "tb" / "trials" / "trial_00001")  # a writer made after: no folder, no file


def test_a_writer_that_cannot_make_its_folder_is_a_warning(tmp_path, caplog):
    (tmp_path / "file").write_text("")
    with caplog.at_level(logging.WARNING, logger="nas.engine.tensorboard"):
        w = ScalarWriter(str(tmp_path / "file" / "tb"))  # a file where the folder would go: NotADirectoryError
        w.scalar("a", 1.0, 0)
        w.flush()
        w.close()
    assert not w.enabled and len(caplog.records) == 1 and "cannot write TensorBoard events" in caplog.text


def test_a_search_whose_tensorboard_disk_fills_finishes_every_trial(tmp_path, monkeypatch, caplog):
    """ENOSPC from the TensorBoard writer does not stop the search: every trial finishes, none is left running."""
    _full_after(monkeypatch, 6)
    with caplog.at_level(logging.WARNING, logger="nas.engine.tensorboard"):
        store, outcome, _ = run_search(tmp_path, cfg_of(trials=6, workers=2))
    assert outcome.trials == 6
    assert [t.status for t in store.trials("s")] == ["completed"] * 6
    assert store.open_search("s").status == "completed"
    store.close()
    assert len(caplog.records) == 1 and "No space left on device" in caplog.text


def _events(run_dir) -> list:
    """Every event of a TensorBoard run, read with TensorBoard's own event reader (on its TF-free record reader)."""
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.compat import tensorflow_stub

    out = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(event_file_loader, "tf", tensorflow_stub)  # the reader would import TensorFlow (~10 s) else
        for name in sorted(os.listdir(run_dir)):
            out.extend(event_file_loader.EventFileLoader(os.path.join(run_dir, name)).Load())
    return out


def _session(run_dir) -> tuple[dict, dict, str]:
    """A trial run's HParams session: (hyper-parameters, hparams/ metrics, end status)."""
    from tensorboard.plugins.hparams import api_pb2, metadata

    hparams, metrics, status = {}, {}, None
    for event in _events(run_dir):
        for v in event.summary.value:
            if v.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME:
                content = v.metadata.plugin_data.content
                if v.tag == metadata.SESSION_START_INFO_TAG:
                    start = metadata.parse_session_start_info_plugin_data(content)
                    hparams = {k: getattr(x, x.WhichOneof("kind")) for k, x in start.hparams.items()}
                elif v.tag == metadata.SESSION_END_INFO_TAG:
                    status = api_pb2.Status.Name(metadata.parse_session_end_info_plugin_data(content).status)
            elif v.tag.startswith("hparams/"):
                metrics[v.tag] = (event.step, v.simple_value if v.HasField("simple_value") else
                                  _tensor_value(v.tensor))
    return hparams, metrics, status


def _tensor_value(tensor) -> float:
    from tensorboard.util import tensor_util

    return float(tensor_util.make_ndarray(tensor))


def test_every_trial_is_an_hparams_session_named_by_index_and_key(tmp_path):
    cfg = cfg_of(trials=8, workers=1, asha={"rungs": (100,), "eta": 2, "min_results": 2})
    store, _, _ = run_search(tmp_path, cfg, name="a")
    store.close()
    store, _, _ = run_search(tmp_path, cfg_of(trials=2, workers=1, asha={"rungs": (100,), "eta": 2,
                                                                        "min_results": 2}), name="b")
    from search_space import SearchSpace

    labels = [SearchSpace(cfg.search.family, window=cfg.search.window or None).label(i)
              for i in range(len(store.trials("a")[0].decisions))]
    seen = set()
    for name in ("a", "b"):
        runs = tmp_path / "runs" / name / "tensorboard" / "trials"
        trials = store.trials(name)
        assert sorted(os.listdir(runs)) == [f"trial_{t.index:05d}_{t.arch_key}" for t in trials]
        for t in trials:
            hparams, metrics, status = _session(runs / f"trial_{t.index:05d}_{t.arch_key}")
            seen.add(t.status)
            assert hparams["key"] == t.arch_key and hparams["status"] == t.status
            assert [hparams[label] for label in labels] == list(t.decisions)
            assert metrics["hparams/reward"][1] == pytest.approx(t.reward)
            assert metrics["hparams/ap"][1] == pytest.approx(t.metrics["ap"])
            if t.status == "pruned":  # its metrics at its rung, where it stopped
                assert metrics["hparams/ap"][0] == 100
            assert status == "STATUS_SUCCESS"
    assert seen == {"completed", "pruned", "cached"}
    store.close()


@pytest.mark.tf
@pytest.mark.slow
def test_tensorboards_hparams_plugin_lists_every_trial_with_its_metrics(tmp_path):
    """TensorBoard's own HParams plugin (what its HParams tab asks) on a search's runs: an experiment of the
    decisions, key and status, every trial a session with its reward and AP. Its import loads TensorFlow."""
    import json

    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import hparams_plugin
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    store, _, _ = run_search(tmp_path, cfg_of(trials=6, workers=1, asha={"rungs": (100,), "eta": 2,
                                                                        "min_results": 2}))
    statuses = {f"trials/trial_{t.index:05d}_{t.arch_key}": t.status for t in store.trials("s")}
    store.close()
    logdir = str(tmp_path / "runs" / "s" / "tensorboard")
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    context = base_plugin.TBContext(data_provider=data_provider.MultiplexerDataProvider(multiplexer, logdir),
                                    logdir=logdir, multiplexer=multiplexer)
    routes = hparams_plugin.HParamsPlugin(context).get_plugin_apps()

    def ask(route: str, body: dict) -> dict:
        r = Client(routes[route], Response).post("/", data=json.dumps(body), content_type="application/json")
        assert r.status_code == 200, r.get_data(as_text=True)[:500]
        return json.loads(r.get_data(as_text=True))

    experiment = ask("/experiment", {"experimentName": ""})
    names = {h["name"] for h in experiment["hparamInfos"]}
    assert {"key", "status", "output_order.0", "block3.input_offsets"} <= names
    assert {"hparams/reward", "hparams/ap"} <= {m["name"]["tag"] for m in experiment["metricInfos"]}
    groups = ask("/session_groups", {"experimentName": "", "startIndex": 0, "sliceSize": 100, "colParams": [],
                                     "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                                         "STATUS_RUNNING"]})["sessionGroups"]
    assert {g["name"]: g["hparams"]["status"] for g in groups} == statuses
    for g in groups:
        assert {m["name"]["tag"] for m in g["metricValues"]} >= {"hparams/reward", "hparams/ap"}
