"""The pod of a tfrepro Job, part by part (kubernetes.py assembles the Job from them).

Pure, like kubernetes.py: each function takes the kubernetes `client` models module.
    volumes()         the spec's mounts, /dev/shm and the downward-API labels file
    env()             the spec's variables (secret ones from the env Secret), the pod's facts, TF_CONFIG
    init_container()  clones the commit, applies the patch and writes the launch hook (CHECKOUT_SCRIPT)
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

from tfrepro import schema
from tfrepro.errors import UsageError
from tfrepro.launch import workers
from tfrepro.launch.spec import CLAIM_PREFIX, LaunchSpec
from tfrepro.redact import is_secret

CONTAINER = "train"
INIT_CONTAINER = "checkout"
PODINFO = "/etc/podinfo"
MAX_PATCH = 512 * 1024  # the whole Job must stay well under etcd's 1.5 MB object limit
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
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


def quantity(size: Optional[str]) -> Optional[str]:
    """docker's size (binary units) -> a Kubernetes quantity: 8g -> 8Gi, 512m -> 512Mi."""
    if not size:
        return None
    suffix = {"k": "Ki", "m": "Mi", "g": "Gi"}.get(size[-1])
    return size[:-1] + suffix if suffix else size.rstrip("b")


def volumes(spec: LaunchSpec, client):
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


def env(
    spec: LaunchSpec,
    secret_names: Sequence[str],
    env_secret: str,
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
                        secret_key_ref=client.V1SecretKeySelector(name=env_secret, key=key)
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


def init_container(
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
