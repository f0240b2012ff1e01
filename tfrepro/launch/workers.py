"""More than one worker: the shape of a multi-worker launch and the cluster wiring TensorFlow
reads, `TF_CONFIG`, for each worker.

Pure: no engine, no I/O. Every engine gives worker i of N the same TF_CONFIG,

    {"cluster": {"worker": ["host0:port0", "host1:port1"]}, "task": {"type": "worker", "index": i}}

and worker 0 is the chief of MultiWorkerMirroredStrategy (it has no "chief" task type). What
differs is where i and the addresses come from, recorded as the `wiring` (settings()):

    docker, podman   one host, N containers on its network: localhost, base_port + i
    slurm            the batch script expands the node list (scontrol show hostnames); each
                     srun task computes its own TF_CONFIG from SLURM_PROCID (slurm_tf_config)
    kubernetes       an Indexed Job and a headless Service: pod i is <job>-<i>.<service>,
                     i from its completion index (kubernetes.py)

Every worker also gets TFREPRO_WORKER_INDEX and TFREPRO_WORKERS. Output: docker, podman and
kubernetes prefix each line with its worker (`[worker 1] ...`, local_workers.py); Slurm with its
task number (`1: ...`, srun --label). Lines of different workers interleave as they come.
A worker that fails stops the others; its status is the job's and a line names it
("worker 1 exited with status 3").

One worker (the default Shape) is today's launch: no TF_CONFIG, nothing added.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence

from tfrepro import schema
from tfrepro.errors import UsageError
from tfrepro.launch.spec import LaunchSpec, parse_gpus

DEFAULT_BASE_PORT = 23456  # worker i listens on base_port + i (one host) or base_port (one pod each)
TF_CONFIG = schema.ENV_TF_CONFIG
WORKER_INDEX = schema.ENV_WORKER_INDEX  # what the worker's own index is, for the callback and the record
WORKER_COUNT = schema.ENV_WORKERS
WORKER_LABEL = "tfrepro.worker"  # the container label carrying the worker's index

WIRING_LOCAL = "TF_CONFIG per container"
WIRING_SLURM = "TF_CONFIG from SLURM_PROCID"
WIRING_KUBERNETES = "TF_CONFIG from JOB_COMPLETION_INDEX"


@dataclass(frozen=True)
class Shape:
    """How many workers, and how they sit on the nodes.

    tasks_per_node: Slurm only (default: all on as few nodes as --nodes allows).
    gpus_per_task: GPUs each worker sees (a count); None: the spec's --gpus, for every worker.
    timeout_s: the whole launch's bound; a worker that never joins its peers makes
    MultiWorkerMirroredStrategy wait for ever, so a launch of N workers may be given one.
    """

    workers: int = 1
    tasks_per_node: Optional[int] = None
    gpus_per_task: Optional[str] = None
    base_port: int = DEFAULT_BASE_PORT
    timeout_s: Optional[float] = None

    @property
    def multi(self) -> bool:
        return self.workers > 1


ONE = Shape()


def check_shape(shape: Optional[Shape]) -> Shape:
    """Validate every value that reaches a script or manifest; None is one worker."""
    shape = shape or ONE
    if not isinstance(shape.workers, int) or shape.workers < 1:
        raise UsageError("--workers must be at least 1, not %r" % (shape.workers,))
    if shape.tasks_per_node is not None and not (1 <= shape.tasks_per_node <= shape.workers):
        raise UsageError("--tasks-per-node must be between 1 and --workers (%d)" % shape.workers)
    if not (1024 <= shape.base_port <= 65535 - shape.workers):
        raise UsageError("--worker-port %r: the workers' ports must lie in 1024-65535" % (shape.base_port,))
    if shape.timeout_s is not None and shape.timeout_s <= 0:
        raise UsageError("--timeout must be positive")
    gpus = parse_gpus(shape.gpus_per_task) if shape.gpus_per_task is not None else None
    if gpus == "all":
        raise UsageError("--gpus-per-task must be a count: workers share no GPU")
    return replace(shape, gpus_per_task=gpus)


def tf_config(addresses: Sequence[str], index: int) -> str:
    """TF_CONFIG of worker `index` among `addresses` (host:port, in worker order)."""
    if not 0 <= index < len(addresses):
        raise ValueError("worker %d of %d" % (index, len(addresses)))
    return json.dumps({"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}})


def local_addresses(shape: Shape, host: str = "localhost") -> List[str]:
    """N workers on one host's network: distinct ports, base_port + i."""
    return ["%s:%d" % (host, shape.base_port + index) for index in range(shape.workers)]


def worker_devices(shape: Shape, index: int) -> Optional[List[str]]:
    """The GPUs worker `index` gets on a host of its own (docker, podman): its slice of the
    host's GPUs, gpus_per_task each; None when every worker gets the spec's --gpus."""
    if shape.gpus_per_task is None:
        return None
    count = int(shape.gpus_per_task)
    return [str(device) for device in range(index * count, (index + 1) * count)]


def worker_env(shape: Shape, tf_config_value: str, index: int) -> Dict[str, str]:
    return {TF_CONFIG: tf_config_value, WORKER_INDEX: str(index), WORKER_COUNT: str(shape.workers)}


def local_worker_spec(spec: LaunchSpec, shape: Shape, index: int) -> LaunchSpec:
    """Worker `index` of a one-host launch: the spec plus its TF_CONFIG and its label."""
    env = dict(spec.env)
    env.update(worker_env(shape, tf_config(local_addresses(shape), index), index))
    labels = dict(spec.labels)
    labels[WORKER_LABEL] = str(index)
    gpus = spec.gpus if shape.gpus_per_task is None else None  # else the engine gives worker_devices()
    return replace(spec, env=env, labels=labels, gpus=gpus, network="host")


