"""The record loader's pure parts: tags-only records and the quick-failure MLflow settings."""
import os

from tfrepro.environment import Environment
from tfrepro.inspect import record
from tfrepro.inspect.compare import compare
from tests.inspect_envs import make_env


def test_environment_from_tags_keeps_what_diff_ranks_high():
    env = make_env()
    rebuilt = Environment.from_dict(record.environment_from_tags(env.to_tags()))
    assert rebuilt.container.image_digest == env.container.image_digest
    assert rebuilt.git.commit == env.git.commit
    assert rebuilt.gpu.cuda_driver == "13.0" and rebuilt.gpu.count == 1
    assert rebuilt.gpu.devices[0].name == "NVIDIA H200"
    assert rebuilt.tensorflow.cuda_build == "11.7" and rebuilt.tensorflow.seed == 42
    assert list(rebuilt.process.argv) == ["python", "train.py", "--epochs", "2"]
    fields = {(d.group, d.field) for d in compare(env, rebuilt)}
    for key in (("image", "digest"), ("code", "commit"), ("gpu", "model"), ("gpu", "driver"),
                ("tensorflow", "version"), ("tensorflow", "cuda_build"), ("determinism", "seed")):
        assert key not in fields, key


def test_quick_mlflow_sets_and_restores(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
    with record.quick_mlflow():
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "120"  # the user's own wins
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "120"
