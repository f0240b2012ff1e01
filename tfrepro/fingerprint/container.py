"""Container source: are we in a container, how do we know, and which image is it.

Detection reads /.dockerenv, /run/.containerenv, /proc/self/cgroup and /proc/self/mountinfo.
The image digest comes from the first source that knows it, in this order:
  launcher       TFREPRO_IMAGE_REF / TFREPRO_IMAGE_DIGEST / TFREPRO_IMAGE_ID, set by `tfrepro run`
  docker-socket  inspect our own container, then its image (docker-py, 1 s timeout)
  containerenv   podman's /run/.containerenv (image=, imageid=)
  kubernetes     our pod's containerStatuses[].imageID from the API server (1 s timeout)
query() does the I/O (sockets only when in a container and still without a digest);
parse() is pure. Python 3.8 compatible.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from tfrepro import schema
from tfrepro.environment import ContainerInfo
from tfrepro.fingerprint import read_text
from tfrepro.imageref import image_id, is_digest_ref, repository
from tfrepro.redact import is_secret

ROOT = "/"  # tests point this at a folder holding recorded files
TIMEOUT = 1.0  # seconds for the Docker socket and the Kubernetes API


_ID_IN_CGROUP = re.compile(r"([0-9a-f]{64})(?:\.scope)?$")
_ID_IN_MOUNT = re.compile(r"/(?:docker/containers|overlay-containers)/([0-9a-f]{64})/")
_ID_MOUNTPOINTS = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
_SHORT_ID = re.compile(r"^[0-9a-f]{12}$")  # docker's default hostname

# NGC images describe themselves in env vars: NVIDIA_TENSORFLOW_VERSION, CUDA_VERSION, ...
_NGC_PREFIXES = (
    "NVIDIA_",
    "CUDA_",
    "CUDNN_",
    "NCCL_",
    "TENSORRT_",
    "TRT_",
    "CUBLAS_",
    "CUFFT_",
    "CURAND_",
    "CUSOLVER_",
    "CUSPARSE_",
    "CUTENSOR_",
    "NPP_",
    "NVJPEG_",
    "DALI_",
    "OPENMPI_",
    "OPENUCX_",
    "RDMACORE_",
    "NSIGHT_",
    "TENSORFLOW_",
    "HOROVOD_",
)
_NGC_NAMES = (
    "NVIDIA_BUILD_ID",
    "NVIDIA_REQUIRE_CUDA",
    "NVIDIA_PRODUCT_NAME",
    "NVIDIA_DRIVER_CAPABILITIES",
    "NVIDIA_TENSORFLOW_VERSION",
)


def _path(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def ngc_env(environ: Mapping[str, str]) -> Dict[str, str]:
    """The NVIDIA/CUDA version variables an NGC image sets (never anything secret-looking)."""
    return {
        k: v
        for k, v in sorted(environ.items())
        if not is_secret(k) and (k in _NGC_NAMES or (k.startswith(_NGC_PREFIXES) and k.endswith("_VERSION")))
    }


def parse_cgroup(text: str) -> Tuple[Optional[str], Optional[str], int]:
    """/proc/self/cgroup -> (container id, runtime hint, cgroup version)."""
    lines = [line for line in text.splitlines() if line.strip()]
    version = 2 if lines and all(line.startswith("0::") for line in lines) else 1
    for line in lines:
        path = line.split(":", 2)[-1]
        match = _ID_IN_CGROUP.search(path)
        if match:
            hint = (
                "kubernetes"
                if "kubepods" in path
                else "podman"
                if "libpod" in path
                else "docker"
                if "docker" in path
                else None
            )
            return match.group(1), hint, version
    return None, None, version


def parse_mountinfo(text: str) -> Tuple[Optional[str], Optional[str]]:
    """/proc/self/mountinfo -> (container id, runtime) from the /etc/hostname-style bind mounts."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[4] not in _ID_MOUNTPOINTS:
            continue
        match = _ID_IN_MOUNT.search(fields[3])
        if match:
            return match.group(1), "podman" if "overlay-containers" in fields[3] else "docker"
    return None, None