def check_local(spec: LaunchSpec, shape: Shape) -> None:
    """N containers on one host reach each other on the host's network, on distinct ports."""
    if shape.multi and spec.network != "host":
        raise UsageError("--workers %d on one host needs the host network, not %r" % (shape.workers, spec.network))
    if shape.tasks_per_node is not None and shape.tasks_per_node != shape.workers:
        raise UsageError("--tasks-per-node: docker and podman run every worker on this host")


def slurm_tasks_per_node(shape: Shape, nodes: Optional[int]) -> int:
    """Tasks on each node: as given, else the fewest per node that fit on the job's nodes."""
    if shape.tasks_per_node is not None:
        return shape.tasks_per_node
    return -(-shape.workers // (nodes or 1))


def slurm_tf_config(shape: Shape, tasks_per_node: int) -> List[str]:
    """Bash lines, run by each srun task, that export its TF_CONFIG.

    Task i runs on node i // tasks_per_node (srun --distribution=block) and listens on
    base_port + i: ports stay distinct when tasks share a node. The node names come from
    $TFREPRO_WORKER_HOSTS, which the batch script filled from `scontrol show hostnames`.
    """
    config = (
        '{"cluster": {"worker": [%s]}, "task": {"type": "worker", "index": %s}}' % ("$workers", "$SLURM_PROCID")
    ).replace('"', '\\"')
    return [
        'read -r -a hosts <<< "$TFREPRO_WORKER_HOSTS"',
        "workers=''",
        "for ((task = 0; task < %d; task++)); do" % shape.workers,
        '  workers+="${workers:+, }\\"${hosts[task / %d]}:$((%d + task))\\""' % (tasks_per_node, shape.base_port),
        "done",
        'export %s="%s"' % (TF_CONFIG, config),
        'export %s="$SLURM_PROCID" %s=%d' % (WORKER_INDEX, WORKER_COUNT, shape.workers),
    ]


def kubernetes_addresses(shape: Shape, job: str, service: str) -> List[str]:
    """Pod i of an Indexed Job with subdomain `service` is reached at <job>-<i>.<service>."""
    return ["%s-%d.%s:%d" % (job, index, service, shape.base_port) for index in range(shape.workers)]


def settings(shape: Shape, wiring: str) -> Dict[str, object]:
    """What launch.json records under the engine's settings, so a replay launches the same shape."""
    values: Dict[str, object] = {"workers": shape.workers, "base_port": shape.base_port, "wiring": wiring}
    if shape.tasks_per_node is not None:
        values["tasks_per_node"] = shape.tasks_per_node
    if shape.gpus_per_task is not None:
        values["gpus_per_task"] = shape.gpus_per_task
    if shape.timeout_s is not None:
        values["timeout_s"] = shape.timeout_s
    return values


def recorded(engine_settings: Optional[Dict[str, object]]) -> Shape:
    """The Shape a launch.json's engine settings recorded (settings() above); one worker when none."""
    values = (engine_settings or {}).get("shape") or {}
    if not isinstance(values, dict):
        return ONE
    timeout = values.get("timeout_s")
    return Shape(
        workers=int(values.get("workers", 1)),  # type: ignore[arg-type]
        tasks_per_node=values.get("tasks_per_node"),  # type: ignore[arg-type]
        gpus_per_task=values.get("gpus_per_task"),  # type: ignore[arg-type]
        base_port=int(values.get("base_port", DEFAULT_BASE_PORT)),  # type: ignore[arg-type]
        timeout_s=float(timeout) if timeout is not None else None,  # type: ignore[arg-type]
    )


def merged(given: Dict[str, object], base: Optional[Shape] = None) -> Shape:
    """The Shape the command line's options give (None: not given) over `base` (a replay's
    recorded shape, else one worker), checked: UsageError, one line. A new --workers drops the
    recorded --tasks-per-node (it was for the recorded count) unless given again."""
    base = base or ONE
    values = {
        "workers": base.workers,
        "tasks_per_node": base.tasks_per_node,
        "gpus_per_task": base.gpus_per_task,
        "base_port": base.base_port,
        "timeout_s": base.timeout_s,
    }
    if given.get("workers") is not None and given.get("workers") != base.workers:
        values["tasks_per_node"] = None
    for name, value in given.items():
        if value is not None:
            values["base_port" if name == "worker_port" else name] = value
    return check_shape(Shape(**values))  # type: ignore[arg-type]


_FAILED_WORKER = re.compile(rb"tfrepro: worker (\d+) exited with status (\d+)")


def failure_watcher(write: Callable[[bytes], None], on_facts: Callable[[Dict[str, object]], None]):
    """`write`, passing the job's output on, that reports the first worker the output says
    failed ("tfrepro: worker 1 exited with status 3", the Slurm batch script's line) as the
    facts failed_worker and failed_worker_status."""
    state = {"pending": b"", "seen": False}

    def watching_write(chunk: bytes) -> None:
        write(chunk)
        if state["seen"]:
            return
        text = state["pending"] + chunk
        found = _FAILED_WORKER.search(text)
        if found:
            state["seen"] = True
            on_facts({"failed_worker": found.group(1).decode(), "failed_worker_status": found.group(2).decode()})
        state["pending"] = text[-200:]

    return watching_write
