"""`tfrepro replay RUN_ID`: rerun a recorded run in its exact container and compare results.

Order: read and validate the record, show drift and the equivalent `docker run` line
(--dry-run stops there), confirm, materialise commit + patch in a standalone temporary
checkout (so git inside the container records them itself), pull by digest, run with a new
MLflow run tagged tfrepro.replay_of, then compare metrics and model hash.
"""
from __future__ import annotations

import json
import os
import shlex
import sys

import click

from tfrepro.errors import ContainerFailed, UsageError
from tfrepro.replay import checkout as C
from tfrepro.replay import docker as D
from tfrepro.replay import drift as DR
from tfrepro.replay import hooks as H
from tfrepro.replay import launch as L
from tfrepro.replay import plan as P
from tfrepro.replay import record as R
from tfrepro.replay import spec as S
from tfrepro.replay import verify as V

HOOK = "<hook>"  # placeholder for the launch hook's directory until it is written


def _host_gpu():
    from tfrepro.fingerprint import collect

    return collect(("gpu",)).gpu


def _refusals(plan, items, host_gpu, allow_drift):
    """Reasons not to run, as messages (raised, or only warned on --dry-run)."""
    reasons = []
    try:
        P.check_gpus(plan, host_gpu.count if host_gpu else 0)
    except UsageError as exc:
        reasons.append(str(exc))
    blocking = [d for d in items if d.blocking]
    if blocking and not allow_drift:
        reasons.append("%s: recorded %s, this host %s (pass --allow-drift to run anyway)"
                       % (blocking[0].name, blocking[0].recorded, blocking[0].host))
    return reasons


@click.command(name="replay")
@click.argument("run_id")
@click.option("--dry-run", is_flag=True, help="Show drift and the docker command, run nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before running.")
@click.option("--gpus", help="all, a count or none (default: as recorded).")
@click.option("--tracking-uri", help="Defaults to $MLFLOW_TRACKING_URI / MLflow's default.")
@click.option("--experiment", help="Experiment for the replay run (default: the original's).")
@click.option("--tolerance", type=float, default=V.DEFAULT_TOLERANCE, show_default=True,
              help="Relative tolerance: |a-b| <= T*max(1,|a|). 0: only identical passes.")
