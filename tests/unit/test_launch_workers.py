"""Multi-worker launches, the pure half: the shape, TF_CONFIG per worker, the Slurm task's bash
that computes it from SLURM_PROCID (run by bash here), and one-host previews of N containers."""

import json
import os
import subprocess

import pytest

from tfrepro.errors import UsageError
from tfrepro.launch import engines, settings, workers
from tfrepro.launch.job import Job
from tfrepro.launch.spec import LaunchSpec, Mount

DIGEST = "127.0.0.1:5555/tfrepro-test@sha256:" + "ab" * 32


def spec(**changes):
    fields = dict(
        image=DIGEST,
        command=("python", "train.py"),
        mounts=(Mount("/home/me/repo", "/workspace", False, "repo"),),
        env={"MLFLOW_RUN_ID": "r1"},
        labels={"tfrepro.run_id": "r1"},
    )
    fields.update(changes)
    return LaunchSpec(**fields)


def test_tf_config_names_every_worker_and_the_task():
    config = json.loads(workers.tf_config(["a:1", "b:2"], 1))
    assert config == {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    with pytest.raises(ValueError):
        workers.tf_config(["a:1"], 1)


def test_one_host_gives_distinct_ports():
    shape = workers.Shape(workers=3, base_port=40000)
    assert workers.local_addresses(shape) == ["localhost:40000", "localhost:40001", "localhost:40002"]


@pytest.mark.parametrize(
    "shape, message",
    [
        (workers.Shape(workers=0), "--workers must be at least 1"),
        (workers.Shape(workers=2, tasks_per_node=3), "--tasks-per-node must be between 1 and --workers"),
        (workers.Shape(workers=2, base_port=80), "ports must lie in 1024-65535"),
        (workers.Shape(workers=2, base_port=65535), "ports must lie in 1024-65535"),
        (workers.Shape(workers=2, gpus_per_task="all"), "--gpus-per-task must be a count"),
        (workers.Shape(workers=2, gpus_per_task="x"), "--gpus must be all, a count or none"),
        (workers.Shape(workers=2, timeout_s=0), "--timeout must be positive"),
    ],
)
def test_shape_refusals(shape, message):
    with pytest.raises(UsageError, match=message):
        workers.check_shape(shape)


def test_no_shape_is_one_worker():
    assert workers.check_shape(None) == workers.ONE and not workers.ONE.multi


def test_a_local_worker_gets_its_tf_config_label_and_gpu_slice():
    shape = workers.check_shape(workers.Shape(workers=2, gpus_per_task="2"))
    worker = workers.local_worker_spec(spec(gpus="all"), shape, 1)
    assert json.loads(worker.env["TF_CONFIG"])["task"] == {"type": "worker", "index": 1}
    assert worker.env["TFREPRO_WORKER_INDEX"] == "1" and worker.env["TFREPRO_WORKERS"] == "2"
    assert worker.env["MLFLOW_RUN_ID"] == "r1"
    assert worker.labels == {"tfrepro.run_id": "r1", "tfrepro.worker": "1"}
    assert worker.gpus is None and workers.worker_devices(shape, 1) == ["2", "3"]
    assert workers.worker_devices(workers.Shape(workers=2), 1) is None


def test_slurm_tasks_per_node():
    assert workers.slurm_tasks_per_node(workers.Shape(workers=4), None) == 4
    assert workers.slurm_tasks_per_node(workers.Shape(workers=5), 2) == 3
    assert workers.slurm_tasks_per_node(workers.Shape(workers=4, tasks_per_node=1), 4) == 1


@pytest.mark.parametrize("hosts, per_node", [("vm", 2), ("node-a node-b", 1), ("n1 n2", 2)])
def test_the_slurm_tasks_bash_computes_what_tf_config_gives(hosts, per_node):
    shape = workers.Shape(workers=2 if per_node == 1 or " " not in hosts else 4)
    names = hosts.split()
    addresses = [
        "%s:%d" % (names[index // per_node], workers.DEFAULT_BASE_PORT + index) for index in range(shape.workers)
    ]
    script = "\n".join(["set -euo pipefail"] + workers.slurm_tf_config(shape, per_node) + ['printf %s "$TF_CONFIG"'])
    for index in range(shape.workers):
        env = dict(os.environ, TFREPRO_WORKER_HOSTS=hosts, SLURM_PROCID=str(index))
        out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True).stdout
        assert out == workers.tf_config(addresses, index)  # the same text, not only the same JSON


def test_settings_record_the_shape_and_the_wiring():
    shape = workers.Shape(workers=2, gpus_per_task="1")
    assert workers.settings(shape, workers.WIRING_SLURM) == {
        "workers": 2,
        "base_port": workers.DEFAULT_BASE_PORT,
        "gpus_per_task": "1",
        "wiring": "TF_CONFIG from SLURM_PROCID",
    }
    docker = engines.get("docker", settings.Options())
    assert docker.settings() == {"backend": "docker"} == docker.settings(workers.ONE)
    assert docker.settings(shape)["shape"]["wiring"] == "TF_CONFIG per container"


def test_docker_preview_of_two_workers_is_two_commands():
    docker = engines.get("docker", settings.Options())
    shape = workers.Shape(workers=2, gpus_per_task="1")
    lines = docker.preview(Job(spec(gpus="all"), shape=shape)).splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("docker run --rm --network host --gpus '\"device=1\"' -v ")
    assert '-e \'TF_CONFIG={"cluster": {"worker": ["localhost:23456", "localhost:23457"]}' in lines[1]
    assert docker.preview(Job(spec())) == docker.preview(Job(spec(), shape=workers.ONE))


def test_podman_preview_gives_each_worker_its_devices_and_label():
    podman = engines.get("podman", settings.Options())
    lines = podman.preview(Job(spec(), shape=workers.Shape(workers=2, gpus_per_task="1"))).splitlines()
    assert "--device nvidia.com/gpu=1 --label tfrepro.run_id=r1 --label tfrepro.worker=1" in lines[1]


def test_one_host_needs_the_host_network_and_no_tasks_per_node():
    docker = engines.get("docker", settings.Options())
    with pytest.raises(UsageError, match="needs the host network"):
        docker.check(Job(spec(network="bridge"), shape=workers.Shape(workers=2)))
    with pytest.raises(UsageError, match="--tasks-per-node: docker and podman run every worker on this host"):
        docker.check(Job(spec(), shape=workers.Shape(workers=2, tasks_per_node=1)))
    docker.check(Job(spec(network="bridge")))  # one worker: as before
