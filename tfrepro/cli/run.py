"""`tfrepro run --image REF [options] -- CMD...`: run CMD in a container, recorded in MLflow.

Parses and checks the options; tfrepro/launch/new_run.py does the work (see its docstring for
the order). `--on` picks the engine (docker by default; podman, slurm, kubernetes). Every
bind-mounted path is fingerprinted first, and so are the untracked and ignored files in the
repository (data beside the code). Unless --no-autolog, every Keras fit() in the container gets
a ReproCallback, and --seed N seeds it first, with no change to CMD (tfrepro/launch/hooks.py).
"""

from __future__ import annotations

import logging
import os

import click

from tfrepro import imageref
from tfrepro.cli import engine_options, output
from tfrepro.errors import JobFailed
from tfrepro.launch import engines, env_options, hostpaths, new_run, settings, spec, workers
from tfrepro.tracking import runs

log = logging.getLogger(__name__)


@click.command(name="run", context_settings={"allow_interspersed_args": False})
@click.option("--image", required=True, help="Image reference; it is run by its registry digest.")
@click.option("--gpus", default="none", show_default=True, help="all, a count, or none.")
@engine_options.volume_option("Extra mount (on kubernetes, pvc:CLAIM:/path mounts a PersistentVolumeClaim).")
@click.option("--shm-size", help="e.g. 1g (NGC images want more than docker's 64m).")
@click.option("--memory", help="Memory limit, e.g. 32g.")
@click.option(
    "-e",
    "--env",
    "env_items",
    multiple=True,
    metavar="K=V",
    help="Environment variable (secret values are never recorded).",
)
@click.option("--workdir", default=spec.DEFAULT_WORKDIR, show_default=True, help="Where the repository is mounted.")
@click.option("--experiment", help="MLflow experiment name (created if missing).")
@click.option("--run-name", help="MLflow run name.")
@engine_options.tracking_uri_option
@click.option("--mount-docker-socket", is_flag=True, help="Also mount /var/run/docker.sock (off by default).")
@click.option("--no-autolog", is_flag=True, help="Do not give every Keras fit() in the container a ReproCallback.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Call tfrepro.deterministic(SEED) before CMD runs.")
@click.option(
    "--hash-data",
    is_flag=True,
    help="Fingerprint data (mounted, untracked, ignored) by content (sha256), not path, size and mtime.",
)
@click.option(
    "--no-untracked",
    is_flag=True,
    help="Do not fingerprint the untracked and ignored files in the repository (a replay then cannot restore them).",
)
@click.option("--dry-run", is_flag=True, help="Print exactly what would be submitted; create and run nothing.")
@engine_options.engine_options
@engine_options.shape_options
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def command(
    image,
    gpus,
    volumes,
    shm_size,
    memory,
    env_items,
    workdir,
    experiment,
    run_name,
    tracking_uri,
    mount_docker_socket,
    no_autolog,
    seed,
    hash_data,
    no_untracked,
    dry_run,
    cmd,
    **engine_given,
):
    """Run CMD in IMAGE with the current git checkout mounted, recorded as an MLflow run."""
    shape = workers.merged(engine_options.pop_shape(engine_given))
    name, given = engine_options.pop(engine_given)
    name = name or "docker"
    engine = engines.get(name, settings.options_from(name, given))
    imageref.check_image_ref(image)
    rules = hostpaths.policy()
    mounts = [hostpaths.checked_mount(volume, rules, mount_docker_socket, name == "kubernetes") for volume in volumes]
    if mount_docker_socket and not any(mount.kind == "docker-socket" for mount in mounts):
        mounts.append(spec.Mount(spec.DOCKER_SOCKETS[0], spec.DOCKER_SOCKETS[0], False, "docker-socket"))
    user_env, from_environ = env_options.parse_env_options(env_items, (), os.environ)
    env_record, dropped = spec.recorded_env(user_env, from_environ)
    for env_name, why in dropped:
        log.warning("-e %s: value not recorded (%s); a replay needs --pass-env %s", env_name, why, env_name)
    container = spec.LaunchSpec(
        image,
        tuple(cmd),
        workdir=spec.check_container_path(workdir, "--workdir"),
        mounts=tuple(mounts),
        env=user_env,
        gpus=spec.parse_gpus(gpus),
        shm_size=spec.parse_size(shm_size, "--shm-size"),
        memory=spec.parse_size(memory, "--memory"),
    )
    request = new_run.Request(
        container=container,
        experiment=experiment,
        run_name=run_name,
        tracking_uri=runs.tracking_uri(tracking_uri),
        autolog=not no_autolog,
        seed=seed,
        hash_data=hash_data,
        untracked=not no_untracked,
        env_record=env_record,
        from_environ=tuple(from_environ),
        dropped=tuple(env_name for env_name, _ in dropped),
        rules=rules,
        shape=shape,
    )
    if dry_run:
        output.echo(new_run.preview(request, engine))
        return
    exit_status = new_run.launch(request, engine, output.stdout_writer())
    if exit_status:
        raise JobFailed(exit_status)
