"""`--on` and each engine's options, and the mount option, shared by `tfrepro run` and `tfrepro replay`."""

from __future__ import annotations

from typing import Dict

import click

from tfrepro.launch import settings, slurm, workers

OPTIONS = (
    click.option(
        "--on",
        "engine",
        type=click.Choice(settings.NAMES),
        help="Where to run: docker (default for run), podman, slurm or kubernetes.",
    ),
    click.option("--partition", help="Slurm partition."),
    click.option("--time", help="Slurm time limit (minutes, HH:MM:SS, D-HH:MM:SS)."),
    click.option("--account", help="Slurm account."),
    click.option("--nodes", type=click.IntRange(1), help="Slurm node count."),
    click.option("--gres", help="Slurm generic resources, e.g. gpu:a100:2 (default: gpu:N from --gpus N)."),
    click.option(
        "--sbatch-arg",
        "sbatch_args",
        multiple=True,
        metavar="--OPT=VALUE",
        help="Any other sbatch option, one per flag.",
    ),
    click.option(
        "--runtime",
        type=click.Choice(slurm.RUNTIMES),
        help="What runs the container in a Slurm job (default docker; pyxis: srun --container-image).",
    ),
    click.option("--namespace", help="Kubernetes namespace (default: default)."),
    click.option("--service-account", help="Kubernetes service account for the pod."),
    click.option("--image-pull-secret", help="Kubernetes Secret to pull the image with."),
    click.option(
        "--env-secret", help="Kubernetes Secret holding the values of secret variables (default tfrepro-env)."
    ),
    click.option("--kube-context", help="kubeconfig context (default: the current one)."),
    click.option(
        "-o",
        "--output",
        type=click.Choice(("yaml", "json")),
        help="Form of the Kubernetes manifest --dry-run prints (default yaml).",
    ),
)
NAMES = (
    "engine",
    "partition",
    "time",
    "account",
    "nodes",
    "gres",
    "sbatch_args",
    "runtime",
    "namespace",
    "service_account",
    "image_pull_secret",
    "env_secret",
    "kube_context",
    "output",
)


def engine_options(function):
    for option in reversed(OPTIONS):
        function = option(function)
    return function


def pop(kwargs: Dict[str, object]):
    """(--on value or None, the engine options given) out of a command's keyword arguments."""
    given = {name: kwargs.pop(name) for name in NAMES}
    return given.pop("engine"), given


SHAPE_OPTIONS = (
    click.option(
        "--workers", type=int, help="Workers of a multi-worker training (MultiWorkerMirroredStrategy); default 1."
    ),
    click.option("--tasks-per-node", type=int, help="Slurm: workers on each node (default: as few nodes as fit)."),
    click.option("--gpus-per-task", help="GPUs each worker sees, a count (default: --gpus, for every worker)."),
    click.option(
        "--worker-port",
        type=int,
        help="Port of worker 0; worker i listens on it + i on one host (default %d)." % workers.DEFAULT_BASE_PORT,
    ),
    click.option(
        "--timeout",
        "timeout_s",
        type=float,
        metavar="SECONDS",
        help="Stop every worker past SECONDS (a worker that never joins makes the others wait for ever).",
    ),
)
SHAPE_NAMES = ("workers", "tasks_per_node", "gpus_per_task", "worker_port", "timeout_s")


def shape_options(function):
    for option in reversed(SHAPE_OPTIONS):
        function = option(function)
    return function


def pop_shape(kwargs: Dict[str, object]) -> Dict[str, object]:
    """The shape options given (None: not given), out of a command's keyword arguments;
    workers.merged() turns them into a checked Shape."""
    return {name: kwargs.pop(name) for name in SHAPE_NAMES}


def volume_option(help_text: str):
    """-v/--volume SRC:DST[:ro], repeatable, into `volumes`."""
    return click.option("-v", "--volume", "volumes", multiple=True, metavar="SRC:DST[:ro]", help=help_text)