def parse_containerenv(text: str) -> Dict[str, str]:
    """podman's /run/.containerenv: key="value" lines (empty unless podman filled it)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip('"')
    return fields


def detect(raw: Mapping[str, Any]) -> Dict[str, Any]:
    """Pure: in_container, evidence, runtime and container id from the files and env."""
    env = raw.get("env") or {}
    evidence: List[str] = []
    if raw.get("dockerenv"):
        evidence.append("/.dockerenv")
    if raw.get("containerenv") is not None:
        evidence.append("/run/.containerenv")
    if env.get("container"):
        evidence.append("container=%s" % env["container"])
    if env.get("KUBERNETES_SERVICE_HOST"):
        evidence.append("KUBERNETES_SERVICE_HOST")
    cid, hint, version = parse_cgroup(raw.get("cgroup") or "")
    if cid:
        evidence.append("cgroup v%d container id" % version)
    mount_id, mount_runtime = parse_mountinfo(raw.get("mountinfo") or "")
    if mount_id:
        evidence.append("mountinfo container id")
    in_container = bool(evidence)
    if in_container and not cid and raw.get("cgroup"):
        evidence.append("cgroup v%d without container id" % version)
    if env.get("KUBERNETES_SERVICE_HOST") or hint == "kubernetes":
        runtime = "kubernetes"
    elif (
        raw.get("containerenv") is not None
        or hint == "podman"
        or mount_runtime == "podman"
        or env.get("container") == "podman"
    ):
        runtime = "podman"
    elif raw.get("dockerenv") or hint == "docker" or mount_runtime == "docker":
        runtime = "docker"
    else:
        runtime = None
    return {
        "in_container": in_container,
        "evidence": evidence,
        "runtime": runtime if in_container else None,
        "container_id": cid or mount_id,
    }


def from_launcher(env: Mapping[str, str]) -> Dict[str, Any]:
    digest, iid = env.get(schema.ENV_IMAGE_DIGEST), env.get(schema.ENV_IMAGE_ID)
    found: Dict[str, Any] = {"image_ref": env.get(schema.ENV_IMAGE_REF) or None}
    if digest:
        if is_digest_ref(digest):
            found["image_digest"] = digest
        else:
            found["error"] = "%s is not repo@sha256:<64 hex>: %r" % (schema.ENV_IMAGE_DIGEST, digest[:100])
    if iid:
        found["image_id"] = image_id(iid)
        if not found["image_id"]:
            found["error"] = "%s is not sha256:<64 hex>: %r" % (schema.ENV_IMAGE_ID, iid[:100])
    if not digest and not iid and "error" not in found:
        found["error"] = "%s not set" % schema.ENV_IMAGE_DIGEST
    return found


def pick_digest(image_ref: Optional[str], repo_digests: List[str]) -> Optional[str]:
    """The RepoDigest matching the launched ref's repository, else the first valid one."""
    if is_digest_ref(image_ref):
        return image_ref
    valid = [d for d in repo_digests or () if is_digest_ref(d)]
    if image_ref:
        for digest in valid:
            if repository(digest) == repository(image_ref):
                return digest
    return valid[0] if valid else None


def from_docker(inspected: Mapping[str, Any]) -> Dict[str, Any]:
    """`docker inspect` container and image JSON -> ref, digest, id (and the full container id)."""
    if inspected.get("error"):
        return {"error": inspected["error"]}
    container, image = inspected.get("container") or {}, inspected.get("image") or {}
    ref = (container.get("Config") or {}).get("Image") or None
    found = {
        "image_ref": ref,
        "image_id": image_id(image.get("Id") or container.get("Image")),
        "image_digest": pick_digest(ref, image.get("RepoDigests") or []),
        "container_id": container.get("Id"),
    }
    if not found["image_digest"]:
        found["error"] = "image %s has no repo digest (built here, never pushed or pulled)" % (ref or found["image_id"])
    return found


def from_containerenv(fields: Mapping[str, str]) -> Dict[str, Any]:
    found = {
        "image_ref": fields.get("image") or None,
        "image_id": image_id(fields.get("imageid")),
        "container_id": fields.get("id") or None,
    }
    if not found["image_id"]:
        found["error"] = "/run/.containerenv has no imageid (podman fills it only for some containers)"
    return found


def _strip_scheme(value: str) -> str:
    for scheme in ("docker-pullable://", "docker://", "containerd://", "cri-o://"):
        if value.startswith(scheme):
            return value[len(scheme) :]
    return value


