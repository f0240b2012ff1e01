"""The engines behind `--on NAME` (docker, podman, slurm, kubernetes), one small class each,
all shaped by the Engine protocol below. `tfrepro run` and `tfrepro replay` call only get(),
CLUSTERS and the protocol's methods.

    launch/job.py              the Job an engine is given, and the helpers the engines share
    launch/host_engines.py     Docker, Podman: the job runs on this host
    launch/cluster_engines.py  Slurm, Kubernetes: the job runs on a node the cluster picks

The engines share behaviour through functions, not a base class.
"""

from __future__ import annotations

from typing import Callable, Dict, Protocol

from tfrepro.errors import UsageError
from tfrepro.launch import docker, settings, workers
from tfrepro.launch.cluster_engines import Kubernetes, Slurm
from tfrepro.launch.host_engines import Docker, Podman
from tfrepro.launch.job import Job, OnJobFacts, WriteOutput

CLUSTERS = ("slurm", "kubernetes")  # the job runs on a node: this host's GPUs say nothing about it


class Engine(Protocol):
    """What every engine does, in the order a launch calls it:

        engine = get(name, options)   all its state is set here (a client opens on first use)
        engine.check(job)             refuse what this engine cannot run, before any run exists
        engine.preview(job)           the exact text that would be submitted (--dry-run prints it)
        engine.announce(job)          the line(s) shown when it is submitted
        engine.resolve(ref)           REF -> docker.Resolved(digest, image id)   (`tfrepro run`)
        engine.prepare(image)         make the image present where that is the launcher's job
        engine.image_env(image)       the image's ENV (the hook keeps its PYTHONPATH)
        engine.run(job, on_facts, write) -> exit status; Ctrl-C/SIGTERM cancels
        engine.settings(shape)        what launch.json records, so a replay submits the same way

    `job` is a launch/job.py Job: the LaunchSpec (every engine translates it, none re-derives
    it), the hidden variable names, what a pod clones and the workers' shape. run() streams the
    job's output to write(), reports the job's facts to on_facts() and returns the exit status
    (a non-zero status is returned, not raised); it raises EngineError when the engine cannot
    launch, KeyboardInterrupt once the job is cancelled.

    With N workers (job.shape), run() returns the status of the first worker that failed (the
    others are stopped) and settings() adds the shape and its wiring under "shape".
    """

    name: str

    def check(self, job: Job) -> None: ...

    def preview(self, job: Job) -> str: ...

    def announce(self, job: Job) -> str: ...

    def resolve(self, ref: str) -> docker.Resolved: ...

    def prepare(self, image: str) -> None: ...

    def image_env(self, image: str) -> Dict[str, str]: ...

    def run(self, job: Job, on_facts: OnJobFacts, write: WriteOutput) -> int: ...

    def settings(self, shape: workers.Shape = workers.ONE) -> Dict[str, object]: ...


ENGINES: Dict[str, Callable[[settings.Options], Engine]] = {
    "docker": Docker,
    "podman": Podman,
    "slurm": Slurm,
    "kubernetes": Kubernetes,
}


def get(name: str, options: settings.Options) -> Engine:
    if name not in ENGINES:
        raise UsageError("--on must be one of %s, not %r" % (", ".join(settings.NAMES), name))
    return ENGINES[name](options)
