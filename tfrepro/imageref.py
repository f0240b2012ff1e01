"""Image references, digests and ids, in one place.

    repo[:tag][@sha256:<64 hex>]  a reference, e.g. nvcr.io/nvidia/tensorflow:22.07-tf2-py3
    repo@sha256:<64 hex>          a digest reference: what a registry serves, pullable anywhere
    sha256:<64 hex>               an image id: the local config digest, on this host only

Two strictness levels, on purpose:
  recording   the fingerprint keeps what a runtime reports (is_digest_ref, image_id): loose
              about the repository text, never raising; a fact is recorded, not judged.
  launching   `tfrepro run`/`replay` hand a value to Docker, from the command line or from
              untrusted run tags (check_image_ref, check_digest_ref, check_image_id): strict
              (no leading dash, no shell characters), raising the error they are given.
Resolved: an image as a launch knows it (as named, digest, id).
Pure. Python 3.8 compatible: the container fingerprint uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

from tfrepro.errors import UsageError

SHA256_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# A repository name: registry host[:port]/path, no leading dash (never read as an option).
REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/:]*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_RECORDED_DIGEST_REF = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
_RECORDED_IMAGE_ID = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")  # runtimes differ on the prefix


@dataclass(frozen=True)
class Resolved:
    """An image as a launch knows it: the reference as the user named it, the digest a registry
    serves and the local image id (an engine's resolve() answers with one)."""

    ref: str  # as the user typed it
    digest: Optional[str]  # repo@sha256:... a registry serves, or None (host-only)
    image_id: Optional[str]  # local config digest, sha256:...

    @property
    def run_ref(self) -> str:
        return self.digest or self.image_id or self.ref


def split(ref: str) -> Tuple[str, Optional[str], Optional[str]]:
    """ "repo:tag" / "repo@sha256:..." -> (repo, tag, digest)."""
    repo, digest, tag = ref, None, None
    if "@" in ref:
        repo, digest = ref.rsplit("@", 1)
    head, _, last = repo.rpartition(":")
    if head and "/" not in last:  # a colon after the last slash starts a tag, not a port
        repo, tag = head, last
    return repo, tag, digest


def repository(ref: str) -> str:
    """'host:5000/a/b:tag' or 'a/b@sha256:..' -> 'host:5000/a/b'."""
    return split(ref)[0]


# -- recording: loose, never raise ---------------------------------------------------------------


def is_digest_ref(value: Optional[str]) -> bool:
    """Whether a runtime's answer names an image by digest (repo@sha256:<64 hex>)."""
    return bool(value and _RECORDED_DIGEST_REF.match(value))


def image_id(value: Optional[str]) -> Optional[str]:
    """A runtime's image id as sha256:<64 hex> (with or without the prefix), else None."""
    match = _RECORDED_IMAGE_ID.match((value or "").strip())
    return "sha256:" + match.group(1) if match else None


# -- launching: strict, raise `error` ------------------------------------------------------------


def check_image_ref(ref: str, error=UsageError) -> str:
    repo, tag, digest = split(ref or "")
    if (
        not REPO_RE.match(repo)
        or (tag is not None and not TAG_RE.match(tag))
        or (digest is not None and not SHA256_RE.match(digest))
    ):
        raise error("not a valid image reference: %r" % ref)
    return ref


def check_digest_ref(value: str, error=UsageError) -> str:
    """A pullable reference by digest: repo@sha256:<64 hex>, no tag."""
    repo, tag, digest = split(value or "")
    if digest is None or not SHA256_RE.match(digest) or tag is not None or not REPO_RE.match(repo):
        raise error("malformed image digest %r (expected repo@sha256:<64 hex>)" % value)
    return value


def check_image_id(value: str, error=UsageError) -> str:
    if not is_image_id(value):
        raise error("malformed image id %r (expected sha256:<64 hex>)" % value)
    return value


def is_image_id(value: Optional[str]) -> bool:
    """Exactly sha256:<64 hex> (what Docker takes as a local image id)."""
    return bool(SHA256_RE.match(value or ""))
