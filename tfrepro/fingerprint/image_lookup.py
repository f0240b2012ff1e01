"""The network half of the container source: ask Docker or Kubernetes which image we run.

Each function returns the raw JSON or {"error": reason}; none raises. Short timeouts:
fingerprinting must not stall a training start.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Optional

SOCKET = "/var/run/docker.sock"
SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return ("%s: %s" % (type(exc).__name__, text[0] if text else ""))[:300]


def inspect_docker(
    container_id: Optional[str], environ: Mapping[str, str], root: str, timeout: float
) -> Dict[str, Any]:
    """`docker inspect` our container, then its image, through DOCKER_HOST or the default socket."""
    if not environ.get("DOCKER_HOST") and not os.path.exists(os.path.join(root, SOCKET.lstrip("/"))):
        return {"error": "no Docker socket (%s not mounted, DOCKER_HOST unset)" % SOCKET}
    if not container_id:
        return {"error": "own container id unknown (not in cgroup, mountinfo or hostname)"}
    try:
        import docker
    except ImportError:
        return {"error": "docker-py not installed"}
    client = None
    try:
        client = docker.from_env(timeout=timeout, environment=dict(environ))
        container = client.api.inspect_container(container_id)
        image = client.api.inspect_image(container["Image"])
        return {"container": container, "image": image}
    except Exception as exc:  # refused, timeout, 404, TLS...: a reason, never a raise
        return {"error": _short(exc)}
    finally:
        if client is not None:
            client.close()


def fetch_pod(environ: Mapping[str, str], root: str, hostname: str, timeout: float) -> Dict[str, Any]:
    """GET our pod from the API server with the pod's service-account token."""
    import ssl
    import urllib.request

    account = os.path.join(root, SERVICE_ACCOUNT.lstrip("/"))
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT", "443")
    pod = environ.get("HOSTNAME") or hostname
    try:
        with open(os.path.join(account, "token")) as f:
            token = f.read().strip()
    except OSError:
        return {"error": "no service-account token (automountServiceAccountToken off?)"}
    if not host or not pod:
        return {"error": "KUBERNETES_SERVICE_HOST or HOSTNAME unset"}
    try:
        with open(os.path.join(account, "namespace")) as f:
            namespace = f.read().strip() or "default"
    except OSError:
        namespace = "default"
    ca = os.path.join(account, "ca.crt")
    host = "[%s]" % host if ":" in host else host
    url = "https://%s:%s/api/v1/namespaces/%s/pods/%s" % (host, port, namespace, pod)
    request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token, "Accept": "application/json"})
    try:
        context = ssl.create_default_context(cafile=ca if os.path.exists(ca) else None)
        # the API server is in-cluster: never route it through HTTP(S)_PROXY
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
        with opener.open(request, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except Exception as exc:  # 403 without RBAC "get pods", timeout, bad CA...
        return {"error": "GET pod %s/%s: %s" % (namespace, pod, _short(exc))}
