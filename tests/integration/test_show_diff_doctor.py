"""`tfrepro doctor` on this machine, against a real `mlflow server`."""

import json

from tests.helpers import host
from tests.helpers.ports import free_port
from tfrepro.cli import main

DOCTOR_EXPERIMENT = "tfrepro-doctor"  # where the tracking check makes its throwaway run (README)
NAMES = ["tensorflow", "gpus", "driver/cuda", "numpy", "protobuf", "docker", "tracking", "git", "image"]


def test_doctor_json_and_text_agree(tracking_uri, capsys):
    code = main(["doctor", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in data["checks"]] == NAMES
    statuses = {c["name"]: c["status"] for c in data["checks"]}
    assert statuses["tracking"] == "pass"
    assert statuses == dict(statuses, **expected_statuses())
    assert code == (0 if data["ok"] else 1) and data["ok"] == ("fail" not in statuses.values())

    code_text = main(["doctor"])
    out = capsys.readouterr().out
    assert code_text == code
    assert all(len(line) <= 100 for line in out.splitlines())
    assert "\x1b[" not in out
    for name in NAMES:
        assert "  %s " % name in out or "  %s\n" % name in out, name


def expected_statuses():
    """What doctor must say about TensorFlow and the GPUs on this host, from the host itself."""
    import tensorflow as tf

    gpus, tf_gpus = host.gpu_count(), len(tf.config.list_physical_devices("GPU"))
    cuda_build = dict(tf.sysconfig.get_build_info()).get("cuda_version")
    expected = {"tensorflow": "pass" if tf.__version__.startswith("2.9.") else "warn"}
    if not gpus:
        expected.update({"gpus": "warn", "driver/cuda": "skip"})
    elif tf_gpus == gpus:
        expected["gpus"] = "pass"
    elif not tf_gpus:
        expected["gpus"] = "fail"
    if gpus and not cuda_build:
        expected["driver/cuda"] = "skip"
    return expected


def _doctor_runs(client, view):
    experiment = client.get_experiment_by_name(DOCTOR_EXPERIMENT)
    return client.search_runs([experiment.experiment_id], run_view_type=view) if experiment else []


def test_doctor_deletes_its_probe_run(tracking_uri, capsys):
    """The tracking check proves the server writable with a run it then deletes (MLflow keeps
    deleted runs until `mlflow gc`); its experiment stays, reused by the next doctor."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    deleted_before = len(_doctor_runs(client, ViewType.DELETED_ONLY))
    main(["doctor", "--json"])
    capsys.readouterr()
    assert client.get_experiment_by_name(DOCTOR_EXPERIMENT) is not None
    assert _doctor_runs(client, ViewType.ACTIVE_ONLY) == []
    assert len(_doctor_runs(client, ViewType.DELETED_ONLY)) == deleted_before + 1


def test_doctor_fails_on_unreachable_tracking(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:%d" % free_port())
    code = main(["doctor", "--json"])
    data = json.loads(capsys.readouterr().out)
    tracking = [c for c in data["checks"] if c["name"] == "tracking"][0]
    assert code == 1 and tracking["status"] == "fail" and tracking["fix"]
