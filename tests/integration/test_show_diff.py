"""`tfrepro show` and `tfrepro diff` against a real `mlflow server`, in-process via main()."""

import json

import pytest

from tests.helpers.inspect_envs import DIGEST_A, DIGEST_B, PACKAGES_B, log_run, make_env
from tests.helpers.ports import free_port
from tfrepro.cli import main, status


@pytest.fixture(scope="module")
def runs(mlflow_server):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    experiment_id = client.create_experiment("show-diff")
    env_a, env_b = make_env(), make_env(digest=DIGEST_B, packages=PACKAGES_B, hostname="gpu-node-7")
    ids = {
        "a": log_run(client, experiment_id, env_a, {"lr": "0.001"}, {"loss": 0.34}, "baseline"),
        "a2": log_run(client, experiment_id, env_a, {"lr": "0.001"}, {"loss": 0.35}, "rerun"),
        "b": log_run(client, experiment_id, env_b, {"lr": "0.002"}, {"loss": 0.33}, "new-image"),
        "bare": client.create_run(experiment_id).info.run_id,
    }
    client.log_text(ids["b"], json.dumps({"image": DIGEST_B, "gpus": "all"}), "tfrepro/launch.json")
    tags_only = client.create_run(experiment_id, tags=env_b.to_tags()).info.run_id
    ids["tags_only"] = tags_only
    ids["env_a"], ids["env_b"] = env_a, env_b
    return ids


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_show_prints_the_grouped_record(tracking_uri, runs, capsys):
    code, out, err = run_cli(capsys, "show", runs["a"])
    assert code == 0, err
    assert all(len(line) <= 100 for line in out.splitlines())
    for text in (
        "Image",
        DIGEST_A,
        "Code",
        runs["env_a"].git.commit,
        "GPU",
        "NVIDIA H200",
        "580.159.04",
        "TensorFlow",
        "Determinism",
        "Python",
        "6 installed",
        "Params",
        "lr",
        "Final metrics",
        "0.34",
    ):
        assert text in out, text
    assert "\x1b[" not in out  # not a terminal: no colour
    assert "Downloading" not in err


def test_show_packages_lists_them(tracking_uri, runs, capsys):
    code, out, _ = run_cli(capsys, "show", runs["a"], "--packages")
    assert code == 0 and "scipy" in out and "1.8.1" in out


def test_show_launch(tracking_uri, runs, capsys):
    code, out, _ = run_cli(capsys, "show", runs["b"])
    assert code == 0 and "\nLaunch\n" in out and "gpus" in out
    code, out, _ = run_cli(capsys, "show", runs["b"], "--json")
    assert json.loads(out)["launch"] == {"image": DIGEST_B, "gpus": "all"}


def test_show_json_is_the_stored_record(tracking_uri, runs, capsys):
    code, out, _ = run_cli(capsys, "show", runs["a"], "--json")
    data = json.loads(out)
    assert code == 0
    assert set(data) == {"run", "environment", "launch", "data", "params", "metrics", "tags", "signature", "workers"}
    assert data["signature"]["status"] == "unsigned"
    assert data["data"] == []
    assert data["environment"] == json.loads(runs["env_a"].to_json())
    assert data["run"]["run_id"] == runs["a"] and data["run"]["record_source"] == "artifact"
    assert data["params"] == {"lr": "0.001"} and data["metrics"] == {"loss": 0.34}
    assert data["tags"]["tfrepro.image.digest"] == DIGEST_A


def test_show_falls_back_to_tags(tracking_uri, runs, capsys):
    code, out, _ = run_cli(capsys, "show", runs["tags_only"])
    assert code == 0 and DIGEST_B in out and "tags only" in out


def test_diff_two_runs(tracking_uri, runs, capsys):
    code, out, err = run_cli(capsys, "diff", runs["a"], runs["b"])
    assert code == 1, err
    assert all(len(line) <= 100 for line in out.splitlines())
    assert "HIGH" in out and "digest" in out and "lr" in out and "0.001 -> 0.002" in out
    assert "numpy" in out and "1.22.4 -> 1.23.5" in out and "added 1.5.3" in out and "removed 1.8.1" in out
    assert "launch" in out and "gpus" in out  # only run b has tfrepro/launch.json
    assert "hostname" in out and out.index("HIGH") < out.index("MEDIUM") < out.index("LOW")


def test_diff_equal_environments_exit_0(tracking_uri, runs, capsys):
    code, out, _ = run_cli(capsys, "diff", runs["a"], runs["a2"])
    assert code == 0
    assert "loss" in out  # metrics differ, shown, but not a difference of environment


def test_diff_json(tracking_uri, runs, capsys):
    code, out, _ = run_cli(capsys, "diff", runs["a"], runs["b"], "--json")
    data = json.loads(out)
    assert code == 1 and data["equal"] is False
    assert data["a"]["run_id"] == runs["a"] and data["b"]["run_id"] == runs["b"]
    digest = [d for d in data["differences"] if (d["group"], d["field"]) == ("image", "digest")][0]
    assert digest == {
        "group": "image",
        "field": "digest",
        "a": DIGEST_A,
        "b": DIGEST_B,
        "rank": "high",
        "kind": "changed",
        "equal": False,
    }
    assert data["counts"]["high"] == 2  # digest and lr
    assert data["counts"]["result"] == 1  # loss


