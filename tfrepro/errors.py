"""Errors tfrepro raises on purpose. The CLI prints one line for each, and picks the exit
code from the class (tfrepro/cli/status.py).

    TfreproError                 base: str(error) is the one line shown to users
     +-- UsageError              bad option or argument
     +-- RecordError             run unknown, without a tfrepro record, or with a malformed one
     +-- Refused                 the replay was refused before anything ran (drift, trust, declined)
     +-- TrackingError           the tracking server cannot be reached or refuses
     +-- SourceError             commit missing, patch does not apply
     +-- EngineError             an engine (docker, podman, slurm, kubernetes) cannot launch
          +-- DockerError        daemon unreachable, image missing, pull refused
          +-- SchedulerError     slurmctld, the Kubernetes API or podman unreachable, or refusing
          +-- JobFailed          the container (or the job running it) exited non-zero

Anything else escaping to the CLI is a bug.
"""


class TfreproError(Exception):
    """Base class: str(error) is the one line the CLI shows."""


class UsageError(TfreproError):
    pass


class RecordError(TfreproError):
    pass


class Refused(TfreproError):
    pass


class TrackingError(TfreproError):
    pass


class SourceError(TfreproError):
    pass


class EngineError(TfreproError):
    pass


class DockerError(EngineError):
    pass


class SchedulerError(EngineError):
    pass


class JobFailed(EngineError):
    """The container or job exited non-zero; `exit_status` is its status."""

    def __init__(self, exit_status: int, message=None):
        super().__init__(message or "container exited with status %d" % exit_status)
        self.exit_status = exit_status


ContainerFailed = JobFailed  # the name before 0.6
