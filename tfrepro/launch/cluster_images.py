"""The image policy of the engines whose job runs on a cluster's node (slurm, kubernetes): the
node pulls the image from a registry by digest, so nothing is pulled here. This host's Docker,
else its Podman, only resolves a reference to that digest and reads the image's ENV.
"""

from __future__ import annotations

from typing import Dict

from tfrepro import imageref
from tfrepro.errors import DockerError, SchedulerError, UsageError
from tfrepro.launch import docker, hooks, podman


def check_pullable(image: str) -> None:
    """Refuse an image a node cannot pull: a host-only image id, a tag."""
    imageref.check_digest_ref(image, _needs_digest)


def _needs_digest(message: str) -> UsageError:
    return UsageError("%s: a cluster's node pulls the image from a registry, by digest" % message)


def resolve(ref: str) -> docker.Resolved:
    """A digest for a cluster to pull: as given, or resolved by this host's Docker or Podman."""
    imageref.check_image_ref(ref)
    try:
        found = docker.resolve(docker.connect(), ref)
    except DockerError:
        if imageref.split(ref)[2]:  # a digest needs no resolving; only its image id stays unknown
            return docker.Resolved(ref, ref, None)
        try:
            found = podman.resolve(ref)
        except SchedulerError:
            raise UsageError(
                "cannot resolve %s to a digest here (neither Docker nor Podman): pass --image repo@sha256:..." % ref
            ) from None
    if not found.digest:
        raise UsageError("image %s is in no registry: a cluster cannot pull it (push it first)" % ref)
    return found


def image_env(image: str) -> Dict[str, str]:
    """The image's ENV, read from this host's Docker or Podman when either has the image, else
    {}: the node that runs it is elsewhere."""
    try:
        return hooks.image_env(docker.connect(), image) or podman.image_env(image)
    except (DockerError, SchedulerError):
        return {}
