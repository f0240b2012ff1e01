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
TIME_RE = re.compile(r"^(?:[0-9]+-)?[0-9]+(?::[0-9]+){0,2}$|^(?:UNLIMITED|INFINITE)$")
GRES_RE = re.compile(r"^[A-Za-z0-9_\-]+(?::[A-Za-z0-9_.\-]+)*(?:,[A-Za-z0-9_\-]+(?::[A-Za-z0-9_.\-]+)*)*$")
SBATCH_ARG_RE = re.compile(r"^--?[A-Za-z][A-Za-z0-9\-]*(?:=\S+)?$")
SUBMIT = ("sbatch", "--parsable", "--wait")


@dataclass(frozen=True)
class SlurmOptions:
    partition: Optional[str] = None
    time: Optional[str] = None
    account: Optional[str] = None
    nodes: Optional[int] = None
    gres: Optional[str] = None  # derived from the spec's GPUs when not given
    runtime: str = "docker"
    sbatch_args: Tuple[str, ...] = ()  # anything else, one `--opt=value` each


def check_options(options: SlurmOptions, spec: LaunchSpec) -> SlurmOptions:
    """Validate every value that reaches the script; derive --gres and --mem from the spec."""
    for what, value in (("--partition", options.partition), ("--account", options.account)):
        if value is not None and not NAME_RE.match(value):
            raise UsageError("%s %r is not a Slurm name" % (what, value))
    if options.time is not None and not TIME_RE.match(options.time):
        raise UsageError("--time %r: use minutes, HH:MM:SS or D-HH:MM:SS" % options.time)
    if options.nodes is not None and options.nodes < 1:
        raise UsageError("--nodes must be at least 1")
    if options.runtime not in RUNTIMES:
        raise UsageError("--runtime must be one of %s, not %r" % (", ".join(RUNTIMES), options.runtime))
    for arg in options.sbatch_args:
        if not SBATCH_ARG_RE.match(arg):
            raise UsageError("--sbatch-arg %r: give one sbatch option as --name=value, without spaces" % arg)
        if arg.split("=", 1)[0] in ("--wait", "-W", "--parsable", "--output", "-o", "--export"):
            raise UsageError("--sbatch-arg %s: tfrepro sets that itself" % arg)
    gres = options.gres
    if gres is not None:
        if not GRES_RE.match(gres):
            raise UsageError("--gres %r: expected e.g. gpu:2 or gpu:a100:2" % gres)
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


def _gpu_words(runtime: str, gpus: Optional[str]) -> List[str]:
    """The container sees the GPUs Slurm allocated to the job (SLURM_JOB_GPUS), not the node's."""
    if gpus is None:
        return []
    if runtime == "docker":
        return ['--gpus="\\"device=${SLURM_JOB_GPUS:?no GPUs allocated}\\""']
    return ['"${gpu_devices[@]}"']  # podman: one CDI device per allocated GPU, built above


def container_lines(spec: LaunchSpec, runtime: str, nodes: Optional[int], hidden: Sequence[str]) -> List[str]:
    """The script's body: the command that runs the container. scancel's SIGTERM reaches the
    script, which stops the container (a training as the container's PID 1 ignores SIGTERM,
    and a container outlives a killed docker client)."""
    if runtime == "pyxis":
        return _pyxis_lines(spec, hidden)
    argv = docker_argv(replace(spec, gpus=None), hidden)
    argv[0] = runtime
    image_at = len(argv) - len(spec.command) - 1
    job_env = [word for name in JOB_VARS for word in ("-e", name)]
    options = (
        ['--name "$container"']
        + _gpu_words(runtime, spec.gpus)
        + [shell_quote(word) for word in argv[3:image_at] + job_env]
    )
    lines = [
        'container="tfrepro-${SLURM_JOB_ID}"',
        "trap '%s stop --time 10 \"$container\" >/dev/null' TERM  # scancel stops the container too" % runtime,
    ]
    if runtime == "podman" and spec.gpus is not None:
        lines.append(
            'gpu_devices=(); for gpu in ${SLURM_JOB_GPUS//,/ }; do gpu_devices+=(--device "nvidia.com/gpu=$gpu"); done'
        )
    prefix = "srun --ntasks-per-node=1 " if (nodes or 1) > 1 else ""
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


def batch_script(
    spec: LaunchSpec, options: SlurmOptions, output: str, hidden: Sequence[str] = (), title: str = "tfrepro"
) -> str:
    """The whole batch script; `options` must have been through check_options()."""
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
    lines = ["#!/bin/bash"]
    lines += ["#SBATCH %s=%s" % (option, value) for option, value in directives if value]
    lines += ["#SBATCH " + arg for arg in options.sbatch_args]
    lines += [
        "# %s: image by digest, the recorded argv, values of secret variables from the" % title,
        "# submitting environment (sbatch exports it); submitted with: %s" % " ".join(SUBMIT),
        "set -euo pipefail",
    ]
    lines += container_lines(spec, options.runtime, options.nodes, hidden)
    return "\n".join(lines) + "\n"
