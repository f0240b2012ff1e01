"""`tfrepro doctor` on this machine, against a real `mlflow server`."""
import json

from tfrepro.cli import main
from tests.conftest import free_port

NAMES = ["tensorflow", "gpus", "driver/cuda", "numpy", "protobuf", "docker", "tracking", "git", "image"]


def test_doctor_json_and_text_agree(tracking_uri, capsys):
    code = main(["doctor", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in data["checks"]] == NAMES
    statuses = {c["name"]: c["status"] for c in data["checks"]}
    assert statuses["tracking"] == "pass" and statuses["tensorflow"] == "pass"
    assert code == (0 if data["ok"] else 1) and data["ok"] == ("fail" not in statuses.values())

    code_text = main(["doctor"])
    out = capsys.readouterr().out
    assert code_text == code
    assert all(len(line) <= 100 for line in out.splitlines())
    assert "\x1b[" not in out
    for name in NAMES:
        assert "  %s " % name in out or "  %s\n" % name in out, name


def test_doctor_writes_nothing_that_stays(tracking_uri, capsys):
    from mlflow.tracking import MlflowClient

    main(["doctor", "--json"])
    capsys.readouterr()
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tfrepro-doctor")
    assert experiment is not None
    assert client.search_runs([experiment.experiment_id]) == []  # its throwaway run is deleted


def test_doctor_fails_on_unreachable_tracking(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:%d" % free_port())
    code = main(["doctor", "--json"])
    data = json.loads(capsys.readouterr().out)
    tracking = [c for c in data["checks"] if c["name"] == "tracking"][0]
    assert code == 1 and tracking["status"] == "fail" and tracking["fix"]
