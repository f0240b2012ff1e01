"""Which host paths may be bind-mounted into a container. refusal() is pure; resolve() and
policy() do the few stat calls.

A bind mount of the wrong path is root on the host (the container runs as root with
--network host), so some paths are refused whoever asks, after resolving symlinks, `//`
and `..`: the Docker socket (by path or by inode), /, /proc, /sys, /dev, /etc, /run,
/var/run, $HOME itself, and the credential directories under it. A path that contains one
of them (/home, /var) is refused too: mounting it mounts them.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass
from typing import FrozenSet, Optional, Tuple

from tfrepro.errors import UsageError
from tfrepro.launch import spec
from tfrepro.termsafe import safe

SYSTEM_DIRS = ("/proc", "/sys", "/dev", "/etc", "/run", "/var/run")
HOME_SECRETS = (".ssh", ".docker", ".aws", ".kube", ".config/gcloud", ".gnupg")
DOCKER_SOCKETS = spec.DOCKER_SOCKETS


@dataclass(frozen=True)
class HostPath:
    given: str
    real: str  # symlinks, // and .. resolved
    ident: Optional[Tuple[int, int]] = None  # (st_dev, st_ino) when it exists
    is_socket: bool = False
    unresolved: bool = False  # realpath failed (a permission on the way): refused


@dataclass(frozen=True)
class Policy:
    home: Optional[str]  # resolved $HOME
    protected: Tuple[str, ...]  # resolved credential directories
    sockets: Tuple[str, ...]  # resolved Docker socket paths
    socket_idents: FrozenSet[Tuple[int, int]] = frozenset()


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def refusal(path: HostPath, rules: Policy, allow_docker_socket: bool = False) -> Optional[str]:
    """Why `path` must not be mounted (one line, safe to print), or None."""
    real, given = path.real, safe(path.given)
    if real == "/":
        return "%s is the host's root directory" % given
    if path.unresolved:
        return "%s cannot be resolved to a real path" % given
    is_docker_socket = (
        (path.ident is not None and path.ident in rules.socket_idents)
        or real in rules.sockets
        or (path.is_socket and posixpath.basename(real) == "docker.sock")
    )
    if is_docker_socket:
        return None if allow_docker_socket else "%s is the Docker socket (root on this host)" % given
    for system in SYSTEM_DIRS:
        if under(real, system):
            return "%s is under %s" % (given, system)
    for sock in rules.sockets:
        if under(sock, real):
            return "%s contains the Docker socket %s" % (given, sock)
    if rules.home and under(rules.home, real):
        return "%s is or contains the home directory %s" % (given, rules.home)
    for secret in rules.protected:
        if under(real, secret) or under(secret, real):
            return "%s is or contains %s" % (given, secret)
    return None


# -- I/O ---------------------------------------------------------------------------------


def resolve(given: str) -> HostPath:
    try:
        real = os.path.realpath(given)
    except OSError:
        return HostPath(given, "/" + posixpath.normpath(given).lstrip("/"), unresolved=True)
    try:
        st = os.stat(real)
    except OSError:
        return HostPath(given, real)
    return HostPath(given, real, (st.st_dev, st.st_ino), stat.S_ISSOCK(st.st_mode))


def policy(home: Optional[str] = None, environ=None) -> Policy:
    """The policy for this host: $HOME, its credential directories, the Docker sockets
    (the default ones and a unix:// DOCKER_HOST)."""
    environ = os.environ if environ is None else environ
    home = home or environ.get("HOME") or os.path.expanduser("~")
    home_real = os.path.realpath(home) if home and home.startswith("/") else None
    protected = tuple(os.path.realpath(os.path.join(home_real, name)) for name in HOME_SECRETS) if home_real else ()
    sockets = list(DOCKER_SOCKETS)
    docker_host = environ.get("DOCKER_HOST") or ""
    if docker_host.startswith("unix://"):
        sockets.append(docker_host[len("unix://") :])
    resolved = tuple(sorted({os.path.realpath(socket_path) for socket_path in sockets}))
    idents = set()
    for socket_path in resolved:
        try:
            found = os.stat(socket_path)
            idents.add((found.st_dev, found.st_ino))
        except OSError:
            pass
    return Policy(home_real, protected, resolved, frozenset(idents))


def check(
    given: str, host_policy: Optional[Policy] = None, allow_docker_socket: bool = False
) -> Tuple[str, Optional[str]]:
    """(resolved path to mount, refusal or None) for one host path."""
    path = resolve(given)
    return path.real, refusal(path, host_policy or policy(), allow_docker_socket)


def checked_mount(text: str, rules: Optional[Policy], allow_docker_socket: bool = False, allow_claims: bool = False):
    """-v SRC:DST[:ro] given by the user (to run or replay): its host path resolved, refused
    (UsageError, one line) when it is one no container may get."""
    mount = spec.parse_mount(text, allow_docker_socket, allow_claims=allow_claims)
    if not mount.source.startswith("/"):
        return mount  # a named volume or a PersistentVolumeClaim
    real, refused = check(mount.source, rules, allow_docker_socket)
    if refused:
        raise UsageError("refusing -v %s: %s" % (text, refused))
    return spec.Mount(real, mount.target, mount.read_only, mount.kind)
