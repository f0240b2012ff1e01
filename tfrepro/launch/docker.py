"""The Docker side, kept thin: connect, resolve a reference to its digest, pull, run.

Errors become DockerError with one line. docker-py is imported lazily. Progress is logged
(the `tfrepro` logger); the container's output goes to the `write` callable run() is given.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Type

from tfrepro import imageref
from tfrepro.errors import DockerError, EngineError
from tfrepro.imageref import Resolved
from tfrepro.launch import local_workers

log = logging.getLogger(__name__)


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


def pick_repo_digest(repo_digests: Optional[Iterable[str]], repo: str) -> Optional[str]:
    """The RepoDigest of `repo` if the image has one, else None."""
    for repo_digest in repo_digests or ():
        if imageref.repository(repo_digest) == repo:
            return repo_digest
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
        registry_data = client.images.get_registry_data(ref)
    except Exception as exc:
        raise DockerError("image %s is neither local nor in its registry: %s" % (ref, _one_line(exc))) from None
    return Resolved(ref, "%s@%s" % (repo, registry_data.id), None)


def _pull_line(event: Dict[str, object]) -> Optional[str]:
    status = str(event.get("status") or "")
    if status in ("Pull complete", "Already exists") or status.startswith(("Digest:", "Status:")):
        layer = event.get("id")
        return "  %s%s" % ("%s: " % layer if layer else "", status)
    return None


def pull(client, digest_ref: str):
    """Pull by digest, logging one line per finished layer (escaped by the log handler: a
    registry's words)."""
    imageref.check_digest_ref(digest_ref, DockerError)
    log.info("pulling %s", digest_ref)
    repo, _, digest = imageref.split(digest_ref)
    try:
        for event in client.api.pull(repo, tag=digest, stream=True, decode=True):
            _check(event, digest_ref)
            line = _pull_line(event)
            if line:
                log.info(line, extra={"bare": True})
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


def ensure_image(client, image: str) -> None:
    """Make `image` (repo@sha256 or a local id) present, pulling by digest when missing."""
    ensure_present(image, functools.partial(local_image, client), functools.partial(pull, client), DockerError)


def ensure_present(
    image: str,
    found: Callable[[str], object],
    pull_image: Callable[[str], object],
    error: Type[EngineError],
    store: Optional[str] = None,
) -> None:
    """Make `image` present in a host's image store (Docker's; `store` names another, e.g.
    podman): `found(image)` is None when missing, then `pull_image(image)` pulls it by digest; a
    bare image id cannot be pulled, so a missing one is `error`."""
    if found(image) is not None:
        log.info("image %s is present%s", image, " (%s)" % store if store else "")
        return
    if imageref.is_image_id(image):
        where = "in %s's store" % store if store else "on this host"
        raise error("image %s is not %s (the run was replayable on its host only)" % (image, where))
    pull_image(image)


def _create(client, kwargs: Dict[str, object]):
    import docker.errors

    try:
        return client.containers.create(**kwargs)
    except docker.errors.ImageNotFound:
        raise DockerError("image %s not found" % kwargs.get("image")) from None
    except docker.errors.APIError as exc:
        raise DockerError("cannot create the container: %s" % _one_line(exc)) from None


def run(client, kwargs: Dict[str, object], write: Callable[[bytes], None]) -> int:
    """Create and start a container, stream its output to `write`, return its exit status."""
    import docker.errors

    container = _create(client, kwargs)
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


def device_ids_request(device_ids: Sequence[str]) -> List[Dict[str, object]]:
    """docker-py DeviceRequest fields for these GPUs of the host (one worker's slice)."""
    return [{"driver": "", "device_ids": list(device_ids), "capabilities": [["gpu"]]}]


class _Worker:
    """One container of a multi-worker launch, for local_workers.supervise()."""

    def __init__(self, index: int, container):
        self.index, self.container = index, container

    def chunks(self):
        import docker.errors

        try:
            for chunk in self.container.logs(stream=True, follow=True):
                yield chunk
        except docker.errors.APIError as exc:
            raise self._failed(exc) from None

    def wait(self) -> int:
        import docker.errors

        try:
            return int(self.container.wait().get("StatusCode", 1))
        except docker.errors.APIError as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: Exception) -> DockerError:
        return DockerError("worker %d (container %s): %s" % (self.index, self.container.short_id, _one_line(exc)))

    def stop(self) -> None:
        self.container.stop(timeout=10)  # SIGTERM, SIGKILL 10 s later (a PID 1 training ignores SIGTERM)


def run_workers(
    client,
    kwargs_list: Sequence[Dict[str, object]],
    write: Callable[[bytes], None],
    timeout_s: Optional[float] = None,
    on_facts: Optional[Callable[[Dict[str, object]], None]] = None,
) -> int:
    """Create every worker's container, start them together, follow them as one job
    (local_workers.supervise); every container is removed at the end, whatever happened."""
    import docker.errors

    containers = []
    try:
        for kwargs in kwargs_list:
            containers.append(_create(client, kwargs))
        try:
            for container in containers:
                container.start()
        except docker.errors.APIError as exc:
            raise DockerError("cannot start a worker: %s" % _one_line(exc)) from None
        workers = [_Worker(index, container) for index, container in enumerate(containers)]
        return local_workers.supervise(workers, write, timeout_s, on_facts=on_facts)
    finally:
        for container in containers:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
            except Exception as exc:  # say so: a container may be left running
                log.warning("could not remove worker container %s: %s", container.short_id, _one_line(exc))
