"""`tfrepro run` without its command line: options -> a LaunchSpec -> an engine.

Order: resolve REF to its digest, create the MLflow run and record the launch, submit the
spec with MLFLOW_RUN_ID so the in-container callback resumes that run, stream its output,
return its exit status. A dry run stops before the MLflow run: it prints what would be
submitted, the run id and the hook's directory as placeholders.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import click

from tfrepro import schema
from tfrepro.launch import hooks, kubernetes
from tfrepro.launch import launcher as L
from tfrepro.launch import spec as S
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
    mounts: Tuple[S.Mount, ...]
    shm_size: Optional[str]
    memory: Optional[str]
    user_env: Dict[str, str]
    workdir: str
    experiment: Optional[str]
    run_name: Optional[str]
    tracking_uri: str
    autolog: bool
    seed: Optional[int]


def launch(request: Request, engine, dry_run: bool = False) -> int:
    git, reason = L.host_git()
    if git is None:
        L.warn("git on this host: %s: the run may not be replayable" % reason)
    elif git.untracked:
        L.warn("%d untracked file(s) are visible to the container but cannot be replayed" % len(git.untracked))
    repo_root = git.root if git and git.root else os.getcwd()
    subdir = git.workdir if git else "."
    source = kubernetes.Source(git.remote_url or "", git.commit or "", git.patch) if git else None

    resolved = engine.resolve(request.image)
    if resolved.digest and not dry_run:
        engine.prepare(resolved.digest)  # pulls, or asks the scheduler, before anything is recorded
    if not resolved.digest:
        L.warn("image %s is in no registry: the run is replayable on this host only (image id %s)"
               % (request.image, resolved.image_id))
    client = run_record.client(request.tracking_uri)
    experiment_id = L.experiment_id(client, request.experiment) if not dry_run else \
        _existing_experiment(client, request.experiment)
    container_uri, tracking_mounts = S.tracking_setup(request.tracking_uri, L.artifact_dirs(client, experiment_id)
                                                      if experiment_id else ())
    hidden = ["MLFLOW_TRACKING_URI"] if "@" in container_uri else []
    hooked = hooks.wanted(request.autolog, request.seed)
    image_env = engine.image_env(resolved.run_ref) if hooked else {}

    def spec_for(run_id: str, hook_dir: Optional[str]) -> S.LaunchSpec:
        env = dict(request.user_env)
        env.update(S.managed_env(container_uri, experiment_id or "<experiment>", run_id, request.image,
                                 resolved.digest, resolved.image_id, os.environ, request.workdir))
        env.update(hooks.hook_env(request.autolog, request.seed, request.user_env, image_env))
        mounts = (S.Mount(repo_root, request.workdir, False, "repo"),) + request.mounts + tracking_mounts
        return S.LaunchSpec(image=resolved.run_ref, command=request.command, workdir=request.workdir,
                            subdir=subdir, mounts=mounts + hooks.hook_mounts(hook_dir), env=env, gpus=request.gpus,
                            shm_size=request.shm_size, memory=request.memory,
                            labels={schema.RUN_ID_LABEL: run_id})

    preview = spec_for(NEW_RUN, HOOK if hooked else None)
    engine.check(preview, source)  # refused before anything is created
    if dry_run:
        click.echo(engine.preview(preview, hidden + ["MLFLOW_RUN_ID"], source).rstrip("\n"))
        return 0
    tags = L.image_tags(resolved.ref, resolved.digest, resolved.image_id)
    tags.update(L.git_tags(git) if git else {})
    tags[schema.COMMAND] = json.dumps(list(request.command))
    tags[schema.WORKDIR] = subdir
    tags.update(hooks.hook_tags(request.autolog, request.seed))
    run_id = L.create_run(client, experiment_id, request.run_name, tags)
    try:
        with hooks.hook_directory(hooked) as hook_dir:
            spec = spec_for(run_id, hook_dir)
            record = S.launch_record(spec, request.image, repo_root, request.tracking_uri,
                                     user_env=list(request.user_env))
            record.update(hooks.hook_record(request.autolog, request.seed))
            status = L.run_recorded(client, engine, run_id, spec, record, git.patch if git else "", hidden, "run",
                                    source)
    except BaseException:
        L.finish(client, run_id, 1)
        raise
    L.finish(client, run_id, status)
    L.info("run %s exited with status %d" % (run_id, status))
    where_the_run_went(client, run_id, experiment_id)
    return status


def _existing_experiment(client, name: Optional[str]) -> Optional[str]:
    """A dry run creates nothing: the experiment's id if it exists, else a placeholder."""
    if not name:
        return L.experiment_id(client, None)
    try:
        found = client.get_experiment_by_name(name)
    except Exception as exc:
        raise run_record.tracking_error(exc, "experiment %s" % name) from None
    return found.experiment_id if found else None
