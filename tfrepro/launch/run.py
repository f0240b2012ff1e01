"""`tfrepro run` without its command line: options -> a LaunchSpec -> an engine.

Order: resolve REF to its digest, fingerprint the mounted data and the data beside the code,
create the MLflow run and record the launch (argv redacted, no secret env value, the patch
unless withheld), submit the spec with MLFLOW_RUN_ID so the in-container callback resumes that
run, stream its output, mark what the run wrote beside the code, sign the record, return its
exit status. A dry run stops before the MLflow run: it prints what would be
submitted, the run id and the hook's directory as placeholders.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import click

from tfrepro import schema, signing
from tfrepro.errors import TfreproError
from tfrepro.fingerprint import untracked
from tfrepro.launch import hooks, kubernetes
from tfrepro.launch import launcher as L
from tfrepro.launch import spec as S
from tfrepro.redact import patch_withheld, redact_argv
from tfrepro.replay import data, hostpaths
from tfrepro.termsafe import safe_lines
from tfrepro.tracking import record as run_record
from tfrepro.tracking.launched import where_the_run_went

NEW_RUN = "<new run>"
HOOK = "<hook>"


@dataclass(frozen=True)
class Request:
    """The validated command line."""

    image: str
    command: Tuple[str, ...]
    gpus: Optional[str]
    mounts: Tuple[S.Mount, ...]  # host paths already checked (replay/hostpaths.py)
    shm_size: Optional[str]
    memory: Optional[str]
    user_env: Dict[str, str]
    workdir: str
    experiment: Optional[str]
    run_name: Optional[str]
    tracking_uri: str
    autolog: bool
    seed: Optional[int]
    hash_data: bool = False
    untracked: bool = True  # fingerprint the data beside the code
    env_record: Dict[str, Optional[str]] = field(default_factory=dict)  # launch.json's env: no secret values
    from_environ: Tuple[str, ...] = ()  # -e NAME: values taken from this shell, never shown
    dropped: Tuple[str, ...] = ()  # -e values not recorded (secret-looking)
    rules: Any = None  # hostpaths.policy()


def launch(request: Request, engine, dry_run: bool = False) -> int:
    git, reason = L.host_git()
    if git is None:
        L.warn("git on this host: %s: the run may not be replayable" % reason)
    elif git.untracked and not request.untracked:
        L.warn(
            "%d untracked file(s) are visible to the container and not fingerprinted (--no-untracked): "
            "a replay cannot restore them" % len(git.untracked)
        )
    repo_root = git.root if git and git.root else os.getcwd()
    subdir = git.workdir if git else "."
    withhold = patch_withheld()  # TFREPRO_NO_PATCH=1: the uncommitted code stays off the server
    patch = "" if withhold or not git else git.patch
    source = kubernetes.Source(git.remote_url or "", git.commit or "", patch) if git else None

    resolved = engine.resolve(request.image)
    if resolved.digest and not dry_run:
        engine.prepare(resolved.digest)  # pulls, or asks the scheduler, before anything is recorded
    if not resolved.digest:
        L.warn(
            "image %s is in no registry: the run is replayable on this host only (image id %s)"
            % (request.image, resolved.image_id)
        )
    client = run_record.client(request.tracking_uri)
    experiment_id = (
        L.experiment_id(client, request.experiment) if not dry_run else _existing_experiment(client, request.experiment)
    )
    rules = request.rules if request.rules is not None else hostpaths.policy()
    container_uri, tracking_mounts = L.tracking_mounts(request.tracking_uri, client, experiment_id, rules)
    hidden = (
        (["MLFLOW_TRACKING_URI"] if "@" in container_uri else []) + list(request.from_environ) + list(request.dropped)
    )
    hooked = hooks.wanted(request.autolog, request.seed)
    image_env = engine.image_env(resolved.run_ref) if hooked else {}

    def spec_for(run_id: str, hook_dir: Optional[str]) -> S.LaunchSpec:
        env = dict(request.user_env)
        env.update(
            S.managed_env(
                container_uri,
                experiment_id or "<experiment>",
                run_id,
                request.image,
                resolved.digest,
                resolved.image_id,
                os.environ,
                request.workdir,
            )
        )
        env.update(hooks.hook_env(request.autolog, request.seed, request.user_env, image_env))
        if withhold:
            env["TFREPRO_NO_PATCH"] = "1"  # the callback inside withholds it too
        mounts = (S.Mount(repo_root, request.workdir, False, "repo"),) + request.mounts + tracking_mounts
        return S.LaunchSpec(
            image=resolved.run_ref,
            command=request.command,
            workdir=request.workdir,
            subdir=subdir,
            mounts=mounts + hooks.hook_mounts(hook_dir),
            env=env,
            gpus=request.gpus,
            shm_size=request.shm_size,
            memory=request.memory,
            labels={schema.RUN_ID_LABEL: run_id},
        )

    preview = spec_for(NEW_RUN, HOOK if hooked else None)
    engine.check(preview, source)  # refused before anything is created
    if dry_run:
        click.echo(safe_lines(engine.preview(preview, hidden + ["MLFLOW_RUN_ID"], source).rstrip("\n")))
        return 0
    sources = data.fingerprint_mounts(request.mounts, request.hash_data, log=L.info)
    beside = untracked.Capture()
    if git and git.root and request.untracked:
        from tfrepro.tracking.spool import spool_dir

        beside = untracked.collect(
            git.root, request.workdir, request.hash_data, [m.source for m in tracking_mounts] + [spool_dir()]
        )
    if beside.found:
        L.info(beside.note())  # file names from disk: info() escapes them like a record's strings
    sources += beside.sources
    tags = L.image_tags(resolved.ref, resolved.digest, resolved.image_id)
    tags.update(L.git_tags(git) if git else {})
    tags[schema.COMMAND] = json.dumps(redact_argv(request.command))  # secret flag values never reach the server
    tags[schema.WORKDIR] = subdir
    tags.update(hooks.hook_tags(request.autolog, request.seed))
    if withhold and git and git.dirty:
        tags[schema.GIT_PATCH_WITHHELD] = "true"
    tags.update(data.to_tags(sources))
    if beside.found:
        tags[schema.DATA_BESIDE] = schema.truncate(beside.note())
    run_id = L.create_run(client, experiment_id, request.run_name, tags)
    try:
        data.record(client, run_id, sources)
        with hooks.hook_directory(hooked) as hook_dir:
            spec = spec_for(run_id, hook_dir)
            record = S.launch_record(spec, request.image, repo_root, request.tracking_uri, env=request.env_record)
            record.update(hooks.hook_record(request.autolog, request.seed))
            status = L.run_recorded(client, engine, run_id, spec, record, patch, hidden, "run", source)
        _mark_written(client, run_id, sources, beside, git.root if git else None)
    except BaseException:
        L.finish(client, run_id, 1)
        raise
    L.finish(client, run_id, status)
    signing.sign_run(client, run_id, warn=L.warn)
    L.info("run %s exited with status %d" % (run_id, status))
    where_the_run_went(client, run_id, experiment_id)
    return status


def _mark_written(client, run_id, sources, beside, root) -> None:
    """What changed beside the code while the run ran is its output: recorded as such, not restored."""
    if not beside.sources:
        return
    marked, changed = untracked.written(beside, root)
    if changed:
        L.info(
            "data beside the code: %s changed while the run ran: recorded as its output, not restored on replay"
            % ", ".join(changed)
        )
        try:
            data.record(client, run_id, [s for s in sources if s.label == "mount"] + list(marked.sources), tags=True)
        except TfreproError as exc:  # the run's own result stands
            L.warn("could not record which data the run wrote: %s" % exc)


def _existing_experiment(client, name: Optional[str]) -> Optional[str]:
    """A dry run creates nothing: the experiment's id if it exists, else a placeholder."""
    if not name:
        return L.experiment_id(client, None)
    try:
        found = client.get_experiment_by_name(name)
    except Exception as exc:
        raise run_record.tracking_error(exc, "experiment %s" % name) from None
    return found.experiment_id if found else None
