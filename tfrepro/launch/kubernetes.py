"""Kubernetes: a LaunchSpec -> a batch/v1 Job, built with the official client's models.

Pure: no API server is contacted here (kubernetes_job.py submits). The pod gets:
  - the image by digest; the recorded argv as `args` (like `docker run IMAGE ARGV...`, the
    image's ENTRYPOINT is kept: NGC images need theirs);
  - env, with secret values taken from a Kubernetes Secret (secretKeyRef), never written;
  - limits nvidia.com/gpu and memory; /dev/shm as a memory-backed emptyDir of the shm size;
  - volumes: `pvc:NAME` sources are PersistentVolumeClaims, absolute paths hostPath;
  - the repository in an emptyDir, filled by an init container (the same image, which has
    git) that fetches the commit and applies the recorded patch; the launch hook
    (sitecustomize.py, hooks.py) in another emptyDir, written by the same init container;
  - downward-API facts for the scheduler source: pod, namespace, node, and the labels file.
The Job: labels tfrepro.run_id, backoffLimit 0, ttlSecondsAfterFinished, restartPolicy Never.

N workers (workers.Shape): an Indexed Job (completionMode Indexed, completions = parallelism
= N) and a headless Service of the same name (build_service). Pod i is reachable at
<job>-<i>.<service>:base_port; its index comes from the annotation the Job controller sets
(batch.kubernetes.io/job-completion-index), read through the downward API into
TFREPRO_WORKER_INDEX, which TF_CONFIG takes in with Kubernetes' own $(VAR) expansion: no shell
in the pod. backoffLimit 0 fails the whole Job at the first worker that fails, and its
controller stops the others; activeDeadlineSeconds bounds it when a timeout is given.
The pod's parts (volumes, env, the init container) are built in kubernetes_pod.py.
The `kubernetes` package is imported lazily: only this engine needs it (tfrepro[kubernetes]).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Sequence, Union

from tfrepro import imageref
from tfrepro.errors import UsageError
from tfrepro.launch import kubernetes_pod, workers
from tfrepro.launch.kubernetes_pod import CHECKOUT_SCRIPT, CONTAINER, DNS_SUBDOMAIN_RE, Source
from tfrepro.launch.spec import LaunchSpec
from tfrepro.redact import is_secret
from tfrepro.termsafe import safe

NEW_RUN = "new-run"  # stands for the run id in a dry run: the run is created on submit
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
WORKER_PORT = "worker"


@dataclass(frozen=True)
class KubernetesOptions:
    namespace: str = "default"
    service_account: Optional[str] = None
    image_pull_secret: Optional[str] = None
    env_secret: str = "tfrepro-env"  # the Secret holding values of secret variables, by name
    ttl_seconds: int = 86400


def _client():
    try:
        from kubernetes import client
    except ImportError:
        raise UsageError("--on kubernetes needs the kubernetes package: pip install 'tfrepro[kubernetes]'") from None
    return client


# the options that name a Kubernetes object, as a user spells each one
OBJECT_NAMES = (
    ("--service-account", "service_account"),
    ("--image-pull-secret", "image_pull_secret"),
    ("env secret", "env_secret"),
)


def check_options(options: KubernetesOptions) -> KubernetesOptions:
    if not DNS_LABEL_RE.match(options.namespace or ""):
        raise UsageError("--namespace %r is not a valid namespace name" % options.namespace)
    for what, field_name in OBJECT_NAMES:
        value = getattr(options, field_name)
        if value is not None and not DNS_SUBDOMAIN_RE.match(value):
            raise UsageError("%s %r is not a valid Kubernetes name" % (what, value))
    if options.ttl_seconds < 0:
        raise UsageError("ttlSecondsAfterFinished must be >= 0")
    return options


def job_name(run_id: Optional[str]) -> str:
    return "tfrepro-" + (run_id or NEW_RUN)


def build_job(
    spec: LaunchSpec,
    source: Source,
    options: KubernetesOptions,
    secret_names: Sequence[str] = (),
    hook: Union[str, Mapping[str, str]] = "",
    shape: Optional[workers.Shape] = None,
):
    """The V1Job for `spec` (options through check_options() first); `hook` is the text of
    the launch hook (sitecustomize.py) when the spec mounts it. With N workers (`shape`), an
    Indexed Job whose pods find each other through build_service()."""
    client = _client()
    shape = workers.check_shape(shape)
    if shape.tasks_per_node is not None:
        raise UsageError("--tasks-per-node: on kubernetes each worker is a pod (the scheduler places them)")
    if shape.gpus_per_task is not None:
        spec = replace(spec, gpus=shape.gpus_per_task)  # a pod's GPUs are its own
    imageref.check_digest_ref(spec.image)  # a cluster pulls from a registry: a host-only image id cannot run
    if not source.remote or not source.commit:
        raise UsageError("--on kubernetes needs the commit and a remote the cluster can clone")
    if spec.gpus == "all":
        raise UsageError("--gpus all: a pod must ask for a number of GPUs (--gpus N)")
    run_id = spec.labels.get("tfrepro.run_id")
    if run_id and not DNS_LABEL_RE.match(run_id):
        run_id = None  # a dry run's placeholder: the run is created on submit
    name = job_name(run_id)
    labels = {"tfrepro.run_id": run_id or NEW_RUN}
    volumes, mounts = kubernetes_pod.volumes(spec, client)
    repo_mounts = [mount for mount in mounts if mount.name.startswith("repo-")]
    if len(repo_mounts) != 1:
        raise UsageError("--on kubernetes: the spec must mount the repository exactly once")
    hook_mount = next((mount for mount in mounts if mount.name.startswith("hook-")), None)
    limits: Dict[str, str] = {}
    if spec.gpus is not None:
        limits["nvidia.com/gpu"] = spec.gpus
    memory = kubernetes_pod.quantity(spec.memory)
    if memory:
        limits["memory"] = memory
    container = client.V1Container(
        name=CONTAINER,
        image=spec.image,
        args=list(spec.command),
        working_dir=spec.cwd,
        env=kubernetes_pod.env(spec, secret_names, options.env_secret, name, client, shape),
        volume_mounts=mounts,
        resources=client.V1ResourceRequirements(limits=limits) if limits else None,
        ports=[client.V1ContainerPort(name=WORKER_PORT, container_port=shape.base_port)] if shape.multi else None,
    )
    pod = client.V1PodSpec(
        restart_policy="Never",
        containers=[container],
        volumes=volumes,
        init_containers=[kubernetes_pod.init_container(spec, source, repo_mounts[0], hook_mount, hook, client)],
        service_account_name=options.service_account,
        image_pull_secrets=[client.V1LocalObjectReference(name=options.image_pull_secret)]
        if options.image_pull_secret
        else None,
        subdomain=name if shape.multi else None,  # pod i is <name>-<i>.<name>, the headless Service
    )
    job_spec = client.V1JobSpec(
        backoff_limit=0,
        ttl_seconds_after_finished=options.ttl_seconds,
        template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels), spec=pod),
    )
    if shape.multi:
        job_spec.completion_mode = "Indexed"
        job_spec.completions = job_spec.parallelism = shape.workers
        if shape.timeout_s is not None:
            job_spec.active_deadline_seconds = max(1, int(-(-shape.timeout_s // 1)))
    return client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(name=name, namespace=options.namespace, labels=labels),
        spec=job_spec,
    )


def build_service(job, shape: workers.Shape):
    """The headless Service that gives the workers of `job` their DNS names (no cluster IP;
    not-ready pods are published too: a worker resolves its peers before they are ready)."""
    client = _client()
    labels = dict(job.metadata.labels)
    return client.V1Service(
        api_version="v1",
        kind="Service",
        metadata=client.V1ObjectMeta(name=job.metadata.name, namespace=job.metadata.namespace, labels=labels),
        spec=client.V1ServiceSpec(
            cluster_ip="None",
            selector=labels,
            publish_not_ready_addresses=True,
            ports=[client.V1ServicePort(name=WORKER_PORT, port=shape.base_port, target_port=WORKER_PORT)],
        ),
    )


def to_dict(job) -> Dict[str, object]:
    """The manifest as the API server receives it (camelCase, no nulls)."""
    return _client().ApiClient().sanitize_for_serialization(job)


def to_list(objects) -> Dict[str, object]:
    """Several objects as one JSON document, as `kubectl get -o json` prints them (a v1 List)."""
    return {"apiVersion": "v1", "kind": "List", "items": [to_dict(item) for item in objects]}


def to_yaml_documents(objects) -> str:
    """Several objects as one YAML stream, `---` between them (`kubectl apply -f -` takes it)."""
    return "---\n".join(to_yaml(item) for item in objects)


def to_yaml(job) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value):
        if value == CHECKOUT_SCRIPT:  # ours, and readable as a literal block
            style = "|"
        elif safe(value) != value:  # a recorded newline or escape stays inside one quoted line
            style = '"'
        else:
            style = None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(to_dict(job), Dumper=Dumper, sort_keys=False, default_flow_style=False, width=1000)


def secret_env_names(spec: LaunchSpec, secret_names: Sequence[str] = ()) -> List[str]:
    """What the env Secret must hold (`kubectl create secret generic NAME --from-literal=...`)."""
    return sorted(name for name in spec.env if is_secret(name) or name in secret_names)
