"""What an engine is asked to check, show and run (one Job value), the two callables its run()
reports through, and the helpers the engines share.

    Job(spec, hidden, source, shape)   passed whole to check, preview, announce and run
    OnJobFacts                         gets the job's facts (id, nodes...) as the engine learns them
    WriteOutput                        gets the job's output, as it comes
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Tuple, TypeVar

from tfrepro.errors import UsageError
from tfrepro.launch import workers
from tfrepro.launch.kubernetes import Source
from tfrepro.launch.spec import CLAIM_PREFIX, LaunchSpec
from tfrepro.redact import is_secret

OnJobFacts = Callable[[Mapping[str, object]], None]
WriteOutput = Callable[[bytes], None]
T = TypeVar("T")


def no_facts(facts: Mapping[str, object]) -> None:
    """The facts callable of a caller that records none."""


@dataclass(frozen=True)
class Job:
    """One launch, as every engine method takes it.

    `spec` is the LaunchSpec: every engine translates it, none re-derives it. `hidden` names
    the variables whose values stay out of what is shown or written (the engine passes them by
    name). `source` (kubernetes.Source: remote, commit, patch) is what a pod clones; the other
    engines mount the checkout. `shape` (workers.Shape) asks for N workers of the same image,
    each with its TF_CONFIG; one worker is the plain launch."""

    spec: LaunchSpec
    hidden: Tuple[str, ...] = ()
    source: Optional[Source] = None
    shape: workers.Shape = workers.ONE

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))  # a list given is kept as given, frozen
        object.__setattr__(self, "shape", self.shape or workers.ONE)


def refuse_claims(spec: LaunchSpec) -> None:
    """A PersistentVolumeClaim exists only on Kubernetes: every other engine refuses one."""
    claims = [mount.source for mount in spec.mounts if mount.source.startswith(CLAIM_PREFIX)]
    if claims:
        raise UsageError("%s: a PersistentVolumeClaim mount needs --on kubernetes" % claims[0])


def caller_env(job: Job, environ: Mapping[str, str]) -> Dict[str, str]:
    """The environment of a process that starts the container from a command line (podman,
    sbatch): ours, plus the values that line names (`-e NAME`) but does not contain."""
    env = dict(environ)
    env.update({name: value for name, value in job.spec.env.items() if is_secret(name) or name in job.hidden})
    return env


def with_shape(values: Dict[str, object], shape: Optional[workers.Shape], wiring: str) -> Dict[str, object]:
    """settings() of a multi-worker launch also record its shape and wiring; one worker: as before."""
    if shape is None or not shape.multi:
        return values
    return dict(values, shape=workers.settings(shape, wiring))


def once(connect: Callable[[], T]) -> Callable[[], T]:
    """connect() on the first call, not before (a dry run reaches no daemon, no API server),
    then the same client on every call."""
    return functools.lru_cache(maxsize=None)(connect)