def from_pod(pod: Mapping[str, Any], container_id: Optional[str]) -> Dict[str, Any]:
    """Pod JSON -> our container's image: matched by container id, or the only container."""
    if pod.get("error"):
        return {"error": pod["error"]}
    statuses = list((pod.get("status") or {}).get("containerStatuses") or [])
    mine = [s for s in statuses if container_id and _strip_scheme(s.get("containerID") or "") == container_id]
    if not mine and len(statuses) == 1:
        mine = statuses
    if not mine:
        return {"error": "pod has %d containers and none matches this one" % len(statuses)}
    status = mine[0]
    image_ref = status.get("image") or None
    pulled = _strip_scheme(status.get("imageID") or "")
    found = {
        "image_ref": image_ref,
        "image_digest": pulled if is_digest_ref(pulled) else None,
        "image_id": image_id(pulled),
        "container_id": _strip_scheme(status.get("containerID") or "") or None,
    }
    if not found["image_digest"]:
        found["error"] = "imageID %r is not repo@sha256:<64 hex>" % pulled
    return found


def parse(raw: Mapping[str, Any]) -> ContainerInfo:
    info, _ = resolve(raw)
    return info


def resolve(raw: Mapping[str, Any]) -> Tuple[ContainerInfo, Optional[str]]:
    """Pure: detection plus the first digest source that answered -> (info, reason or None)."""
    env = raw.get("env") or {}
    found = detect(raw)
    sources = [("launcher", from_launcher(env))]
    if raw.get("docker") is not None:
        sources.append(("docker-socket", from_docker(raw["docker"])))
    if raw.get("containerenv") is not None:
        sources.append(("containerenv", from_containerenv(parse_containerenv(raw["containerenv"]))))
    if raw.get("kubernetes") is not None:
        sources.append(("kubernetes", from_pod(raw["kubernetes"], found["container_id"])))
    fields: Dict[str, Any] = {}
    # the first source with a digest wins; failing that, the first with an image id
    ranked = [s for s in sources if s[1].get("image_digest")] + [s for s in sources if s[1].get("image_id")]
    if ranked:
        name, answer = ranked[0]
        fields = {k: answer.get(k) for k in ("image_ref", "image_digest", "image_id")}
        fields["digest_source"] = name
        found["container_id"] = found["container_id"] or answer.get("container_id")
    if not fields.get("image_ref"):
        fields["image_ref"] = next((a["image_ref"] for _, a in sources if a.get("image_ref")), None)
    reason = None
    if found["in_container"] and not fields.get("image_digest"):
        errors = ["%s: %s" % (name, a["error"]) for name, a in sources if a.get("error")]
        reason = "image digest unknown (%s)" % "; ".join(errors or ["no source answered"])
    info = ContainerInfo(ngc=ngc_env(env), **found, **fields)
    return info, reason


def query(root: Optional[str] = None, environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Read the detection files; ask the Docker socket / Kubernetes API only when needed."""
    from tfrepro.fingerprint import image_lookup

    root = root or ROOT
    environ = os.environ if environ is None else environ
    raw: Dict[str, Any] = {
        "dockerenv": os.path.exists(_path(root, "/.dockerenv")),
        "containerenv": read_text(root, "/run/.containerenv"),
        "cgroup": read_text(root, "/proc/self/cgroup") or "",
        "mountinfo": read_text(root, "/proc/self/mountinfo") or "",
        "hostname": (read_text(root, "/etc/hostname") or environ.get("HOSTNAME") or "").strip(),
        "env": dict(environ),
    }
    found = detect(raw)
    launcher = from_launcher(raw["env"])
    if not found["in_container"] or launcher.get("image_digest"):
        return raw
    if found["runtime"] in ("docker", "kubernetes"):
        cid = found["container_id"] or (raw["hostname"] if _SHORT_ID.match(raw["hostname"]) else None)
        if found["runtime"] == "docker" or environ.get("DOCKER_HOST"):
            raw["docker"] = image_lookup.inspect_docker(cid, environ, root, TIMEOUT)
    docker_answer = from_docker(raw["docker"]) if "docker" in raw else {}
    if found["runtime"] == "kubernetes" and not docker_answer.get("image_digest"):
        raw["kubernetes"] = image_lookup.fetch_pod(environ, root, raw["hostname"], TIMEOUT)
    return raw


def collect():
    """(ContainerInfo, reason or None): the reason lands in Environment.reasons."""
    return resolve(query())
