"""The background writer against a real sqlite store and a server that is not there."""

import json
import os
import threading
import time
import tracemalloc

import numpy as np
import pytest

from tests.helpers.ports import free_port
from tfrepro.tracking import spool
from tfrepro.tracking.session import FLUSH_TAG, TrackingSession
from tfrepro.tracking.sync import sync_all

pytestmark = pytest.mark.py38


@pytest.fixture
def use_uri(monkeypatch, tmp_path):
    """Point MLflow at `uri` for this test; spool under tmp_path."""
    import mlflow

    monkeypatch.setenv("TFREPRO_SPOOL_DIR", str(tmp_path / "spool"))

    def set_uri(uri):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        return uri

    yield set_uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(store)  # the store's default artifact root (./mlruns) lands here, not in the checkout
        yield "sqlite:///%s/mlflow.db" % store


def dead_uri():
    return "http://127.0.0.1:%d" % free_port()  # nothing listens there


def spooled_points(path):
    return [(k, r["step"]) for r in spool.iter_records(path) if "metrics" in r for k in r["metrics"]]


def test_everything_reaches_the_store_once_and_the_spool_is_removed(use_uri, sqlite_uri):
    from mlflow.tracking import MlflowClient

    use_uri(sqlite_uri)
    session = TrackingSession.open("writer", "all-points", upload_interval=0.05)
    assert session.started_run and session.online and not session.run_id.startswith("local-")
    session.log_params({"lr": 0.1, "name": "mlp"})
    session.set_tags({"team": "ml"})
    session.log_text('{"a": 1}', "tfrepro/environment.json")
    for step in range(1000):
        session.log_metrics({"loss": np.float32(1.0 / (step + 1)), "acc": step / 3000}, step)
    session.close()
    assert session.errors == []
    client = MlflowClient(sqlite_uri)
    run = client.get_run(session.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.1", "name": "mlp"}
    assert run.data.tags["team"] == "ml" and float(run.data.tags[FLUSH_TAG]) >= 0
    for key in ("loss", "acc"):
        steps = sorted(m.step for m in client.get_metric_history(session.run_id, key))
        assert steps == list(range(1000))
    assert [f.path for f in client.list_artifacts(session.run_id, "tfrepro")] == ["tfrepro/environment.json"]
    assert not os.path.exists(session.spool_path)


def test_bad_values_are_skipped_not_raised(use_uri, sqlite_uri):
    from mlflow.tracking import MlflowClient

    use_uri(sqlite_uri)
    session = TrackingSession.open("writer")
    session.log_metrics({"ok": np.float64(2.5), "bad": "not a number", "arr": np.ones(3)}, 1)
    session.close()
    assert [m.value for m in MlflowClient(sqlite_uri).get_metric_history(session.run_id, "ok")] == [2.5]
    assert any("bad" in e for e in session.errors)


def test_open_does_not_hang_when_the_server_is_down_and_gets_a_local_id(use_uri):
    use_uri(dead_uri())
    started = time.monotonic()
    session = TrackingSession.open("writer", "offline")
    session.log_metrics({"loss": 1.0}, 0)
    session.close()
    assert time.monotonic() - started < 30  # a hang check: MLflow's own retries take minutes
    assert session.run_id.startswith("local-") and session.started_run
    header = spool.read_header(session.spool_path)
    assert header["run_id"] == session.run_id and header["experiment_name"] == "writer"
    assert [r.get("end") for r in spool.iter_records(session.spool_path) if "end" in r] == ["FINISHED"]


def test_memory_stays_bounded_at_any_rate_and_every_point_is_spooled(use_uri):
    use_uri(dead_uri())
    bound, total = 64, 200_000
    session = TrackingSession.open("writer", "flood", queue_size=bound)
    queue = session._writer.queue
    largest = []
    stop = threading.Event()

    def watch():  # sample from another thread too: put() must never grow it past the bound
        while not stop.is_set():
            largest.append(queue.qsize())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    tracemalloc.start()
    try:
        for step in range(total):
            session.log_metrics({"loss": 0.5}, step)
            if step % 1000 == 0:
                largest.append(queue.qsize())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        stop.set()
        watcher.join()
    session.close()
    assert max(largest) <= bound
    assert peak < 20 * 2**20  # 200k queued points alone would take far more
    assert session._writer.spilled > 0  # the tiny queue overflowed into the spool
    points = spooled_points(session.spool_path)
    assert sorted(s for _, s in points) == list(range(total))


def test_sync_maps_a_local_run_to_a_new_run_once(use_uri, sqlite_uri, tmp_path):
    from mlflow.tracking import MlflowClient

    use_uri(dead_uri())
    session = TrackingSession.open("offline-exp", "later")
    session.log_params({"epochs": 3})
    session.log_text("{}", "tfrepro/environment.json")
    for step in range(2500):
        session.log_metrics({"loss": 1.0 / (step + 1)}, step)
    session.close()
    path = session.spool_path
    spool.save_state(path, {"offset": 0})  # as if killed before any marker: sync must dedupe anyway
    results = sync_all(str(tmp_path / "spool"), tracking_uri=sqlite_uri)
    assert [r.failure for r in results] == [None] and results[0].created
    run_id = results[0].run_id
    client = MlflowClient(sqlite_uri)
    run = client.get_run(run_id)
    assert run.data.tags["tfrepro.local_run_id"] == session.run_id
    assert run.data.params == {"epochs": "3"} and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "offline-exp"
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == list(range(2500))
    assert not os.path.exists(path)
    assert sync_all(str(tmp_path / "spool"), tracking_uri=sqlite_uri) == []


def test_sync_resumes_a_half_done_upload_without_duplicates(use_uri, sqlite_uri, tmp_path):
    from mlflow.tracking import MlflowClient

    use_uri(dead_uri())
    session = TrackingSession.open("offline-exp")
    for step in range(1500):
        session.log_metrics({"loss": float(step)}, step)
    session.close()
    path = session.spool_path
    # a first sync uploaded part of the file and died before saving its marker
    from tfrepro.tracking.backend import backend_for
    from tfrepro.tracking.upload import RunUploader

    uploader = RunUploader(backend_for(sqlite_uri), spool.read_header(path))
    run_id, _ = uploader.ensure_run()
    records, _ = spool.read(path, 0, max_entities=700)
    uploader.upload(records, dedupe=False)
    spool.save_state(path, {"offset": 0, "run_id": run_id})
    result = sync_all(str(tmp_path / "spool"), tracking_uri=sqlite_uri)[0]
    assert result.run_id == run_id and not result.created
    assert result.counts["skipped"] >= 699 and result.counts["points"] == 1500 - result.counts["skipped"]
    steps = [m.step for m in MlflowClient(sqlite_uri).get_metric_history(run_id, "loss")]
    assert sorted(steps) == list(range(1500))


def test_spool_lines_are_plain_json(use_uri):
    use_uri(dead_uri())
    session = TrackingSession.open()
    session.log_metrics({"nan": float("nan")}, 3)
    session.close()
    with open(session.spool_path) as f:
        lines = [json.loads(line) for line in f]
    assert lines[1]["step"] == 3 and lines[1]["metrics"]["nan"] != lines[1]["metrics"]["nan"]


def test_a_local_run_is_created_once_even_when_its_mapping_is_lost(sqlite_uri):
    from tfrepro.tracking.backend import backend_for
    from tfrepro.tracking.upload import RunUploader

    header = {"run_id": "local-lostmarker", "experiment_name": "lost-marker", "start_time": 1}
    backend = backend_for(sqlite_uri)
    first, created = RunUploader(backend, header).ensure_run()
    again, created_again = RunUploader(backend, header).ensure_run()
    assert created and not created_again and again == first
