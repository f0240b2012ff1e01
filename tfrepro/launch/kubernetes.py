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
The `kubernetes` package is imported lazily: only this engine needs it (tfrepro[kubernetes]).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Sequence, Union

from tfrepro import imageref, schema
from tfrepro.errors import UsageError
from tfrepro.launch import workers
from tfrepro.launch.spec import CLAIM_PREFIX, LaunchSpec
from tfrepro.redact import is_secret
from tfrepro.termsafe import safe

CONTAINER = "train"
INIT_CONTAINER = "checkout"
PODINFO = "/etc/podinfo"
NEW_RUN = "new-run"  # stands for the run id in a dry run: the run is created on submit
MAX_PATCH = 512 * 1024  # the whole Job must stay well under etcd's 1.5 MB object limit
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
WORKER_PORT = "worker"
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

# Fetch by sha (servers that allow it), else everything; detach at the commit; apply the patch.
CHECKOUT_SCRIPT = """set -eu
if [ -n "${TFREPRO_HOOK:-}" ]; then
  printf %s "$TFREPRO_HOOK" | base64 -d > "$TFREPRO_HOOK_DIR/sitecustomize.py"
fi
if [ -n "${TFREPRO_HOOK_IMPORT:-}" ]; then
  printf %s "$TFREPRO_HOOK_IMPORT" | base64 -d > "$TFREPRO_HOOK_DIR/tfrepro_import_hook.py"
fi
if [ -n "${TFREPRO_HOOK_DETERMINISM:-}" ]; then
  printf %s "$TFREPRO_HOOK_DETERMINISM" | base64 -d > "$TFREPRO_HOOK_DIR/tfrepro_determinism.py"
fi
cd "$TFREPRO_REPO"
git init -q .
git remote add origin "$TFREPRO_GIT_REMOTE"
git fetch -q --depth 1 origin "$TFREPRO_GIT_COMMIT" || git fetch -q origin
git -c advice.detachedHead=false checkout -q "$TFREPRO_GIT_COMMIT"
if [ -n "${TFREPRO_GIT_PATCH:-}" ]; then
  printf %s "$TFREPRO_GIT_PATCH" | base64 -d | git apply --whitespace=nowarn
fi
echo "tfrepro: checked out $TFREPRO_GIT_COMMIT${TFREPRO_GIT_PATCH:+ with the recorded patch}"
"""


@dataclass(frozen=True)
class Source:
    """What the init container checks out: the repository as replay would restore it."""

    remote: str
    commit: str
    patch: str = ""


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


def check_options(options: KubernetesOptions) -> KubernetesOptions:
    if not DNS_LABEL_RE.match(options.namespace or ""):
        raise UsageError("--namespace %r is not a valid namespace name" % options.namespace)
    for what, value in (
        ("--service-account", options.service_account),
        ("--image-pull-secret", options.image_pull_secret),
        ("env secret", options.env_secret),
    ):
        if value is not None and not DNS_SUBDOMAIN_RE.match(value):
            raise UsageError("%s %r is not a valid Kubernetes name" % (what, value))
    if options.ttl_seconds < 0:
        raise UsageError("ttlSecondsAfterFinished must be >= 0")
    return options


def quantity(size: Optional[str]) -> Optional[str]:
    """docker's size (binary units) -> a Kubernetes quantity: 8g -> 8Gi, 512m -> 512Mi."""
    if not size:
        return None
    suffix = {"k": "Ki", "m": "Mi", "g": "Gi"}.get(size[-1])
    return size[:-1] + suffix if suffix else size.rstrip("b")


def job_name(run_id: Optional[str]) -> str:
    return "tfrepro-" + (run_id or NEW_RUN)


def _volumes(spec: LaunchSpec, client):
    """(pod volumes, container mounts) for the spec's mounts, shm and the downward API."""
    volumes, mounts = [], []
    for index, mount in enumerate(spec.mounts):
        name = "%s-%d" % (mount.kind, index)
        if mount.kind in ("repo", "hook"):  # filled by the init container
            source = {"empty_dir": client.V1EmptyDirVolumeSource()}
        elif mount.kind in ("tracking", "docker-socket"):
            raise UsageError(
                "--on kubernetes: %s cannot be mounted into a pod (%s); use an http(s) tracking server"
                % (mount.source, "a local tracking store" if mount.kind == "tracking" else "the Docker socket")
            )
        elif mount.source.startswith(CLAIM_PREFIX):
            claim = mount.source[len(CLAIM_PREFIX) :]
            if not DNS_SUBDOMAIN_RE.match(claim):
                raise UsageError("volume %r: %r is not a valid claim name" % (mount.source, claim))
            source = {
                "persistent_volume_claim": client.V1PersistentVolumeClaimVolumeSource(
                    claim_name=claim, read_only=mount.read_only or None
                )
            }
        elif mount.source.startswith("/"):
            source = {"host_path": client.V1HostPathVolumeSource(path=mount.source)}
        else:
            raise UsageError("volume %r: on kubernetes use pvc:CLAIM:/path or an absolute host path" % mount.source)
        volumes.append(client.V1Volume(name=name, **source))
        mounts.append(client.V1VolumeMount(name=name, mount_path=mount.target, read_only=mount.read_only or None))
    if spec.shm_size:
        volumes.append(
            client.V1Volume(
                name="dshm",
                empty_dir=client.V1EmptyDirVolumeSource(medium="Memory", size_limit=quantity(spec.shm_size)),
            )
        )
        mounts.append(client.V1VolumeMount(name="dshm", mount_path="/dev/shm"))
    volumes.append(
        client.V1Volume(
            name="podinfo",
            downward_api=client.V1DownwardAPIVolumeSource(
                items=[
                    client.V1DownwardAPIVolumeFile(
                        path="labels", field_ref=client.V1ObjectFieldSelector(field_path="metadata.labels")
                    )
                ]
            ),
        )
    )
    mounts.append(client.V1VolumeMount(name="podinfo", mount_path=PODINFO, read_only=True))
    return volumes, mounts


