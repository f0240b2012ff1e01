"""The record loader's pure parts: tags-only records, type checks, MLflow settings and errors."""

import json
import os

import pytest

from tests.helpers.inspect_envs import make_env
from tfrepro.environment import Environment
from tfrepro.errors import RecordError, TrackingError
from tfrepro.inspect.compare import compare
from tfrepro.tracking import record
from tfrepro.tracking.backend import short_http


def test_environment_from_tags_keeps_what_diff_ranks_high():
    env = make_env()
    rebuilt = Environment.from_tags(env.to_tags())
    assert rebuilt.container.image_digest == env.container.image_digest
    assert rebuilt.git.commit == env.git.commit
    assert rebuilt.gpu.cuda_driver == "13.0" and rebuilt.gpu.count == 1
    assert rebuilt.gpu.devices[0].name == "NVIDIA H200"
    assert rebuilt.tensorflow.cuda_build == "11.7" and rebuilt.tensorflow.seed == 42
    assert list(rebuilt.process.argv) == ["python", "train.py", "--epochs", "2"]
    fields = {(d.group, d.field) for d in compare(env, rebuilt)}
    for key in (
        ("image", "digest"),
        ("code", "commit"),
        ("gpu", "model"),
        ("gpu", "driver"),
        ("tensorflow", "version"),
        ("tensorflow", "cuda_build"),
        ("determinism", "seed"),
    ):
        assert key not in fields, key


def test_environment_from_malformed_tags_leaves_out_what_does_not_parse():
    env = Environment.from_tags(
        {
            "tfrepro.gpu.count": "many",
            "tfrepro.seed": "x",
            "tfrepro.command": '"x"',
            "tfrepro.gpu.name": "A100, H100",
            "tfrepro.cuda.driver": "?",
        }
    )
    assert env.gpu.count == 0 and env.tensorflow.seed is None and env.gpu.cuda_driver_version is None
    assert list(env.process.argv) == ['"x"']
    two = Environment.from_tags({"tfrepro.gpu.count": "2", "tfrepro.gpu.name": "A100, H100"})
    assert sorted(d.name for d in two.gpu.devices) == ["A100", "H100"]  # the set of models survives


@pytest.mark.parametrize(
    "change",
    [
        {"git": "oops"},
        {"gpu": {"count": "1"}},
        {"gpu": {"devices": ["x"]}},
        {"python": {"packages": [1]}},
        {"container": {"ngc": {"CUDA_VERSION": 11}}},
        {"reasons": []},
        {"schema": 1},
    ],
)
def test_malformed_environment_json_is_a_record_error(change):
    data = dict(json.loads(make_env().to_json()), **change)
    with pytest.raises(RecordError, match="environment.json is malformed"):
        record._environment(json.dumps(data), {}, "r1")


def test_well_formed_environment_json_passes_the_type_check():
    env, data, source = record._environment(make_env().to_json(), {}, "r1")
    assert env == Environment.from_json(make_env().to_json()) and source == "artifact"
    record.check_types(Environment.from_tags(make_env().to_tags()))


def test_launch_json_must_be_an_object():
    assert record._launch(None, "r1") is None
    with pytest.raises(RecordError, match="not a JSON object"):
        record._launch("[1]", "r1")
    with pytest.raises(RecordError, match="not valid JSON"):
        record._launch("{", "r1")


def test_launch_settings_fall_back_on_the_launch_tags():
    tags = {"tfrepro.launch.gpus": "all", "tfrepro.git.commit": "1" * 40}
    assert record.RunRecord("r", Environment(), tags=tags).launch_settings() == {"gpus": "all"}
    assert record.RunRecord("r", Environment(), tags=tags, launch={"gpus": "1"}).launch_settings() == {"gpus": "1"}


def test_tracking_errors_are_one_line():
    class Missing(Exception):
        error_code = "RESOURCE_DOES_NOT_EXIST"

    assert isinstance(record.tracking_error(Missing("gone"), "run x"), RecordError)
    down = record.tracking_error(Exception("HTTPConnectionPool: Max retries exceeded\nmore"), "run x", "http://h")
    assert isinstance(down, TrackingError) and str(down) == "cannot reach the tracking server at http://h (no answer)"
    other = record.tracking_error(Exception("boom\ntrace"), "run x")
    assert str(other) == "run x: boom"


def test_short_http_keeps_the_users_settings_when_asked(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
    with short_http(5, 0, quiet=True, keep_user=True):
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "120"  # the user's own wins
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "120"
    with short_http(timeout=1):
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "1"  # the callback's bound wins
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "120"


def test_the_launch_is_parsed_once_into_typed_values():
    tags = {
        "tfrepro.command": json.dumps(["python", "train.py"]),
        "tfrepro.workdir": "/workspace/examples",  # an absolute cwd, as an image without git records it
        "tfrepro.seed": "7",
        "tfrepro.launch.gpus": "2",
    }
    launch = {
        "workdir": "/workspace",
        "shm_size": "1GB",
        "mounts": [
            {"source": "/repo", "target": "/workspace", "read_only": False, "kind": "repo"},
            {"source": "/data", "target": "/data", "read_only": True, "kind": "user"},
        ],
        "env": {"BATCH": "32", "HF_TOKEN": None},
        "env_names": ["BATCH", "HF_TOKEN", "MLFLOW_RUN_ID"],
        "repo_root": "/home/me/repo",
        "autolog": True,
        "seed": 3,
    }
    launched = record.RunRecord("r", Environment(), tags=tags, launch=launch).recorded_launch()
    assert launched.command == ("python", "train.py") and launched.subdir == "examples"
    assert launched.gpus == "2" and launched.shm_size == "1g" and launched.memory is None
    assert [m.bind() for m in launched.mounts] == ["/data:/data:ro"]  # the repository mount is set up afresh
    assert launched.env == {"BATCH": "32", "HF_TOKEN": None} and "MLFLOW_RUN_ID" in launched.env_names
    assert (launched.seed, launched.autolog, launched.hook_seed) == ("7", True, 3)
    assert launched.repo_root == "/home/me/repo"


@pytest.mark.parametrize(
    "tags,launch,message",
    [
        ({}, {}, "has no command"),
        ({"tfrepro.command": "python train.py"}, {}, "not a JSON list of strings"),
        ({"tfrepro.workdir": "../.."}, {}, "stay inside"),
        ({}, {"gpus": "lots"}, "--gpus"),
        ({}, {"memory": "a lot"}, "memory"),
        ({}, {"mounts": [{"source": "rel/x", "target": "/x", "kind": "user"}]}, "absolute path or a volume"),
        ({}, {"env": {"BAD NAME": "1"}}, "bad environment entry"),
        ({"tfrepro.seed": "seven"}, {}, "malformed seed"),
    ],
)
def test_a_malformed_launch_is_kept_as_its_reason_until_replay_needs_it(tags, launch, message):
    tags = dict({"tfrepro.command": json.dumps(["python", "train.py"])}, **tags)
    if "tfrepro.command" in tags and message == "has no command":
        del tags["tfrepro.command"]
    built = record.RunRecord("r", Environment(), tags=tags, launch=launch)  # show and diff still read it
    assert built.launch_settings() == launch
    with pytest.raises(RecordError, match=message):
        built.recorded_launch()
