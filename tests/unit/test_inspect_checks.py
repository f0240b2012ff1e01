"""doctor's checks: pure functions over gathered facts, fed a real H200's NVML answers."""

import dataclasses

import pytest

from tests.helpers.inspect_envs import h200_gpu
from tfrepro.environment import ContainerInfo
from tfrepro.inspect import checks as c
from tfrepro.versions import version_tuple


def facts(**overrides):
    """A healthy H200 machine: NGC image launched by tfrepro, TF 2.9 built with CUDA 11.2."""
    base = dict(
        tf_version="2.9.1",
        tf_cuda_build="11.2",
        tf_cudnn_build="8",
        tf_gpus=1,
        gpu=h200_gpu(),
        versions={"numpy": "1.22.4", "protobuf": "3.19.6"},
        docker_runtimes=("io.containerd.runc.v2", "nvidia", "runc"),
        container=ContainerInfo(
            in_container=True,
            runtime="docker",
            digest_source="launcher",
            image_digest="nvcr.io/nvidia/tensorflow@sha256:" + "a" * 64,
        ),
        tracking_uri="http://127.0.0.1:5000",
        git_root="/workspace",
    )
    base.update(overrides)
    return c.Facts(**base)


def statuses(f):
    return {check.name: check.status for check in c.run_checks(f)}


def test_healthy_h200_passes_everything():
    result = statuses(facts())
    assert set(result.values()) == {"pass"}, result
    assert list(result) == [
        "tensorflow",
        "gpus",
        "driver/cuda",
        "numpy",
        "protobuf",
        "docker",
        "tracking",
        "git",
        "image",
    ]


def test_driver_cuda_from_the_h200_fixture():
    check = c.check_driver_cuda(facts())
    assert check.status == "pass"
    assert "580.159.04 supports CUDA 13.0" in check.message and "CUDA 11.2" in check.message


def test_old_driver_fails_with_fix():
    old = dataclasses.replace(h200_gpu(), driver_version="450.80.02", cuda_driver_version=11000)
    check = c.check_driver_cuda(facts(gpu=old))
    assert check.status == "fail" and "CUDA 11.2" in check.fix


def test_tensorflow_blind_to_gpus_fails():
    check = c.check_gpus(facts(tf_gpus=0))
    assert check.status == "fail" and "NVML sees 1" in check.message and check.fix


def test_no_gpu_machine_warns_and_skips_driver():
    f = facts(gpu=None, gpu_reason="no NVIDIA driver", tf_gpus=0)
    assert c.check_gpus(f).status == "warn"
    assert c.check_driver_cuda(f).status == "skip"


def test_tensorflow_import_failure():
    f = facts(tf_error="ImportError: libcudnn.so.8", tf_version=None)
    assert c.check_tensorflow(f).status == "fail"
    gpus = c.check_gpus(f)
    assert gpus.status == "skip" and "NVML sees 1 GPU(s) (NVIDIA H200)" in gpus.message
    assert c.check_tensorflow(facts(tf_version="2.12.0")).status == "warn"


def test_driver_checked_against_tf29_wheels_when_tensorflow_is_missing():
    check = c.check_driver_cuda(facts(tf_error="ModuleNotFoundError: tensorflow", tf_cuda_build=None))
    assert check.status == "pass"
    assert "tensorflow 2.9's wheels need CUDA 11.2" in check.message


def test_tracking_without_mlflow_is_a_failed_check(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError("No module named 'mlflow'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:s3cret@127.0.0.1:1")
    found = c._tracking()
    assert "mlflow cannot be imported" in found["tracking_error"]
    assert "s3cret" not in found["tracking_uri"]


@pytest.mark.parametrize(
    "name,version,status",
    [
        ("numpy", "1.20.0", "pass"),
        ("numpy", "1.23.5", "pass"),
        ("numpy", "1.24.0", "fail"),
        ("numpy", "1.19.5", "fail"),
        ("numpy", None, "fail"),
        ("protobuf", "3.9.2", "pass"),
        ("protobuf", "3.19.6", "pass"),
        ("protobuf", "3.20.1", "fail"),
        ("protobuf", "4.21.0", "fail"),
        ("protobuf", "3.9.1", "fail"),
    ],
)
def test_numpy_and_protobuf_ranges(name, version, status):
    versions = {"numpy": "1.22.4", "protobuf": "3.19.6", name: version}
    result = {check.name: check for check in c.check_versions(facts(versions=versions))}
    assert result[name].status == status
    if status == "fail":
        assert "pip install" in result[name].fix


def test_docker_checks():
    assert c.check_docker(facts(docker_runtimes=("runc",))).status == "warn"  # GPUs but no nvidia
    assert c.check_docker(facts(docker_runtimes=("runc",), gpu=None)).status == "pass"
    host = ContainerInfo(in_container=False)
    unreachable = dict(docker_runtimes=None, docker_error="connection refused")
    assert c.check_docker(facts(container=host, **unreachable)).status == "fail"
    assert c.check_docker(facts(**unreachable)).status == "warn"  # inside a container


def test_tracking_git_and_image():
    assert c.check_tracking(facts(tracking_error="connection refused")).status == "fail"
    dirty = c.check_git(facts(git_changes=(" M train.py", "?? notes.txt")))
    assert dirty.status == "warn" and "2 uncommitted" in dirty.message and "patch" in dirty.message
    assert c.check_git(facts(git_root=None, git_error="not a git repository")).status == "warn"
    assert c.check_image(facts(container=ContainerInfo(in_container=False))).status == "warn"
    unknown = ContainerInfo(in_container=True, runtime="docker")
    assert c.check_image(facts(container=unknown)).status == "warn"
    assert c.check_image(facts(container=None, container_reason="boom")).status == "warn"


def test_version_helpers():
    assert version_tuple("3.19.6rc1") == (3, 19, 6)
    assert version_tuple(None) == ()
    assert c.cuda_int("11.2") == 11020 and c.cuda_int("13.0") == 13000


def test_gather_git_on_a_clean_repo(git_repo):
    clean = c._git(str(git_repo))
    assert clean["git_changes"] == () and clean["git_root"]


def test_gather_git_dirty(dirty_repo):
    assert len(c._git(str(dirty_repo))["git_changes"]) == 3


def test_gather_git_outside_a_repo(tmp_path):
    assert "git_error" in c._git(str(tmp_path))


def test_tracking_sqlite_checks_the_directory(tmp_path):
    assert "tracking_error" not in c._tracking("sqlite:///%s/mlflow.db" % tmp_path)
    assert not (tmp_path / "mlflow.db").exists()  # the check creates nothing
    assert "does not exist" in c._tracking("sqlite:///%s/nope/mlflow.db" % tmp_path)["tracking_error"]
