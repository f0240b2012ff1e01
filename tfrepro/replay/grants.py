"""What the replaying user grants a replay: environment values, host mounts, an image. Pure.

A run record is data written by anyone with access to the tracking server. It may say
which variables and mounts the original run had; it never decides what the replaying
user's machine hands over. Each function takes the record's wish and the user's options
and returns what is granted, what is only offered, and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from tfrepro import schema
from tfrepro.launch.spec import ENV_NAME_RE
from tfrepro.redact import is_secret, looks_secret_value
from tfrepro.termsafe import safe

# Recorded variables that could send the passed tracking credentials somewhere else, or
# make tfrepro's own variables lie: the record may not set them.
_STEERING = re.compile(
    r"^(MLFLOW_|TFREPRO_|DOCKER_)|_PROXY$|^(REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|SSL_CERT_FILE|"
    r"SSL_CERT_DIR|PYTHONHTTPSVERIFY)$",
    re.I,
)
DEFAULT_REGISTRY = "docker.io"


@dataclass(frozen=True)
class Options:
    """What the replaying user said on the command line."""

    env_items: Tuple[str, ...] = ()  # -e NAME=VALUE | -e NAME
    pass_env: Tuple[str, ...] = ()  # --pass-env NAME
    volumes: Tuple[str, ...] = ()  # -v SRC:DST[:ro]
    allow_recorded_mounts: bool = False
    mount_docker_socket: bool = False
    allow_untrusted_image: bool = False
    allowed_signers: Optional[str] = None
    require_signed: bool = False
    yes: bool = False


# -- environment -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvGrant:
    env: Dict[str, str]  # what enters the container besides tfrepro's own variables
    passed: Tuple[str, ...]  # names whose values come from the replaying user's environment
    needs_pass_env: Tuple[str, ...]  # recorded without a value, not passed: listed in the plan
    ignored: Tuple[str, ...]  # recorded names the record may not set (messages)


def replay_env(recorded: Mapping[str, Optional[str]], given: Mapping[str, str], passed: Sequence[str]) -> EnvGrant:
    """The record's values where it has them (never a secret-looking one), the user's -e and
    --pass-env values; recorded names left without a value are listed, never looked up."""
    env: Dict[str, str] = {}
    needs: List[str] = []
    ignored: List[str] = []
    for name in sorted(recorded):
        value = recorded[name]
        if not ENV_NAME_RE.match(str(name)) or _STEERING.search(name):
            ignored.append("%s (the record may not set it)" % safe(name))
        elif value is None or is_secret(name) or looks_secret_value(value):
            if name not in given:
                needs.append(name)
        else:
            env[name] = value
    env.update(given)
    return EnvGrant(env, tuple(passed), tuple(needs), tuple(ignored))


# -- host mounts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MountOffer:
    source: str  # as recorded
    target: str
    read_only: bool
    real: str  # the resolved host path that would be mounted
    refusal: Optional[str]  # always refused: why
    fingerprint: Optional[str] = None  # the recorded data fingerprint, when there is one

    def bind(self) -> str:
        return "%s:%s:%s" % (self.real, self.target, "ro" if self.read_only else "rw")


def same_mount(offer: MountOffer, given: Sequence[Tuple[str, str]]) -> bool:
    """Whether the user passed this mount again (-v SRC:DST, compared after resolving SRC)."""
    return (offer.real, offer.target) in given


def approved_mounts(
    offers: Sequence[MountOffer], given: Sequence[Tuple[str, str]], yes: bool, allow_recorded: bool, confirm=None
) -> Tuple[List[MountOffer], List[MountOffer]]:
    """(mounted, left out). Interactively `confirm(offer)` decides each; with --yes only
    --allow-recorded-mounts or the same -v again mounts it. Refused ones are never mounted."""
    mounted, left = [], []
    for offer in offers:
        if offer.refusal:
            left.append(offer)
        elif same_mount(offer, given) or allow_recorded or (not yes and confirm is not None and confirm(offer)):
            mounted.append(offer)
        else:
            left.append(offer)
    return mounted, left


# -- images ----------------------------------------------------------------------------------


def registry(repository: str) -> str:
    """'nvcr.io/nvidia/tensorflow' -> 'nvcr.io'; 'tensorflow/tensorflow' -> 'docker.io'."""
    first, sep, _ = repository.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first.lower()
    return DEFAULT_REGISTRY


def _repository(ref: str) -> str:
    repo = ref.rsplit("@", 1)[0]
    head, _, last = repo.rpartition(":")
    return head if head and "/" not in last else repo


def trusted_registries(environ: Mapping[str, str]) -> Optional[Tuple[str, ...]]:
    """TFREPRO_TRUSTED_REGISTRIES (comma-separated), or None when no allowlist is set."""
    value = environ.get(schema.ENV_TRUSTED_REGISTRIES, "").strip()
    if not value:
        return None
    return tuple(r.strip().lower() for r in value.split(",") if r.strip())


def image_concerns(image: str, recorded_ref: Optional[str], allowlist: Optional[Sequence[str]]) -> List[str]:
    """Why running `image` (repo@sha256:...) needs the user's confirmation, if it does."""
    concerns = []
    repo = _repository(image)
    if "@" in image and recorded_ref and _repository(recorded_ref) != repo:
        concerns.append(
            "the image digest is from %s but the run says its image was %s" % (safe(repo), safe(recorded_ref))
        )
    if "@" in image and allowlist is not None and registry(repo) not in allowlist:
        concerns.append(
            "registry %s is not in TFREPRO_TRUSTED_REGISTRIES (%s)" % (safe(registry(repo)), ", ".join(allowlist))
        )
    return concerns
