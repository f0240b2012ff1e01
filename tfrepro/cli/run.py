"""`tfrepro run --image REF [options] -- CMD...`: run CMD in a container, recorded in MLflow.

Order: validate options, resolve REF to its digest, create the MLflow run and record the
launch, run the container by digest with MLFLOW_RUN_ID so the in-container callback
resumes that run, stream its output, exit with its status. Every bind-mounted path is
fingerprinted first (tfrepro/replay/data.py), and so are the untracked and ignored files in the
repository (fingerprint/untracked.py: data beside the code), so replay can tell changed data and
restore the data beside the code; what changes while the run runs is marked as its output. Unless --no-autolog, every
Keras fit() in the container gets a ReproCallback, and --seed N seeds it first, with no
change to CMD (tfrepro/replay/hooks.py).
"""
from __future__ import annotations

import json
import os

import click

from tfrepro import imageref, schema, signing
from tfrepro.errors import ContainerFailed, TfreproError, UsageError
from tfrepro.fingerprint import untracked
from tfrepro.redact import patch_withheld, redact_argv
from tfrepro.termsafe import safe
from tfrepro.replay import data
from tfrepro.replay import docker as D
from tfrepro.replay import grants, hostpaths
from tfrepro.replay import hooks as H
from tfrepro.replay import launch as L
from tfrepro.replay import spec as S
from tfrepro.tracking import record as run_record
from tfrepro.tracking.launched import where_the_run_went


@click.command(name="run", context_settings={"allow_interspersed_args": False})
@click.option("--image", required=True, help="Image reference; it is run by its registry digest.")
@click.option("--gpus", default="none", show_default=True, help="all, a count, or none.")
@click.option("-v", "--volume", "volumes", multiple=True, metavar="SRC:DST[:ro]", help="Extra bind mount.")
@click.option("--shm-size", help="e.g. 1g (NGC images want more than docker's 64m).")
@click.option("--memory", help="Memory limit, e.g. 32g.")
@click.option("-e", "--env", "env_items", multiple=True, metavar="K=V", help="Environment variable (secret values are never recorded).")
@click.option("--workdir", default=S.DEFAULT_WORKDIR, show_default=True, help="Where the repository is mounted.")
@click.option("--experiment", help="MLflow experiment name (created if missing).")
@click.option("--run-name", help="MLflow run name.")
@click.option("--tracking-uri", help="Defaults to $MLFLOW_TRACKING_URI / MLflow's default.")
@click.option("--mount-docker-socket", is_flag=True, help="Also mount /var/run/docker.sock (off by default).")
@click.option("--no-autolog", is_flag=True, help="Do not give every Keras fit() in the container a ReproCallback.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Call tfrepro.deterministic(SEED) before CMD runs.")
@click.option("--hash-data", is_flag=True, help="Fingerprint data (mounted, untracked, ignored) by content (sha256), "
              "not path, size and mtime.")
