"""The Docker side, kept thin: connect, resolve a reference to its digest, pull, run.

Errors become DockerError with one line. docker-py is imported lazily.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional

import click

from tfrepro import imageref
from tfrepro.errors import DockerError
from tfrepro.termsafe import safe


@dataclass(frozen=True)
class Resolved:
    ref: str  # as the user typed it
    digest: Optional[str]  # repo@sha256:... a registry serves, or None (host-only)
    image_id: Optional[str]  # local config digest, sha256:...

    @property
    def run_ref(self) -> str:
        return self.digest or self.image_id or self.ref


def _one_line(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return (str(text).strip().splitlines() or [type(exc).__name__])[0][:300]


def connect():
    try:
        import docker
    except ImportError:  # pragma: no cover - a hard dependency, but say so plainly
        raise DockerError("docker-py is not installed (pip install docker)") from None
    try:
        client = docker.from_env(timeout=600)
        client.ping()
        return client
    except Exception as exc:
        raise DockerError("cannot reach the Docker daemon: %s" % _one_line(exc)) from None


def local_image(client, ref: str):
    import docker.errors

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        raise DockerError("docker: %s" % _one_line(exc)) from None


def pick_repo_digest(repo_digests: Iterable[str], repo: str) -> Optional[str]:
    """The RepoDigest of `repo` if the image has one, else None."""
    for item in repo_digests or ():
        if imageref.repository(item) == repo:
            return item
    return None


def resolve(client, ref: str) -> Resolved:
    """REF -> the digest a registry serves it under, and the local image id.

    A local image wins (that is what `docker run REF` would use); it is pullable only if
    it carries a RepoDigest for its repository. Otherwise the registry is asked.
    """
    imageref.check_image_ref(ref)
    repo, _, digest = imageref.split(ref)
    image = local_image(client, ref)
    if image is not None:
        found = ref if digest else pick_repo_digest(image.attrs.get("RepoDigests"), repo)
        return Resolved(ref, found, image.id)
    try:
        data = client.images.get_registry_data(ref)
    except Exception as exc:
        raise DockerError("image %s is neither local nor in its registry: %s" % (ref, _one_line(exc))) from None
    return Resolved(ref, "%s@%s" % (repo, data.id), None)


def _pull_line(event: Dict[str, object]) -> Optional[str]:
    status = str(event.get("status") or "")
    if status in ("Pull complete", "Already exists") or status.startswith(("Digest:", "Status:")):
        layer = event.get("id")
        return "  %s%s" % ("%s: " % layer if layer else "", status)
    return None


def pull(client, digest_ref: str, out=None):
    """Pull by digest, showing progress: one bar on a terminal, one line per layer otherwise."""
    imageref.check_digest_ref(digest_ref, DockerError)
    out = out or sys.stderr
    repo, _, digest = imageref.split(digest_ref)
    layers: Dict[str, list] = {}
    tty = hasattr(out, "isatty") and out.isatty()
    try:
        stream = client.api.pull(repo, tag=digest, stream=True, decode=True)
        if tty:
            with click.progressbar(length=1, label="pulling " + digest[:19], file=out) as bar:
                for event in stream:
                    _check(event, digest_ref)
                    detail = event.get("progressDetail") or {}
                    if event.get("id") and detail.get("total"):
                        layers[event["id"]] = [detail.get("current", 0), detail["total"]]
                    if event.get("status") in ("Pull complete", "Already exists") and event.get("id") in layers:
                        layers[event["id"]][0] = layers[event["id"]][1]
                    total = sum(t for _, t in layers.values()) or 1
                    bar.length = total
                    bar.pos = 0
                    bar.update(sum(c for c, _ in layers.values()))
        else:
            for event in stream:
                _check(event, digest_ref)
                line = _pull_line(event)
                if line:
                    click.echo(safe(line), file=out)  # a registry's words: escaped
    except DockerError:
        raise
    except Exception as exc:
        raise DockerError("cannot pull %s: %s" % (digest_ref, _one_line(exc))) from None
    image = local_image(client, digest_ref)
    if image is None:
        raise DockerError("pulled %s but the daemon does not have it" % digest_ref)
    return image


def _check(event: Dict[str, object], ref: str) -> None:
    if event.get("error"):
        raise DockerError("cannot pull %s: %s" % (ref, (str(event["error"]).strip().splitlines() or ["?"])[0][:300]))


def ensure_image(client, image: str, out=None) -> None:
    """Make `image` (repo@sha256 or a local id) present, pulling by digest when missing."""
    out = out or sys.stderr
    if local_image(client, image) is not None:
        click.echo("tfrepro: image %s is present" % image, file=out)
        return
    if imageref.is_image_id(image):
        raise DockerError("image %s is not on this host (the run was replayable on its host only)" % image)
    pull(client, image, out)


def run(client, kwargs: Dict[str, object], write: Callable[[bytes], None]) -> int:
    """Create and start a container, stream its output to `write`, return its exit status."""
    import docker.errors

    try:
        container = client.containers.create(**kwargs)
    except docker.errors.ImageNotFound:
        raise DockerError("image %s not found" % kwargs.get("image")) from None
    except docker.errors.APIError as exc:
        raise DockerError("cannot create the container: %s" % _one_line(exc)) from None
    try:
        container.start()
        for chunk in container.logs(stream=True, follow=True):
            write(chunk)
        return int(container.wait().get("StatusCode", 1))
    except docker.errors.APIError as exc:
        raise DockerError("container %s: %s" % (container.short_id, _one_line(exc))) from None
    finally:
        try:
            container.remove(force=True)
        except Exception:
            pass
