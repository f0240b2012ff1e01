"""Scheduler source: the Slurm job or Kubernetes pod this process runs in.

Works from inside any job, whoever submitted it: a plain `sbatch` script or `kubectl apply`
needs no `tfrepro run`.
  slurm       SLURM_JOB_ID, SLURM_JOB_NAME, SLURM_JOB_NODELIST, SLURM_JOB_PARTITION,
              SLURM_CLUSTER_NAME, SLURM_JOB_ACCOUNT (set by slurmd in every job; tfrepro's
              batch scripts pass them on into the container)
  kubernetes  pod, namespace and node from downward-API env variables (TFREPRO_POD_NAME or
              POD_NAME, ...), the owning Job from the pod's labels (a downward-API volume at
              /etc/podinfo/labels, or TFREPRO_K8S_JOB), the namespace also from the service
              account; the pod name falls back to HOSTNAME, which Kubernetes sets to it
query() does the I/O (env and two small files); parse() is pure. Python 3.8 compatible.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, Mapping, Optional

from tfrepro import schema
from tfrepro.environment import SchedulerInfo
from tfrepro.fingerprint import NotApplicable, read_text

ROOT = "/"  # tests point this at a folder holding recorded files
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
LABELS_FILE = "/etc/podinfo/labels"

SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_JOBID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_NODELIST",
    "SLURM_NODELIST",
    "SLURM_JOB_PARTITION",
    "SLURM_CLUSTER_NAME",
    "SLURM_JOB_ACCOUNT",
)
# downward-API names: ours first, then the ones Kubernetes' own examples use
POD_VARS = (schema.ENV_POD_NAME, "POD_NAME", "MY_POD_NAME")
NAMESPACE_VARS = (schema.ENV_POD_NAMESPACE, "POD_NAMESPACE", "MY_POD_NAMESPACE")
NODE_VARS = (schema.ENV_NODE_NAME, "NODE_NAME", "MY_NODE_NAME", "KUBE_NODE_NAME")
JOB_VARS = (schema.ENV_K8S_JOB,)
K8S_VARS = ("KUBERNETES_SERVICE_HOST", "HOSTNAME") + POD_VARS + NAMESPACE_VARS + NODE_VARS + JOB_VARS
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
JOB_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")

_LABEL_LINE = re.compile(r'^([^=\s]+)="(.*)"$')


def query(root: Optional[str] = None, environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    root = root or ROOT
    environ = os.environ if environ is None else environ
    raw: Dict[str, Any] = {"env": {k: environ[k] for k in SLURM_VARS + K8S_VARS if environ.get(k)}}
    if environ.get("KUBERNETES_SERVICE_HOST"):
        raw["namespace"] = read_text(root, NAMESPACE_FILE)
        raw["labels"] = read_text(root, LABELS_FILE)
    return raw


def parse_labels(text: str) -> Dict[str, str]:
    """A downward-API labels file: one `key="value"` per line (Go-quoted values)."""
    labels = {}
    for line in (text or "").splitlines():
        match = _LABEL_LINE.match(line.strip())
        if match:
            labels[match.group(1)] = match.group(2).replace('\\"', '"').replace("\\\\", "\\")
    return labels


def _first(env: Mapping[str, str], names) -> Optional[str]:
    return next((env[n].strip() for n in names if (env.get(n) or "").strip()), None)


def parse_slurm(env: Mapping[str, str]) -> SchedulerInfo:
    return SchedulerInfo(
        kind="slurm",
        job_id=_first(env, ("SLURM_JOB_ID", "SLURM_JOBID")),
        job_name=_first(env, ("SLURM_JOB_NAME",)),
        nodes=_first(env, ("SLURM_JOB_NODELIST", "SLURM_NODELIST")),
        partition=_first(env, ("SLURM_JOB_PARTITION",)),
        cluster=_first(env, ("SLURM_CLUSTER_NAME",)),
        account=_first(env, ("SLURM_JOB_ACCOUNT",)),
    )


def parse_kubernetes(
    env: Mapping[str, str], namespace_file: Optional[str], labels_file: Optional[str]
) -> SchedulerInfo:
    labels = parse_labels(labels_file or "")
    return SchedulerInfo(
        kind="kubernetes",
        job_id=_first(labels, JOB_UID_LABELS),
        job_name=_first(labels, JOB_NAME_LABELS) or _first(env, JOB_VARS),
        nodes=_first(env, NODE_VARS),
        pod=_first(env, POD_VARS) or _first(env, ("HOSTNAME",)),
        namespace=_first(env, NAMESPACE_VARS) or (namespace_file or "").strip() or None,
    )


def parse(raw: Mapping[str, Any]) -> SchedulerInfo:
    """Pure. A Slurm job wins over Kubernetes (a Slurm cluster may run inside pods)."""
    env = raw.get("env") or {}
    if _first(env, ("SLURM_JOB_ID", "SLURM_JOBID")):
        return parse_slurm(env)
    if env.get("KUBERNETES_SERVICE_HOST"):
        return parse_kubernetes(env, raw.get("namespace"), raw.get("labels"))
    raise NotApplicable("not in a Slurm job or a Kubernetes pod")


def collect() -> SchedulerInfo:
    return parse(query())