@click.option("--allow-drift", is_flag=True, help="Run even if this host's driver cannot run the image's CUDA.")
@click.option("--mount-docker-socket", is_flag=True, help="Allow a recorded Docker socket mount.")
@click.option("--keep-checkout", is_flag=True, help="Leave the temporary checkout in place afterwards.")
def command(run_id, dry_run, yes, gpus, tracking_uri, experiment, tolerance, allow_drift, mount_docker_socket,
            keep_checkout):
    """Replay RUN_ID in its recorded image, commit and patch, and verify the result."""
    if tolerance < 0:
        raise UsageError("--tolerance must be >= 0")
    uri = L.tracking_uri(tracking_uri)
    client = R.client(uri)
    record = R.load(client, run_id)
    plan = P.plan(record, os.environ, P.KEEP if gpus is None else gpus, mount_docker_socket)
    host_gpu = _host_gpu()
    items = DR.compare(record.tags, record.environment, host_gpu, plan.spec.gpus)
    experiment_id = L.experiment_id(client, experiment, default=record.experiment_id)
    container_uri, tracking_mounts = S.tracking_setup(uri, L.artifact_dirs(client, experiment_id))
    preview_env = S.managed_env(container_uri, experiment_id, "<new run>", plan.image_ref, plan.image_digest,
                                plan.image_id, os.environ, plan.spec.workdir)
    hooked = H.wanted(plan.autolog, plan.hook_seed)
    preview_env.update(H.hook_env(plan.autolog, plan.hook_seed, plan.spec.env, {}))
    preview = P.finalize(plan, P.CHECKOUT, preview_env, tracking_mounts + H.hook_mounts(HOOK if hooked else None))
    hidden = ["MLFLOW_RUN_ID"] + (["MLFLOW_TRACKING_URI"] if "@" in container_uri else [])
    click.echo("replay of run %s: image %s, commit %s%s" % (record.run_id, plan.image, plan.commit[:12],
                                                             " + patch" if plan.patch.strip() else ""))
    click.echo("drift (! blocks, * differs):\n" + DR.render(items))
    click.echo("command (%s = commit %s%s):\n  %s" % (P.CHECKOUT, plan.commit[:12],
               " with the recorded patch" if plan.patch.strip() else "", shlex.join(S.docker_argv(preview, hidden))))
    refusals = _refusals(plan, items, host_gpu, allow_drift)
    if refusals and not dry_run:
        raise UsageError(refusals[0])
    for message in list(plan.warnings) + refusals:
        L.warn(message)
    if dry_run:
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("refusing to run without confirmation: stdin is not a terminal (pass --yes)")
        click.confirm("Replay run %s with this command?" % record.run_id, abort=True)

    candidates = [os.getcwd()] + list(plan.repo_roots)
    # the source first: a missing commit or a stale patch is found before a long pull
    with C.materialise(plan.commit, plan.patch, candidates, plan.remote, log=L.info, keep=keep_checkout) as source:
        docker_client = D.connect()
        D.ensure_image(docker_client, plan.image)
        tags = L.image_tags(plan.image_ref, plan.image_digest, plan.image_id)
        tags.update(_launch_tags(plan, source))
        tags["tfrepro.replay_of"] = record.run_id
        new_run = L.create_run(client, experiment_id, "replay-of-" + (record.run_name or record.run_id), tags)
        try:
            env = S.managed_env(container_uri, experiment_id, new_run, plan.image_ref, plan.image_digest,
                                plan.image_id, os.environ, plan.spec.workdir)
            env.update(H.hook_env(plan.autolog, plan.hook_seed, plan.spec.env, H.image_env(docker_client, plan.image)))
            with H.hook_directory(hooked) as hook_dir:
                spec = P.finalize(plan, source, env, tracking_mounts + H.hook_mounts(hook_dir),
                                  {"tfrepro.run_id": new_run})
                launch = S.launch_record(spec, plan.image_ref, None, uri, user_env=list(plan.spec.env))
                launch.update(H.hook_record(plan.autolog, plan.hook_seed))
                status = L.run_recorded(client, docker_client, new_run, spec, launch, plan.patch, hidden,
                                        "replay run")
        except BaseException:
            L.finish(client, new_run, 1)
            raise
        L.finish(client, new_run, status)
    if status:
        _set_verdict(client, new_run, V.Verdict(V.FAILED, "container exited with status %d" % status))
        raise ContainerFailed(status, "replay run %s: container exited with status %d" % (new_run, status))
    verdict = V.compare(R.histories(client, record.run_id), R.histories(client, new_run),
                        record.tags.get("tfrepro.model.hash"), _tag(client, new_run, "tfrepro.model.hash"),
                        tolerance)
    _set_verdict(client, new_run, verdict)
    click.echo("replay run %s: %s" % (new_run, verdict.line()))
    if not verdict.ok:
        from tfrepro.cli import exit_with

        exit_with(1)


def _launch_tags(plan, source) -> dict:
    """What the launcher knows, as `tfrepro run` records it: the checkout read on this side
    (the in-container fingerprint records it again), the command, its directory, the seed."""
    git, _ = L.host_git(source)
    tags = L.git_tags(git) if git else {}
    tags["tfrepro.command"] = json.dumps(list(plan.spec.command))
    tags["tfrepro.workdir"] = plan.spec.subdir
    if plan.seed is not None:
        tags["tfrepro.seed"] = plan.seed
    tags.update(H.hook_tags(plan.autolog, plan.hook_seed))
    return tags


def _tag(client, run_id, key):
    try:
        return client.get_run(run_id).data.tags.get(key)
    except Exception as exc:
        raise R.tracking_error(exc, "run %s" % run_id) from None


def _set_verdict(client, run_id, verdict):
    from mlflow.entities import RunTag

    tags = [RunTag("tfrepro.replay.verdict", verdict.verdict),
            RunTag("tfrepro.replay.detail", verdict.detail[:4000])]
    try:
        client.log_batch(run_id, tags=tags)
    except Exception as exc:
        L.warn("could not tag the verdict on run %s: %s" % (run_id, R.tracking_error(exc, "run")))
