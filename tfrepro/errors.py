"""Errors tfrepro raises on purpose. The CLI prints one line for each.

    TfreproError                 base: str(error) is the one line shown to users
     +-- UsageError              bad option or argument
     +-- RecordError             run unknown, without a tfrepro record, or with a malformed one
     +-- TrackingError           the tracking server cannot be reached or refuses
     +-- SourceError             commit missing, patch does not apply
     +-- DockerError             daemon unreachable, image missing, pull refused
     |    +-- ContainerFailed    the container (or the job running it) exited non-zero
     +-- SchedulerError          slurmctld, the Kubernetes API or podman unreachable, or refusing

Anything else escaping to the CLI is a bug.
"""


class TfreproError(Exception):
    """Base class. `exit_code` is what the CLI returns for it."""

    exit_code = 2


class UsageError(TfreproError):
    pass


class RecordError(TfreproError):
    pass


class TrackingError(TfreproError):
    pass


class SourceError(TfreproError):
    pass


class DockerError(TfreproError):
    pass


class SchedulerError(TfreproError):
    pass


class ContainerFailed(DockerError):
    def __init__(self, exit_status, message=None):
        super().__init__(message or "container exited with status %d" % exit_status)
        self.exit_status = exit_status
        self.exit_code = exit_status or 1