def _env(
    spec: LaunchSpec,
    secret_names: Sequence[str],
    options: KubernetesOptions,
    name: str,
    client,
    shape: workers.Shape = workers.ONE,
):
    env = []
    for key, value in spec.env.items():
        if is_secret(key) or key in secret_names:
            env.append(
                client.V1EnvVar(
                    name=key,
                    value_from=client.V1EnvVarSource(
                        secret_key_ref=client.V1SecretKeySelector(name=options.env_secret, key=key)
                    ),
                )
            )
        else:
            env.append(client.V1EnvVar(name=key, value=value))
    for key, path in (
        ("TFREPRO_POD_NAME", "metadata.name"),
        ("TFREPRO_POD_NAMESPACE", "metadata.namespace"),
        ("TFREPRO_NODE_NAME", "spec.nodeName"),
    ):
        env.append(
            client.V1EnvVar(
                name=key, value_from=client.V1EnvVarSource(field_ref=client.V1ObjectFieldSelector(field_path=path))
            )
        )
    env.append(client.V1EnvVar(name="TFREPRO_K8S_JOB", value=name))
    if shape.multi:  # the index first: TF_CONFIG's $(TFREPRO_WORKER_INDEX) expands only an earlier variable
        index = client.V1EnvVarSource(field_ref=client.V1ObjectFieldSelector(field_path=COMPLETION_INDEX))
        config = workers.tf_config(workers.kubernetes_addresses(shape, name, name), 0)
        env += [
            client.V1EnvVar(name=workers.WORKER_INDEX, value_from=index),
            client.V1EnvVar(name=workers.WORKER_COUNT, value=str(shape.workers)),
            client.V1EnvVar(
                name=workers.TF_CONFIG,
                value=config.replace('"index": 0}', '"index": $(%s)}' % workers.WORKER_INDEX),
            ),
        ]
    return env


# each file of the hook directory (hooks.HOOK_FILES) travels in a variable of the init container
HOOK_VARIABLES = (
    ("sitecustomize.py", schema.ENV_HOOK),
    ("tfrepro_import_hook.py", schema.ENV_HOOK_IMPORT),
    ("tfrepro_determinism.py", schema.ENV_HOOK_DETERMINISM),
)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogateescape")).decode("ascii")


def _init_container(
    spec: LaunchSpec, source: Source, repo_mount, hook_mount, hook: Union[str, Mapping[str, str]], client
):
    patch = _b64(source.patch) if source.patch.strip() else None
    if patch and len(patch) > MAX_PATCH:
        raise UsageError(
            "the patch is %d KiB: too large to travel in a Job manifest (commit it first)" % (len(patch) // 1024)
        )
    env = [
        client.V1EnvVar(name="TFREPRO_REPO", value=repo_mount.mount_path),
        client.V1EnvVar(name="TFREPRO_GIT_REMOTE", value=source.remote),
        client.V1EnvVar(name="TFREPRO_GIT_COMMIT", value=source.commit),
    ]
    if patch:
        env.append(client.V1EnvVar(name="TFREPRO_GIT_PATCH", value=patch))
    mounts = [repo_mount]
    if hook_mount is not None:
        files = {"sitecustomize.py": hook} if isinstance(hook, str) else dict(hook)
        if not files.get("sitecustomize.py"):
            raise UsageError("--on kubernetes: the launch hook's source is missing")
        env.append(client.V1EnvVar(name="TFREPRO_HOOK_DIR", value=hook_mount.mount_path))
        env += [
            client.V1EnvVar(name=variable, value=_b64(files[name]))
            for name, variable in HOOK_VARIABLES
            if name in files
        ]
        mounts.append(client.V1VolumeMount(name=hook_mount.name, mount_path=hook_mount.mount_path))
    return client.V1Container(
        name=INIT_CONTAINER, image=spec.image, command=["sh", "-c", CHECKOUT_SCRIPT], env=env, volume_mounts=mounts
    )


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
    volumes, mounts = _volumes(spec, client)
    repo_mounts = [mount for mount in mounts if mount.name.startswith("repo-")]
    if len(repo_mounts) != 1:
        raise UsageError("--on kubernetes: the spec must mount the repository exactly once")
    hook_mount = next((mount for mount in mounts if mount.name.startswith("hook-")), None)
    limits: Dict[str, str] = {}
    if spec.gpus is not None:
        limits["nvidia.com/gpu"] = spec.gpus
    if spec.memory:
        limits["memory"] = quantity(spec.memory)
    container = client.V1Container(
        name=CONTAINER,
        image=spec.image,
        args=list(spec.command),
        working_dir=spec.cwd,
        env=_env(spec, secret_names, options, name, client, shape),
        volume_mounts=mounts,
        resources=client.V1ResourceRequirements(limits=limits) if limits else None,
        ports=[client.V1ContainerPort(name=WORKER_PORT, container_port=shape.base_port)] if shape.multi else None,
    )
    pod = client.V1PodSpec(
        restart_policy="Never",
        containers=[container],
        volumes=volumes,
        init_containers=[_init_container(spec, source, repo_mounts[0], hook_mount, hook, client)],
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
