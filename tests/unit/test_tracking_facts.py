"""tracking/facts.py: mlflow.source.name and a logged model's params, from the record."""

import dataclasses

import pytest

from tests.helpers.inspect_envs import DIGEST_A, make_env
from tfrepro import schema
from tfrepro.environment import Environment, ProcessInfo
from tfrepro.tracking import facts


@pytest.mark.parametrize(
    "argv, cwd, root, expected",
    [
        (["python", "train.py", "--epochs", "2"], "/workspace", "/workspace", "train.py"),
        (["python3.8", "-u", "src/train.py"], "/workspace", "/workspace", "src/train.py"),
        (["/usr/bin/python", "-W", "ignore", "train.py"], "/workspace/src", "/workspace", "src/train.py"),
        (["python", "../tools/train.py"], "/workspace/src", "/workspace", "tools/train.py"),
        (["python", "/workspace/a/b.py"], "/elsewhere", "/workspace", "a/b.py"),
        (["python", "/opt/other/train.py"], "/workspace", "/workspace", "/opt/other/train.py"),
        (["python", "train.py"], "/tmp/x", None, "/tmp/x/train.py"),
        (["python", "train.py"], "", None, "train.py"),
        (["./train.sh", "x"], "/workspace", "/workspace", "train.sh"),
        (["python", "-m", "pkg.train", "--x"], "/workspace", "/workspace", "-m pkg.train"),
        (["python", "-mpkg.train"], "/workspace", "/workspace", "-m pkg.train"),
        (["python", "-c", "print(1)"], "/workspace", "/workspace", None),
        (["python"], "/workspace", "/workspace", None),
        ([], "/workspace", "/workspace", None),
        (["python", "evil\nname.py"], "/workspace", "/workspace", None),
    ],
)
def test_source_name(argv, cwd, root, expected):
    assert facts.source_name(argv, cwd, root) == expected


def test_source_name_from_a_record():
    assert facts.environment_source_name(make_env()) == "train.py"
    env = dataclasses.replace(make_env(), process=ProcessInfo(argv=(), entry_script="sub/t.py", cwd="/workspace"))
    assert facts.environment_source_name(env) == "sub/t.py"
    assert facts.environment_source_name(Environment()) is None


def test_model_params_are_the_key_facts():
    params = facts.model_params(make_env(), "sha256:" + "e" * 64)
    assert params == {
        schema.IMAGE_DIGEST: DIGEST_A,
        schema.GIT_COMMIT: "3f2a" * 10,
        schema.GIT_DIRTY: "false",
        schema.MODEL_HASH: "sha256:" + "e" * 64,
        schema.TF_VERSION: "2.9.1",
        schema.CUDA_BUILD: "11.7",
        schema.CUDNN_BUILD: "8",
        schema.CUDA_DRIVER: "13.0",
    }


def test_model_params_without_digest_or_record():
    params = facts.model_params(make_env(digest=None))
    assert params[schema.IMAGE_REF] == "nvcr.io/nvidia/tensorflow:22.07-tf2-py3" and schema.IMAGE_DIGEST not in params
    assert schema.MODEL_HASH not in params
    assert facts.model_params(Environment()) == {}
    long = dataclasses.replace(make_env(), tensorflow=dataclasses.replace(make_env().tensorflow, version="9" * 900))
    assert len(facts.model_params(long)[schema.TF_VERSION]) == facts.PARAM_LIMIT
