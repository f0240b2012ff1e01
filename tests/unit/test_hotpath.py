"""tracking/hotpath.py: its readers give what MLflow's own calls give, in every thread."""

import os
import threading

import pytest

from tfrepro.tracking import hotpath

pytestmark = pytest.mark.py38


@pytest.fixture
def file_store(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    yield mlflow
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def test_active_run_reader_matches_mlflow_in_this_thread_and_others(file_store):
    mlflow = file_store
    import mlflow.tracking.fluent as fluent_module

    read = hotpath.active_run_reader(fluent_module)
    assert read() is mlflow.active_run() is None
    with mlflow.start_run() as outer:
        assert read() is mlflow.active_run()
        with mlflow.start_run(nested=True):
            assert read() is mlflow.active_run() and read() is not outer
        assert read().info.run_id == outer.info.run_id
        seen = []
        thread = threading.Thread(target=lambda: seen.append((read(), mlflow.active_run())))
        thread.start()
        thread.join()
        assert seen[0][0] is seen[0][1]
    assert read() is None


def test_active_model_reader_matches_mlflow(file_store):
    import mlflow.tracking.fluent as fluent_module

    read = hotpath.active_model_reader(fluent_module)
    public = getattr(fluent_module, "get_active_model_id", None)
    if public is None:  # MLflow 2.17: no active model
        assert read is None
        return
    assert read() == public()
    fluent_module._set_active_model_id("m-123")
    try:
        assert read() == public() == "m-123"
    finally:
        fluent_module._set_active_model_id(None)
    assert read() == public()


def test_env_reader_follows_os_environ(monkeypatch):
    monkeypatch.delenv("TFREPRO_HOTPATH_TEST", raising=False)
    present = hotpath.env_reader("TFREPRO_HOTPATH_TEST")
    assert not present()
    monkeypatch.setenv("TFREPRO_HOTPATH_TEST", "1")
    assert present() and "TFREPRO_HOTPATH_TEST" in os.environ
    del os.environ["TFREPRO_HOTPATH_TEST"]
    assert not present()


def test_script_thread_is_false_only_in_tfrepro_threads():
    assert hotpath.script_thread()
    seen = {}
    for name in ("tfrepro-uploader", "user-worker"):
        thread = threading.Thread(target=lambda n=name: seen.update({n: hotpath.script_thread()}), name=name)
        thread.start()
        thread.join()
    assert seen == {"tfrepro-uploader": False, "user-worker": True}
