"""`tfrepro run --image REF [options] -- CMD...`: run CMD in a container, recorded in MLflow.

Order: validate options, resolve REF to its digest, create the MLflow run and record the
launch, run the container by digest with MLFLOW_RUN_ID so the in-container callback
resumes that run, stream its output, exit with its status. Unless --no-autolog, every
Keras fit() in the container gets a ReproCallback, and --seed N seeds it first, with no
change to CMD (tfrepro/launch/hooks.py).
"""
from __future__ import annotations

import json
import os

import click

from tfrepro import imageref, schema
from tfrepro.errors import ContainerFailed
from tfrepro.launch import docker as D
from tfrepro.launch import hooks as H
from tfrepro.launch import launcher as L
from tfrepro.launch import spec as S
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
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def command(image, gpus, volumes, shm_size, memory, env_items, workdir, experiment, run_name, tracking_uri,
            mount_docker_socket, no_autolog, seed, cmd):
    """Run CMD in IMAGE with the current git checkout mounted, recorded as an MLflow run."""
    imageref.check_image_ref(image)
    gpus = S.parse_gpus(gpus)
    mounts = [S.parse_mount(v, mount_docker_socket) for v in volumes]
    if mount_docker_socket and not any(m.kind == "docker-socket" for m in mounts):
        mounts.append(S.Mount(S.DOCKER_SOCKETS[0], S.DOCKER_SOCKETS[0], False, "docker-socket"))
    shm_size = S.parse_size(shm_size, "--shm-size")
    memory = S.parse_size(memory, "--memory")
    user_env = S.parse_env(env_items, os.environ)
    workdir = S.check_container_path(workdir, "--workdir")
    uri = L.tracking_uri(tracking_uri)

    git, reason = L.host_git()
    if git is None:
        L.warn("git on this host: %s: the run may not be replayable" % reason)
    elif git.untracked:
        L.warn("%d untracked file(s) are visible to the container but cannot be replayed" % len(git.untracked))
    repo_root = git.root if git and git.root else os.getcwd()
    subdir = git.workdir if git else "."

    docker_client = D.connect()
    resolved = D.resolve(docker_client, image)
    if resolved.digest:
        D.ensure_image(docker_client, resolved.digest)
    else:
        L.warn("image %s is in no registry: the run is replayable on this host only (image id %s)"
               % (image, resolved.image_id))

    client = run_record.client(uri)
    experiment_id = L.experiment_id(client, experiment)
    container_uri, tracking_mounts = S.tracking_setup(uri, L.artifact_dirs(client, experiment_id))
    tags = L.image_tags(resolved.ref, resolved.digest, resolved.image_id)
    tags.update(L.git_tags(git) if git else {})
    tags[schema.COMMAND] = json.dumps(list(cmd))
    tags[schema.WORKDIR] = subdir
    autolog = not no_autolog
    tags.update(H.hook_tags(autolog, seed))
    run_id = L.create_run(client, experiment_id, run_name, tags)
    try:
        env = dict(user_env)
        env.update(S.managed_env(container_uri, experiment_id, run_id, image, resolved.digest,
                                 resolved.image_id, os.environ, workdir))
        env.update(H.hook_env(autolog, seed, user_env, H.image_env(docker_client, resolved.run_ref)))
        with H.hook_directory(H.wanted(autolog, seed)) as hook_dir:
            all_mounts = (S.Mount(repo_root, workdir, False, "repo"),) + tuple(mounts) + tracking_mounts
            spec = S.LaunchSpec(
                image=resolved.run_ref, command=tuple(cmd), workdir=workdir, subdir=subdir,
                mounts=all_mounts + H.hook_mounts(hook_dir), env=env, gpus=gpus, shm_size=shm_size,
                memory=memory, labels={schema.RUN_ID_LABEL: run_id},
            )
            record = S.launch_record(spec, image, repo_root, uri, user_env=list(user_env))
            record.update(H.hook_record(autolog, seed))
            hidden = ["MLFLOW_TRACKING_URI"] if "@" in container_uri else []
            status = L.run_recorded(client, docker_client, run_id, spec, record, git.patch if git else "", hidden,
                                    "run")
    except BaseException:
        L.finish(client, run_id, 1)
        raise
    L.finish(client, run_id, status)
    L.info("run %s exited with status %d" % (run_id, status))
    where_the_run_went(client, run_id, experiment_id)
    if status:
        raise ContainerFailed(status)
