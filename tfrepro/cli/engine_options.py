"""`--on` and each engine's options, the mount option and --tracking-uri, shared by `tfrepro run` and
`tfrepro replay`.

Each option is one row of a table: its parameter name, its flags and the rest of what
click.option takes. The decorators and the names pop() takes back out both come from it."""

from __future__ import annotations

from typing import Any, Dict, Mapping, NamedTuple, Tuple

import click

from tfrepro.launch import settings, slurm, workers


class Option(NamedTuple):
    """One row: the parameter's name, its flags, its help, and what else click.option takes."""

    name: str
    flags: Tuple[str, ...]
    help: str
    attrs: Mapping[str, Any] = {}


ENGINE = (
    Option(
        "engine",
        ("--on",),
        "Where to run: docker (default for run), podman, slurm or kubernetes.",
        {"type": click.Choice(settings.NAMES)},
    ),
    Option("partition", ("--partition",), "Slurm partition."),
    Option("time", ("--time",), "Slurm time limit (minutes, HH:MM:SS, D-HH:MM:SS)."),
    Option("account", ("--account",), "Slurm account."),
    Option("nodes", ("--nodes",), "Slurm node count.", {"type": click.IntRange(1)}),
    Option("gres", ("--gres",), "Slurm generic resources, e.g. gpu:a100:2 (default: gpu:N from --gpus N)."),
    Option(
        "sbatch_args",
        ("--sbatch-arg",),
        "Any other sbatch option, one per flag.",
        {"multiple": True, "metavar": "--OPT=VALUE"},
    ),
    Option(
        "runtime",
        ("--runtime",),
        "What runs the container in a Slurm job (default docker; pyxis: srun --container-image).",
        {"type": click.Choice(slurm.RUNTIMES)},
    ),
    Option("namespace", ("--namespace",), "Kubernetes namespace (default: default)."),
    Option("service_account", ("--service-account",), "Kubernetes service account for the pod."),
    Option("image_pull_secret", ("--image-pull-secret",), "Kubernetes Secret to pull the image with."),
    Option(
        "env_secret",
        ("--env-secret",),
        "Kubernetes Secret holding the values of secret variables (default tfrepro-env).",
    ),
    Option("kube_context", ("--kube-context",), "kubeconfig context (default: the current one)."),
    Option(
        "output",
        ("-o", "--output"),
        "Form of the Kubernetes manifest --dry-run prints (default yaml).",
        {"type": click.Choice(("yaml", "json"))},
    ),
)

SHAPE = (
    Option(
        "workers",
        ("--workers",),
        "Workers of a multi-worker training (MultiWorkerMirroredStrategy); default 1.",
        {"type": int},
    ),
    Option(
        "tasks_per_node",
        ("--tasks-per-node",),
        "Slurm: workers on each node (default: as few nodes as fit).",
        {"type": int},
    ),
    Option(
        "gpus_per_task", ("--gpus-per-task",), "GPUs each worker sees, a count (default: --gpus, for every worker)."
    ),
    Option(
        "worker_port",
        ("--worker-port",),
        "Port of worker 0; worker i listens on it + i on one host (default %d)." % workers.DEFAULT_BASE_PORT,
        {"type": int},
    ),
    Option(
        "timeout_s",
        ("--timeout",),
        "Stop every worker past SECONDS (a worker that never joins makes the others wait for ever).",
        {"type": float, "metavar": "SECONDS"},
    ),
)


def stack(*decorators):
    """One decorator applying `decorators` so that --help lists their options in this order."""

    def decorate(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return decorate


def _decorators(table: Tuple[Option, ...]):
    return [click.option(*option.flags, option.name, help=option.help, **option.attrs) for option in table]


engine_options = stack(*_decorators(ENGINE))
shape_options = stack(*_decorators(SHAPE))


def pop(kwargs: Dict[str, object]):
    """(--on value or None, the engine options given) out of a command's keyword arguments."""
    given = {option.name: kwargs.pop(option.name) for option in ENGINE}
    return given.pop("engine"), given


def pop_shape(kwargs: Dict[str, object]) -> Dict[str, object]:
    """The shape options given (None: not given), out of a command's keyword arguments;
    workers.merged() turns them into a checked Shape."""
    return {option.name: kwargs.pop(option.name) for option in SHAPE}


def volume_option(help_text: str):
    """-v/--volume SRC:DST[:ro], repeatable, into `volumes`."""
    return click.option("-v", "--volume", "volumes", multiple=True, metavar="SRC:DST[:ro]", help=help_text)


# unlike common_options.tracking_uri_option, no envvar: MLflow itself reads $MLFLOW_TRACKING_URI
tracking_uri_option = click.option("--tracking-uri", help="Defaults to $MLFLOW_TRACKING_URI / MLflow's default.")
