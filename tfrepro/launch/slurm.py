"""Slurm: a LaunchSpec -> a batch script that runs the container by digest on the node.

Pure: options are validated and the script is text. The job's runtime is chosen by
`--runtime`: `docker` or `podman` run the container inside the batch script; `pyxis` is
`srun --container-image=...`, NVIDIA's form for NGC images on Slurm (pyxis + enroot).
Submitting, streaming and cancelling are in slurm_job.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

from tfrepro import imageref
from tfrepro.errors import UsageError
from tfrepro.launch import workers
from tfrepro.launch.spec import LaunchSpec, docker_argv
from tfrepro.redact import is_secret
from tfrepro.termsafe import shell_quote

RUNTIMES = ("docker", "podman", "pyxis")
# what the scheduler source inside the container reads (docker/podman pass them on by name)
JOB_VARS = (
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_NODELIST",
    "SLURM_JOB_PARTITION",
    "SLURM_CLUSTER_NAME",
    "SLURM_JOB_ACCOUNT",
)
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
# each option whose value reaches the script: its pattern, and what a value must look like
_FORMS = {
    "partition": (NAME_RE, "a Slurm name"),
    "account": (NAME_RE, "a Slurm name"),
    "time": (
        re.compile(r"^(?:[0-9]+-)?[0-9]+(?::[0-9]+){0,2}$|^(?:UNLIMITED|INFINITE)$"),
        "minutes, HH:MM:SS or D-HH:MM:SS",
    ),
    "gres": (
        re.compile(r"^[A-Za-z0-9_\-]+(?::[A-Za-z0-9_.\-]+)*(?:,[A-Za-z0-9_\-]+(?::[A-Za-z0-9_.\-]+)*)*$"),
        "e.g. gpu:2 or gpu:a100:2",
    ),
    "sbatch-arg": (
        re.compile(r"^--?[A-Za-z][A-Za-z0-9\-]*(?:=\S+)?$"),
        "one sbatch option as --name=value, without spaces",
    ),
}
SUBMIT = ("sbatch", "--parsable", "--wait")
# what each task of a multi-worker job passes on too: the callback's chief detection reads them
TASK_VARS = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_STEP_ID")
WORKER_VARS = (workers.TF_CONFIG, workers.WORKER_INDEX, workers.WORKER_COUNT)
TASK_END = "TFREPRO_TASK"  # ends the here-document holding the task's script


@dataclass(frozen=True)
class SlurmOptions:
    partition: Optional[str] = None
    time: Optional[str] = None
    account: Optional[str] = None
    nodes: Optional[int] = None
    gres: Optional[str] = None  # derived from the spec's GPUs when not given
    runtime: str = "docker"
    sbatch_args: Tuple[str, ...] = ()  # anything else, one `--opt=value` each


def _check_form(name: str, value: Optional[str]) -> None:
    pattern, form = _FORMS[name]
    if value is not None and not pattern.match(value):
        raise UsageError("--%s %r: expected %s" % (name, value, form))


def check_options(options: SlurmOptions, spec: LaunchSpec) -> SlurmOptions:
    """Validate every value that reaches the script; derive --gres and --mem from the spec."""
    for name, value in (("partition", options.partition), ("account", options.account), ("time", options.time)):
        _check_form(name, value)
    if options.nodes is not None and options.nodes < 1:
        raise UsageError("--nodes must be at least 1")
    if options.runtime not in RUNTIMES:
        raise UsageError("--runtime must be one of %s, not %r" % (", ".join(RUNTIMES), options.runtime))
    for arg in options.sbatch_args:
        _check_form("sbatch-arg", arg)
        if arg.split("=", 1)[0] in ("--wait", "-W", "--parsable", "--output", "-o", "--export"):
            raise UsageError("--sbatch-arg %s: tfrepro sets that itself" % arg)
    gres = options.gres
    if gres is not None:
        _check_form("gres", gres)
    elif spec.gpus == "all":
        raise UsageError("--gpus all: tell Slurm how many GPUs to allocate (--gres gpu:N or --gpus N)")
    elif spec.gpus is not None:
        gres = "gpu:%s" % spec.gpus
    return replace(options, gres=gres)


def memory_mb(size: Optional[str]) -> Optional[str]:
    """docker's size (512m, 8g, bytes) -> sbatch --mem (megabytes, rounded up)."""
    if not size:
        return None
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    number, unit = (size[:-1], size[-1]) if size[-1] in units else (size, "b")
    return "%dM" % -(-int(number) * units[unit] // (1 << 20))


def enroot_image(image: str) -> str:
    """repo@sha256:... -> enroot's URI form, the registry split off by '#' (nvcr.io#nvidia/tf@sha256:...)."""
    imageref.check_digest_ref(image)
    first, sep, rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first + "#" + rest
    return image


def _gpu_words(runtime: str, gpus: Optional[str], variable: str = "SLURM_JOB_GPUS") -> List[str]:
    """The container sees the GPUs Slurm allocated to the job (SLURM_JOB_GPUS), not the node's;
    a worker with GPUs of its own sees its slice ($task_gpus)."""
    if gpus is None:
        return []
    if runtime == "docker":
        return ['--gpus="\\"device=${%s:?no GPUs allocated}\\""' % variable]
    return ['"${gpu_devices[@]}"']  # podman: one CDI device per allocated GPU, built above


def container_lines(
    spec: LaunchSpec,
    runtime: str,
    nodes: Optional[int],
    hidden: Sequence[str],
    shape: Optional[workers.Shape] = None,
) -> List[str]:
    """The script's body: the command that runs the container. scancel's SIGTERM reaches the
    script, which stops the container (a training as the container's PID 1 ignores SIGTERM,
    and a container outlives a killed docker client). N workers: task_lines()."""
    if runtime == "pyxis":
        return _pyxis_lines(spec, hidden)
    if shape is not None and shape.multi:
        return task_lines(spec, runtime, shape, nodes, hidden)
    prefix = "srun --ntasks-per-node=1 " if (nodes or 1) > 1 else ""
    stop = "trap '%s stop --time 10 \"$container\" >/dev/null' TERM  # scancel stops the container too" % runtime
    lines = ['container="tfrepro-${SLURM_JOB_ID}"', stop]
    return lines + _run_lines(spec, runtime, hidden, prefix, JOB_VARS, "SLURM_JOB_GPUS") + ['exit "$status"']


def _run_lines(
    spec: LaunchSpec, runtime: str, hidden: Sequence[str], prefix: str, pass_on: Sequence[str], gpus_variable: str
) -> List[str]:
    """Run the container named $container in the background and wait for it (the caller's
    trap stops it on SIGTERM); $status is its exit status."""
    argv = docker_argv(replace(spec, gpus=None), hidden)
    argv[0] = runtime
    image_at = len(argv) - len(spec.command) - 1
    job_env = [word for name in pass_on for word in ("-e", name)]
    options = (
        ['--name "$container"']
        + _gpu_words(runtime, spec.gpus, gpus_variable)
        + [shell_quote(word) for word in argv[3:image_at] + job_env]
    )
    lines = []
    if runtime == "podman" and spec.gpus is not None:
        lines.append(
            'gpu_devices=(); for gpu in ${%s//,/ }; do gpu_devices+=(--device "nvidia.com/gpu=$gpu"); done'
            % gpus_variable
        )
    head = prefix + " ".join(shell_quote(word) for word in argv[:3])
    body = _continued(head, options, [shell_quote(word) for word in argv[image_at:]])
    body[-1] += " &"
    return (
        lines
        + body
        + [
            "child=$! status=0",
            'wait "$child" || status=$?',
            'while kill -0 "$child" 2>/dev/null; do wait "$child" || status=$?; done',
        ]
    )


def task_lines(
    spec: LaunchSpec, runtime: str, shape: workers.Shape, nodes: Optional[int], hidden: Sequence[str]
) -> List[str]:
    """N workers: one container per srun task, under this one job.

    The batch script expands the node list once; each task runs the script held in
    $task_script (a quoted here-document: nothing in it is expanded before the task runs it),
    which computes the task's TF_CONFIG from SLURM_PROCID (workers.slurm_tf_config) and runs
    its container. srun --kill-on-bad-exit stops the step at the first task that fails: the
    other tasks get SIGTERM and stop their containers, and exit 0, so the job's exit code is
    the failed worker's status; every task says how it ended, prefixed with its number (--label).
    """
    per_node = workers.slurm_tasks_per_node(shape, nodes)
    gpus_variable = "SLURM_JOB_GPUS"
    task: List[str] = ["set -euo pipefail"] + workers.slurm_tf_config(shape, per_node)
    if shape.gpus_per_task is not None:  # this task's slice of the node's GPUs, by its local id
        count = int(shape.gpus_per_task)
        task.append(
            'IFS=, read -r -a job_gpus <<< "${SLURM_JOB_GPUS:?no GPUs allocated}"; '
            'task_gpus=$(IFS=,; echo "${job_gpus[*]:SLURM_LOCALID * %d:%d}")' % (count, count)
        )
        gpus_variable = "task_gpus"
        spec = replace(spec, gpus=shape.gpus_per_task)
    task += [
        'container="tfrepro-${SLURM_JOB_ID}-${SLURM_PROCID}" stopped=0',
        "trap 'stopped=1; %s stop --time 10 \"$container\" >/dev/null' TERM  # another worker failed, or scancel"
        % runtime,
    ]
    task += _run_lines(spec, runtime, hidden, "", JOB_VARS + TASK_VARS + WORKER_VARS, gpus_variable)
    task += [
        'if [ "$status" -ne 0 ] && [ "$stopped" = 1 ]; then',
        '  echo "tfrepro: worker $SLURM_PROCID stopped (another worker failed, or the job was cancelled)" >&2',
        "  exit 0",
        "fi",
        '[ "$status" -eq 0 ] || echo "tfrepro: worker $SLURM_PROCID exited with status $status" >&2',
        'exit "$status"',
    ]
    srun = "srun --ntasks=%d --ntasks-per-node=%d --distribution=block --kill-on-bad-exit=1 --label" % (
        shape.workers,
        per_node,
    )
    return (
        [
            "# %d workers, %d per node: TF_CONFIG from SLURM_PROCID and the node list" % (shape.workers, per_node),
            'TFREPRO_WORKER_HOSTS=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | paste -sd " " -)',
            "export TFREPRO_WORKER_HOSTS",
            "task_script=$(cat <<'%s'" % TASK_END,
        ]
        + task
        + [
            TASK_END,
            ")",
            '%s bash -c "$task_script" &' % srun,
            "child=$! status=0",
            'wait "$child" || status=$?',
            'while kill -0 "$child" 2>/dev/null; do wait "$child" || status=$?; done',
            'exit "$status"',
        ]
    )


def _continued(head: str, options: List[str], tail: List[str]) -> List[str]:
    """One option per line, joined by backslashes: readable in a dry run, one command to bash."""
    groups: List[List[str]] = []
    for word in options:
        if word.startswith("-") or word == '"${gpu_devices[@]}"' or not groups:
            groups.append([word])
        else:
            groups[-1].append(word)
    parts = [head] + ["  " + " ".join(group) for group in groups] + ["  " + " ".join(tail)]
    return [part + " \\" for part in parts[:-1]] + [parts[-1]]


def _pyxis_lines(spec: LaunchSpec, hidden: Sequence[str]) -> List[str]:
    mounts = []
    for mount in spec.mounts:
        if "," in mount.source or ":" in mount.source:
            raise UsageError("mount source %r: pyxis cannot mount a path with ',' or ':'" % mount.source)
        mounts.append("%s:%s%s" % (mount.source, mount.target, ":ro" if mount.read_only else ""))
    lines = []
    if spec.shm_size:
        lines.append("# shm size %s: pyxis containers use the node's /dev/shm" % spec.shm_size)
    for name, value in spec.env.items():  # srun passes the job's environment into the container
        if not (is_secret(name) or name in hidden):
            lines.append("export %s=%s" % (name, shell_quote(value)))
    options = ["--container-image=" + enroot_image(spec.image), "--container-workdir=" + spec.cwd]
    if mounts:
        options.append("--container-mounts=" + ",".join(mounts))
    if spec.env:
        options.append("--container-env=" + ",".join(sorted(spec.env)))
    return lines + _continued(
        "exec srun", [shell_quote(word) for word in options], [shell_quote(word) for word in spec.command]
    )


def check_shape(options: SlurmOptions, shape: Optional[workers.Shape]) -> workers.Shape:
    """The workers' shape this job can take: tasks fit on the nodes; pyxis runs one container."""
    shape = workers.check_shape(shape)
    if not shape.multi:
        return shape
    if options.runtime == "pyxis":
        raise UsageError(
            "--workers %d: --runtime pyxis runs one container per job (use docker or podman)" % shape.workers
        )
    per_node = workers.slurm_tasks_per_node(shape, options.nodes)
    if options.nodes is not None and options.nodes * per_node < shape.workers:
        raise UsageError(
            "--workers %d do not fit on --nodes %d with %d tasks per node" % (shape.workers, options.nodes, per_node)
        )
    for arg in options.sbatch_args:
        if arg.split("=", 1)[0] in ("--ntasks", "-n", "--ntasks-per-node", "--gpus-per-task"):
            raise UsageError("--sbatch-arg %s: --workers sets that itself" % arg)
    return shape


def job_shape_directives(options: SlurmOptions, shape: workers.Shape) -> List[Tuple[str, Optional[str]]]:
    """--nodes, --ntasks, --ntasks-per-node and the GPUs per node of a multi-worker job; the
    launch's timeout, in minutes, as its --time when none is given."""
    per_node = workers.slurm_tasks_per_node(shape, options.nodes)
    nodes = options.nodes or -(-shape.workers // per_node)
    gres = options.gres
    if shape.gpus_per_task is not None and options.gres is None:
        gres = "gpu:%d" % (per_node * int(shape.gpus_per_task))
    time_limit = options.time
    if time_limit is None and shape.timeout_s is not None:  # a worker that never joins ends with the job
        time_limit = str(-(-int(shape.timeout_s) // 60) or 1)
    return [
        ("--time", time_limit),
        ("--nodes", str(nodes)),
        ("--ntasks", str(shape.workers)),
        ("--ntasks-per-node", str(per_node)),
        ("--gres", gres),
    ]


def batch_script(
    spec: LaunchSpec,
    options: SlurmOptions,
    output: str,
    hidden: Sequence[str] = (),
    title: str = "tfrepro",
    shape: Optional[workers.Shape] = None,
) -> str:
    """The whole batch script; `options` must have been through check_options(), `shape`
    through check_shape() (None: one worker)."""
    run_id = spec.labels.get("tfrepro.run_id") or ""
    name = "tfrepro-" + run_id[:12] if NAME_RE.match(run_id) else "tfrepro-new-run"  # a dry run has no run yet
    directives = [
        ("--job-name", name),
        ("--output", output),
        ("--partition", options.partition),
        ("--account", options.account),
        ("--time", options.time),
        ("--nodes", options.nodes and str(options.nodes)),
        ("--gres", options.gres),
        ("--mem", memory_mb(spec.memory)),
    ]
    if shape is not None and shape.multi:
        shaped = dict(job_shape_directives(options, shape))
        directives = [(key, shaped.pop(key, value)) for key, value in directives] + list(shaped.items())
    lines = ["#!/bin/bash"]
    lines += ["#SBATCH %s=%s" % (option, value) for option, value in directives if value]
    lines += ["#SBATCH " + arg for arg in options.sbatch_args]
    lines += [
        "# %s: image by digest, the recorded argv, values of secret variables from the" % title,
        "# submitting environment (sbatch exports it); submitted with: %s" % " ".join(SUBMIT),
        "set -euo pipefail",
    ]
    lines += container_lines(spec, options.runtime, options.nodes, hidden, shape)
    return "\n".join(lines) + "\n"
