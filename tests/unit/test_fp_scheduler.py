"""Scheduler source: a real Slurm job's environment and a Kubernetes pod's downward API."""

import json
from pathlib import Path

import pytest

from tfrepro.environment import Environment
from tfrepro.fingerprint import NotApplicable, collect, scheduler

pytestmark = pytest.mark.py38

S = Path(__file__).resolve().parents[1] / "fixtures" / "scheduler"


def slurm_env():
    lines = (S / "slurm-env.txt").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_slurm_job_from_its_environment():
    raw = scheduler.query(root=str(S / "k8s-root"), environ=dict(slurm_env(), PATH="/bin"))
    assert "PATH" not in raw["env"] and "namespace" not in raw
    info = scheduler.parse(raw)
    assert (info.kind, info.job_id, info.job_name, info.nodes, info.partition, info.cluster) == (
        "slurm",
        "2",
        "train-fixture",
        "vm",
        "debug",
        "tfrepro",
    )
    assert info.account is None and info.pod is None  # no accounting on this cluster


def test_slurm_old_variable_names():
    info = scheduler.parse({"env": {"SLURM_JOBID": "7", "SLURM_NODELIST": "gpu[01-04]"}})
    assert (info.job_id, info.nodes, info.partition) == ("7", "gpu[01-04]", None)


def test_kubernetes_pod_from_downward_api_and_service_account():
    env = json.loads((S / "k8s-env.json").read_text())
    info = scheduler.parse(scheduler.query(root=str(S / "k8s-root"), environ=env))
    assert info.kind == "kubernetes"
    assert (info.pod, info.namespace, info.nodes) == ("tfrepro-5f0e2a91c3d4-x7k2p", "ml-team", "gpu-node-7")
    assert (info.job_name, info.job_id) == ("tfrepro-5f0e2a91c3d4", "3c1d9a8e-5b2f-4e7a-9d0c-2f6b8e1a4c77")


def test_kubernetes_without_downward_api():
    """A bare pod: its hostname is the pod name, the namespace comes from the service account."""
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "HOSTNAME": "trainer-0"}
    info = scheduler.parse({"env": env, "namespace": "default\n", "labels": None})
    assert (info.pod, info.namespace, info.nodes, info.job_name) == ("trainer-0", "default", None, None)
    env["TFREPRO_K8S_JOB"] = "tfrepro-abc"
    assert scheduler.parse({"env": env}).job_name == "tfrepro-abc"


def test_labels_file_quoting():
    assert scheduler.parse_labels('a="x \\"y\\""\nbroken\nb=""\n') == {"a": 'x "y"', "b": ""}


def test_neither_is_not_applicable(monkeypatch):
    with pytest.raises(NotApplicable):
        scheduler.parse(scheduler.query(environ={"PATH": "/bin"}))
    for name in scheduler.SLURM_VARS + ("KUBERNETES_SERVICE_HOST",):
        monkeypatch.delenv(name, raising=False)
    env = collect(("scheduler",))
    assert env.scheduler is None and "Slurm" in env.reasons["scheduler"]


def test_collect_inside_a_job_and_tags(monkeypatch):
    for name, value in slurm_env().items():
        monkeypatch.setenv(name, value)
    env = collect(("scheduler",))
    tags = env.to_tags()
    assert tags["tfrepro.scheduler"] == "slurm" and tags["tfrepro.scheduler.job_id"] == "2"
    assert tags["tfrepro.scheduler.nodes"] == "vm" and tags["tfrepro.scheduler.cluster"] == "tfrepro"
    assert "tfrepro.scheduler.pod" not in tags  # unknown facts are left out
    again = Environment.from_json(env.to_json())
    assert again.scheduler == env.scheduler