@click.option("--no-untracked", is_flag=True, help="Do not fingerprint the untracked and ignored files in the repository "
              "(a replay then cannot restore them).")
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def command(image, gpus, volumes, shm_size, memory, env_items, workdir, experiment, run_name, tracking_uri,
            mount_docker_socket, no_autolog, seed, hash_data, no_untracked, cmd):
    """Run CMD in IMAGE with the current git checkout mounted, recorded as an MLflow run."""
    imageref.check_image_ref(image)
    gpus = S.parse_gpus(gpus)
    rules = hostpaths.policy()
    mounts = [_checked_mount(v, rules, mount_docker_socket) for v in volumes]
    if mount_docker_socket and not any(m.kind == "docker-socket" for m in mounts):
        mounts.append(S.Mount(S.DOCKER_SOCKETS[0], S.DOCKER_SOCKETS[0], False, "docker-socket"))
    shm_size = S.parse_size(shm_size, "--shm-size")
    memory = S.parse_size(memory, "--memory")
    user_env, from_environ = grants.parse_env_options(env_items, (), os.environ)
    env_record, dropped = S.recorded_env(user_env, from_environ)
    for name, why in dropped:
        L.warn("-e %s: value not recorded (%s); a replay needs --pass-env %s" % (name, why, name))
    workdir = S.check_container_path(workdir, "--workdir")
    uri = L.tracking_uri(tracking_uri)

    git, reason = L.host_git()
    if git is None:
        L.warn("git on this host: %s: the run may not be replayable" % reason)
    elif git.untracked and no_untracked:
        L.warn("%d untracked file(s) are visible to the container and not fingerprinted (--no-untracked): "
               "a replay cannot restore them" % len(git.untracked))
    repo_root = git.root if git and git.root else os.getcwd()
    subdir = git.workdir if git else "."

    docker_client = D.connect()
    resolved = D.resolve(docker_client, image)
    if resolved.digest:
        D.ensure_image(docker_client, resolved.digest)
    else:
        L.warn("image %s is in no registry: the run is replayable on this host only (image id %s)"
               % (image, resolved.image_id))

    sources = data.fingerprint_mounts(mounts, hash_data, log=L.info)
    client = run_record.client(uri)
    experiment_id = L.experiment_id(client, experiment)
    container_uri, tracking_mounts = L.tracking_mounts(uri, client, experiment_id, rules)
    beside = untracked.Capture()
    if git and git.root and not no_untracked:
        from tfrepro.tracking.spool import spool_dir

        beside = untracked.collect(git.root, workdir, hash_data, [m.source for m in tracking_mounts] + [spool_dir()])
    if beside.found:
        L.info(safe(beside.note()))  # file names from disk: escaped like a record's strings
    sources += beside.sources
    tags = L.image_tags(resolved.ref, resolved.digest, resolved.image_id)
    tags.update(L.git_tags(git) if git else {})
    tags[schema.COMMAND] = json.dumps(redact_argv(cmd))  # secret flag values never reach the server
    tags[schema.WORKDIR] = subdir
    autolog = not no_autolog
    tags.update(H.hook_tags(autolog, seed))
    withhold = patch_withheld()  # TFREPRO_NO_PATCH=1: the uncommitted code stays off the server
    if withhold and git and git.dirty:
        tags[schema.GIT_PATCH_WITHHELD] = "true"
    tags.update(data.to_tags(sources))
    if beside.found:
        tags[schema.DATA_BESIDE] = schema.truncate(beside.note())
    run_id = L.create_run(client, experiment_id, run_name, tags)
    try:
        data.record(client, run_id, sources)
        env = dict(user_env)
        env.update(S.managed_env(container_uri, experiment_id, run_id, image, resolved.digest,
                                 resolved.image_id, os.environ, workdir))
        env.update(H.hook_env(autolog, seed, user_env, H.image_env(docker_client, resolved.run_ref)))
        if withhold:
            env["TFREPRO_NO_PATCH"] = "1"  # the callback inside withholds it too
        with H.hook_directory(H.wanted(autolog, seed)) as hook_dir:
            all_mounts = (S.Mount(repo_root, workdir, False, "repo"),) + tuple(mounts) + tracking_mounts
            spec = S.LaunchSpec(
                image=resolved.run_ref, command=tuple(cmd), workdir=workdir, subdir=subdir,
                mounts=all_mounts + H.hook_mounts(hook_dir), env=env, gpus=gpus, shm_size=shm_size,
                memory=memory, labels={schema.RUN_ID_LABEL: run_id},
            )
            record = S.launch_record(spec, image, repo_root, uri, env=env_record)
            record.update(H.hook_record(autolog, seed))
            hidden = (["MLFLOW_TRACKING_URI"] if "@" in container_uri else []) + list(from_environ) \
                + [name for name, _ in dropped]
            status = L.run_recorded(client, docker_client, run_id, spec, record,
                                    "" if withhold or not git else git.patch, hidden, "run")
        _mark_written(client, run_id, sources, beside, git.root if git else None)
    except BaseException:
        L.finish(client, run_id, 1)
        raise
    L.finish(client, run_id, status)
    signing.sign_run(client, run_id, warn=L.warn)
    L.info("run %s exited with status %d" % (run_id, status))
    where_the_run_went(client, run_id, experiment_id)
    if status:
        raise ContainerFailed(status)


def _mark_written(client, run_id, sources, beside, root) -> None:
    """What changed beside the code while the run ran is its output: recorded as such, not restored."""
    if not beside.sources:
        return
    marked, changed = untracked.written(beside, root)
    if changed:
        L.info("data beside the code: %s changed while the run ran: recorded as its output, not restored on replay"
               % ", ".join(changed))
        try:
            data.record(client, run_id, [s for s in sources if s.label == "mount"] + list(marked.sources), tags=True)
        except TfreproError as exc:  # the run's own result stands
            L.warn("could not record which data the run wrote: %s" % exc)


def _checked_mount(text: str, rules, allow_docker_socket: bool) -> S.Mount:
    """-v SRC:DST: the host path resolved, and refused when it is one no container may get."""
    mount = S.parse_mount(text, allow_docker_socket)
    if not mount.source.startswith("/"):
        return mount
    real, refusal = hostpaths.check(mount.source, rules, allow_docker_socket)
    if refusal:
        raise UsageError("refusing -v %s: %s" % (text, refusal))
    return S.Mount(real, mount.target, mount.read_only, mount.kind)
