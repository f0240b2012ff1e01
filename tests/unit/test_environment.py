import dataclasses
import json

import pytest

from tfrepro.environment import (
    ContainerInfo,
    Environment,
    GitInfo,
    GpuDevice,
    GpuInfo,
    ProcessInfo,
    TensorflowInfo,
)
from tfrepro.schema import MAX_TAG_VALUE
from tfrepro.versions import cuda_text


def sample():
    return Environment(
        collected_at="2026-11-26T21:00:00+00:00",
        tfrepro_version="0.1.0",
        container=ContainerInfo(
            in_container=True,
            evidence=["/.dockerenv"],
            runtime="docker",
            image_ref="nvcr.io/nvidia/tensorflow:22.07-tf2-py3",
            image_digest="nvcr.io/nvidia/tensorflow@sha256:" + "a" * 64,
            image_id="sha256:" + "b" * 64,
            digest_source="launcher",
            ngc={"CUDA_VERSION": "11.7.0"},
        ),
        git=GitInfo(
            commit="c" * 40,
            branch="main",
            remote_url="https://example.com/x.git",
            dirty=True,
            patch="diff --git a/x b/x\n",
            patch_sha256="d" * 64,
            workdir="examples",
        ),
        gpu=GpuInfo(
            count=1,
            driver_version="580.159.04",
            cuda_driver_version=13000,
            devices=[GpuDevice(name="NVIDIA H200", uuid="GPU-0", compute_capability="9.0")],
        ),
        tensorflow=TensorflowInfo(
            version="2.9.3",
            cuda_build="11.2",
            cudnn_build="8",
            imported=True,
            determinism={"op_determinism": True},
            seed=7,
        ),
        process=ProcessInfo(argv=["python", "train.py", "--epochs", "2"], cwd="/workspace/examples"),
        reasons={"system": "not collected"},
    )


def test_record_is_immutable():
    env = sample()
    with pytest.raises(dataclasses.FrozenInstanceError):
        env.git = None
    with pytest.raises(TypeError):
        env.container.ngc["X"] = "1"
    assert isinstance(env.process.argv, tuple)


def test_json_round_trip_keeps_everything_but_the_patch_text():
    env = sample()
    back = Environment.from_json(env.to_json())
    assert back.gpu.devices[0].name == "NVIDIA H200"
    assert back.container == env.container
    assert back.git.patch == "" and back.git.patch_sha256 == "d" * 64
    assert "patch" not in json.loads(env.to_json())["git"]


def test_from_dict_ignores_unknown_keys():
    data = sample().to_dict()
    data["future_section"] = {"x": 1}
    data["gpu"]["future_field"] = 2
    assert Environment.from_dict(data).gpu.count == 1


def test_tags_follow_the_schema():
    tags = sample().to_tags()
    assert tags["tfrepro.image.digest"].endswith("a" * 64)
    assert tags["tfrepro.gpu.name"] == "NVIDIA H200"
    assert tags["tfrepro.cuda.driver"] == "13.0"
    assert tags["tfrepro.git.dirty"] == "true"
    assert tags["tfrepro.tf.determinism"] == "true" and tags["tfrepro.seed"] == "7"
    assert json.loads(tags["tfrepro.command"]) == ["python", "train.py", "--epochs", "2"]
    assert tags["tfrepro.workdir"] == "examples"
    assert tags["mlflow.source.git.commit"] == "c" * 40
    assert tags["mlflow.docker.image.uri"] == tags["tfrepro.image.digest"]
    assert all(v not in ("None", "") for v in tags.values())


def test_long_tag_values_are_truncated_to_mlflows_limit():
    env = Environment(process=ProcessInfo(argv=["python"] + ["x" * 100] * 100, cwd="/"))
    value = env.to_tags()["tfrepro.command"]
    assert len(value) == MAX_TAG_VALUE and value.endswith("[truncated]")


def test_empty_environment_has_only_schema_tags():
    assert set(Environment().to_tags()) == {"tfrepro.schema"}


@pytest.mark.parametrize("value,text", [(13000, "13.0"), (11070, "11.7"), (12020, "12.2"), (None, None), (0, None)])
def test_cuda_text(value, text):
    assert cuda_text(value) == text


def test_key_packages_and_the_lock_hash_become_tags():
    from tfrepro.environment import PythonInfo

    env = Environment(
        python=PythonInfo(version="3.8.10", packages=["absl-py==1.0", "numpy==1.23.5", "tensorflow==2.9.3"])
    )
    tags = env.to_tags()
    assert tags["tfrepro.pkg.numpy"] == "1.23.5" and tags["tfrepro.pkg.tensorflow"] == "2.9.3"
    assert "tfrepro.pkg.absl-py" not in tags
    assert tags["tfrepro.python.lock"].startswith("sha256:") and len(tags["tfrepro.python.lock"]) == 71
