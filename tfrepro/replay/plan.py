"""A run record -> what replay will do (image, source, LaunchSpec). Pure.

The record's launch was parsed and validated when it was loaded (tracking/launch_record.py);
this composes those values with the image and source tags, which it validates here.
Refusals raise RecordError (or UsageError for a bad option) before anything runs. The record
is data: its mounts are only offered (`launch.mounts`; replay/prepare.py asks), and its variables
without a value are listed (`env_grant.needs_pass_env`), never looked up in this environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from tfrepro import imageref, schema
from tfrepro.errors import RecordError, UsageError
from tfrepro.launch.spec import LaunchSpec, Mount, parse_gpus
from tfrepro.redact import REDACTED
from tfrepro.replay import grants
from tfrepro.tracking.launch_record import RecordedLaunch
from tfrepro.tracking.record import RunRecord

COMMIT_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
CHECKOUT = "<checkout>"  # placeholder for the repository mount until it is materialised
KEEP = object()  # --gpus not given: replay the recorded request


# what a replay runs as the record says, field for field (LaunchSpec and RecordedLaunch share the names)
AS_RECORDED = ("command", "workdir", "subdir", "shm_size", "memory")


@dataclass(frozen=True)
class ReplayPlan:
    image: str  # repo@sha256:... or, for a host-only run, a local image id
    image_digest: Optional[str]
    image_id: Optional[str]
    commit: str
    remote: Optional[str]
    repo_roots: Tuple[str, ...]  # where the original repository may live on this host
    patch: str
    untracked: Tuple[str, ...]
    spec: LaunchSpec  # the repository mount's source is CHECKOUT
    launch: RecordedLaunch  # what the record says about the original launch
    env_grant: grants.EnvGrant  # the recorded variables with the replaying user's
    warnings: Tuple[str, ...]
    patch_withheld: bool = False  # dirty, but the patch was kept off the server

    @property
    def image_ref(self) -> str:
        return self.launch.image_ref or self.image


def _image(tags: Mapping[str, str], run_id: str) -> Tuple[str, Optional[str], Optional[str]]:
    digest, image_id = tags.get(schema.IMAGE_DIGEST), tags.get(schema.IMAGE_ID)
    if digest:
        imageref.check_digest_ref(digest, RecordError)
    if image_id:
        imageref.check_image_id(image_id, RecordError)
    if digest:
        return digest, digest, image_id
    if image_id and tags.get(schema.REPLAYABLE) == schema.REPLAYABLE_HOST_ONLY:
        return image_id, None, image_id
    raise RecordError("run %s has no image digest (%s): it cannot be replayed" % (run_id, schema.IMAGE_DIGEST))


def plan(record: RunRecord, given_env: Mapping[str, str], gpus=KEEP, passed: Tuple[str, ...] = ()) -> ReplayPlan:
    """given_env: what the replaying user passes (-e NAME=VALUE, --pass-env NAME), `passed`
    naming those taken from their environment. Nothing else of theirs enters the container."""
    tags, run_id = record.tags, record.run_id
    image, digest, image_id = _image(tags, run_id)
    commit = tags.get(schema.GIT_COMMIT) or ""
    if not commit:
        raise RecordError("run %s has no git commit (%s): it cannot be replayed" % (run_id, schema.GIT_COMMIT))
    if not COMMIT_RE.match(commit):
        raise RecordError("malformed commit %.80r in %s" % (commit, schema.GIT_COMMIT))
    launch = record.recorded_launch()  # parsed and validated when the record was loaded
    dirty = tags.get(schema.GIT_DIRTY) == "true"
    patch = record.patch or ""
    withheld = dirty and not patch.strip() and tags.get(schema.GIT_PATCH_WITHHELD) == "true"
    if dirty and not patch.strip() and not withheld:
        raise RecordError("run %s was dirty but its patch (%s) is missing" % (run_id, schema.GIT_PATCH))
    git = record.environment.git if record.environment else None
    warnings = []
    if withheld:
        warnings.append(
            "the run had uncommitted changes that were not uploaded (TFREPRO_NO_PATCH): the dirty "
            "state cannot be restored; commit %s is replayed as committed" % commit[:12]
        )
    hidden_args = [index for index, argument in enumerate(launch.command) if REDACTED in argument]
    if hidden_args:
        warnings.append(
            "the recorded command has %d redacted argument(s) (secret values are never recorded): "
            "the replay passes %s literally" % (len(hidden_args), REDACTED)
        )
    if git and git.untracked and not any(source.label in ("untracked", "ignored") for source in record.data):
        shown = ", ".join(git.untracked[:5]) + (", ..." if len(git.untracked) > 5 else "")
        # runs recorded before `tfrepro run` fingerprinted them (replay/overlay.py restores those)
        warnings.append("%d untracked file(s) cannot be restored: %s" % (len(git.untracked), shown))
    requested = launch.gpus if gpus is KEEP else parse_gpus(gpus)
    env_grant = grants.replay_env(launch.env, given_env, passed)
    user_env = dict(env_grant.env)
    env_warnings = [
        "%s was set for the original run (value not recorded): pass --pass-env %s or -e %s=VALUE" % (name, name, name)
        for name in env_grant.needs_pass_env
    ]
    env_warnings += ["launch.json sets %s: ignored" % item for item in env_grant.ignored]
    if launch.seed is not None:
        user_env["TFREPRO_SEED"] = launch.seed
    roots = [root for root in (launch.repo_root, git.root if git else None) if root and root.startswith("/")]
    launch_spec = LaunchSpec(
        image=image,
        mounts=(Mount(CHECKOUT, launch.workdir, False, "repo"),),
        env=user_env,
        gpus=requested,
        network="host",
        **{name: getattr(launch, name) for name in AS_RECORDED},
    )
    return ReplayPlan(
        image=image,
        image_digest=digest,
        image_id=image_id,
        commit=commit,
        remote=tags.get(schema.GIT_REMOTE) or None,
        repo_roots=tuple(roots),
        patch=patch,
        untracked=tuple(git.untracked) if git else (),
        spec=launch_spec,
        launch=launch,
        env_grant=env_grant,
        warnings=tuple(warnings + env_warnings),
        patch_withheld=withheld,
    )


def check_gpus(plan_: ReplayPlan, host_gpu_count: int) -> None:
    """A GPU run on a host without (enough) GPUs is refused unless --gpus none."""
    requested = plan_.spec.gpus
    if requested is None:
        return
    if host_gpu_count == 0:
        raise UsageError(
            "the run used GPUs (--gpus %s) but this host has none; pass --gpus none to replay on CPU" % requested
        )
    if requested != "all" and int(requested) > host_gpu_count:
        raise UsageError(
            "the run used %s GPUs but this host has %d; pass --gpus %d or --gpus none"
            % (requested, host_gpu_count, host_gpu_count)
        )