def test_diff_all_includes_equal_fields(tracking_uri, runs, capsys):
    code, out, _ = run_cli(capsys, "diff", runs["a"], runs["b"], "--all", "--json")
    data = json.loads(out)
    assert any(d["equal"] and d["field"] == "commit" for d in data["differences"])
    code, out, _ = run_cli(capsys, "diff", runs["a"], runs["b"], "--all")
    assert code == 1 and "EQUAL" in out


def test_diff_here(tracking_uri, runs, capsys):
    code, out, err = run_cli(capsys, "diff", runs["a"], "--here", "--json")
    data = json.loads(out)
    assert code == 1, err  # this box has no H200 and no NGC image
    assert data["b"] == {"here": True, "run_id": None}
    assert not any(d["group"] == "process" for d in data["differences"])
    gpu = [d for d in data["differences"] if (d["group"], d["field"]) == ("gpu", "model")]
    assert gpu and gpu[0]["a"] == "NVIDIA H200"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["diff", "x"], "two run ids"),
        (["diff", "x", "y", "--here"], "one run id"),
    ],
)
def test_diff_usage_errors(tracking_uri, capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_unknown_run_is_one_line_refused(tracking_uri, capsys):
    for argv in (["show", "0" * 32], ["diff", "0" * 32, "1" * 32], ["show", "not-a-run"]):
        code, out, err = run_cli(capsys, *argv)
        assert code == status.REFUSED and out == ""
        assert err.startswith("tfrepro: error: no run") and len(err.strip().splitlines()) == 1, err


def test_run_without_record_is_one_line_refused(tracking_uri, runs, capsys):
    code, _, err = run_cli(capsys, "show", runs["bare"])
    assert code == status.REFUSED and "has no tfrepro record" in err and len(err.strip().splitlines()) == 1


def test_unreachable_server_is_one_line_tracking_error(runs, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:%d" % free_port())
    for argv in (["show", runs["a"]], ["diff", runs["a"], runs["b"]]):
        code, _, err = run_cli(capsys, *argv)
        assert code == status.TRACKING and "cannot reach the tracking server" in err, err
        assert len(err.strip().splitlines()) == 1


def test_missing_sqlite_store_is_not_created(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, _, err = run_cli(capsys, "show", "0" * 32, "--tracking-uri", "sqlite:///mlflow.db")
    assert code == status.TRACKING and "no tracking database" in err
    assert not (tmp_path / "mlflow.db").exists()


def test_malformed_record_is_one_line_refused(mlflow_server, tracking_uri, capsys):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    run_id = client.create_run("0", tags={"tfrepro.schema": "1"}).info.run_id
    client.log_text(run_id, json.dumps({"git": "oops"}), "tfrepro/environment.json")
    for argv in (["show", run_id], ["diff", run_id, run_id], ["replay", run_id, "--dry-run"]):
        code, out, err = run_cli(capsys, *argv)
        assert code == status.REFUSED and "environment.json is malformed (git is a str, not an object)" in err, err
        assert len(err.strip().splitlines()) == 1 and out == ""


@pytest.fixture(scope="module")
def registered(mlflow_server, runs):
    """Version 1 of a registered model made from run a's runs:/ URI, with the alias "prod"."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    client.create_registered_model("show-diff-model")
    version = client.create_model_version("show-diff-model", "runs:/%s/model" % runs["a"], run_id=runs["a"])
    client.set_registered_model_alias("show-diff-model", "prod", version.version)
    return version.version


@pytest.mark.parametrize("ref", ["models:/show-diff-model/1", "models:/show-diff-model@prod", "runs:/{a}/model"])
def test_show_takes_a_model_reference_and_names_the_run_and_its_page(tracking_uri, runs, registered, capsys, ref):
    ref = ref.format(a=runs["a"])
    code, out, err = run_cli(capsys, "show", ref, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["run"]["run_id"] == runs["a"]
    assert data["run"]["ui_url"] == "%s/#/experiments/%s/runs/%s" % (
        tracking_uri.rstrip("/"),
        data["run"]["experiment_id"],
        runs["a"],
    )
    assert "was produced by run %s" % runs["a"] in err
    assert "in the MLflow UI: %s" % data["run"]["ui_url"] in err


def test_diff_takes_a_model_reference_and_names_the_compare_page(tracking_uri, runs, registered, capsys):
    code, out, err = run_cli(capsys, "diff", "models:/show-diff-model@prod", runs["b"], "--json")
    assert code == 1, err
    data = json.loads(out)
    assert data["a"]["run_id"] == runs["a"]
    assert "/#/compare-runs?runs=" in data["compare_url"]
    assert runs["a"] in data["compare_url"] and runs["b"] in data["compare_url"]
    assert "compare them in the MLflow UI: %s" % data["compare_url"] in err


@pytest.mark.parametrize(
    "ref,expected",
    [
        ("models:/show-diff-model/9", status.REFUSED),
        ("models:/no-such-model@prod", status.REFUSED),
        ("models:/show-diff-model/x", status.USAGE),
    ],
)
def test_a_bad_model_reference_is_one_line(tracking_uri, runs, registered, capsys, ref, expected):
    from tests.helpers.cli import one_error

    line = one_error(capsys, main(["show", ref]), expected_code=expected)
    assert "show-diff-model" in line or "no-such-model" in line
