"""Hand-built Environment values for the inspect tests (show, diff, doctor, UI)."""

import json
import os

from tfrepro.environment import (
    ContainerInfo,
    Environment,
    GitInfo,
    GpuDevice,
    GpuInfo,
    ProcessInfo,
    PythonInfo,
    SystemInfo,
    TensorflowInfo,
)

H200_PROBE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "gpu", "h200-driver580", "probe.json")
DIGEST_A = "nvcr.io/nvidia/tensorflow@sha256:" + "a1" * 32
DIGEST_B = "nvcr.io/nvidia/tensorflow@sha256:" + "b2" * 32


def h200_gpu():
    """GpuInfo from the recorded NVML answers of a real H200 (driver 580.159.04, CUDA 13.0)."""
    path = os.environ.get("TFREPRO_H200_PROBE", H200_PROBE)
    with open(path) as f:
        nvml = json.load(f)["pynvml"]
    devices = tuple(
        GpuDevice(
            index=i,
            name=d["name"],
            uuid=d["uuid"],
            memory_total_bytes=d["memory_total"],
            compute_capability="%d.%d" % tuple(d["compute_capability"]),
            mig_mode="enabled" if d["mig_mode"][0] == 1 else "disabled",
            pci_bus_id=d["pci_bus_id"],
        )
        for i, d in enumerate(nvml["devices"])
    )
    return GpuInfo(
        count=nvml["device_count"],
        driver_version=nvml["driver_version"],
        cuda_driver_version=nvml["cuda_driver_version"],
        nvml_version=nvml["nvml_version"],
        devices=devices,
    )


PACKAGES_A = (
    "absl-py==1.4.0",
    "keras==2.9.0",
    "numpy==1.22.4",
    "protobuf==3.19.6",
    "scipy==1.8.1",
    "tensorflow==2.9.1",
)
PACKAGES_B = (
    "absl-py==1.4.0",
    "keras==2.9.0",
    "numpy==1.23.5",
    "pandas==1.5.3",
    "protobuf==3.19.6",
    "tensorflow==2.9.1",
)


def make_env(digest=DIGEST_A, packages=PACKAGES_A, commit="3f2a" * 10, hostname="gpu-node-1", gpu=None, **tf_overrides):
    tf = dict(
        version="2.9.1",
        cuda_build="11.7",
        cudnn_build="8",
        imported=True,
        seed=42,
        determinism={"op_determinism": True, "TF_DETERMINISTIC_OPS": "1"},
        devices=("/physical_device:CPU:0", "/physical_device:GPU:0"),
    )
    tf.update(tf_overrides)
    return Environment(
        collected_at="2026-11-26T21:40:00+00:00",
        tfrepro_version="0.1.0",
        container=ContainerInfo(
            in_container=True,
            evidence=("/.dockerenv",),
            runtime="docker",
            container_id="c0ffee" * 10 + "abcd",
            image_ref="nvcr.io/nvidia/tensorflow:22.07-tf2-py3",
            image_digest=digest,
            image_id="sha256:" + "9" * 64,
            digest_source="launcher",
            ngc={"CUDA_VERSION": "11.7.1", "CUDNN_VERSION": "8.4.1"},
        ),
        git=GitInfo(
            commit=commit,
            branch="main",
            remote_url="https://example.com/team/project.git",
            dirty=False,
            root="/workspace",
            workdir=".",
        ),
        gpu=gpu if gpu is not None else h200_gpu(),
        tensorflow=TensorflowInfo(**tf),
        python=PythonInfo(version="3.8.10", implementation="CPython", executable="/usr/bin/python", packages=packages),
        system=SystemInfo(
            os="Ubuntu 20.04.4 LTS",
            kernel="6.8.0",
            machine="x86_64",
            cpu_count=16,
            memory_bytes=128 << 30,
            hostname=hostname,
        ),
        process=ProcessInfo(
            argv=("python", "train.py", "--epochs", "2"),
            cwd="/workspace",
            entry_script="train.py",
            python_executable="/usr/bin/python",
        ),
    )


def log_run(client, experiment_id, env, params=None, metrics=None, run_name=None):
    """Log a run the way tfrepro does: tags from to_tags() and the environment.json artifact."""
    run = client.create_run(experiment_id, tags=env.to_tags(), run_name=run_name)
    run_id = run.info.run_id
    client.log_text(run_id, env.to_json(), "tfrepro/environment.json")
    for key, value in (params or {}).items():
        client.log_param(run_id, key, value)
    for key, value in (metrics or {}).items():
        client.log_metric(run_id, key, value)
    client.set_terminated(run_id)
    return run_id
