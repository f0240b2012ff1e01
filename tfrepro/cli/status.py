"""Exit codes of every `tfrepro` command, one table (like pip's cli/status_codes.py).

A CI job gating on `tfrepro replay` tells "did not reproduce" (1) from "broke" (3-7).

    0   OK           done; for replay: reproduced (identical or within noise)
    1   DIVERGED     replay ran and did not reproduce; diff found differences; doctor found a problem
    2   USAGE        bad option or argument
    3   REFUSED      refused before anything ran: drift, untrusted image or record, declined prompt,
                     an unknown or malformed run record, a commit or patch that cannot be restored
    4   JOB_FAILED   the container or the job exited non-zero (its status is in the message)
    5   TRACKING     the tracking server cannot be reached or refuses
    6   ENGINE       the engine cannot launch: daemon, registry, scheduler or API unreachable
    130 INTERRUPTED  Ctrl-C or SIGTERM
"""

from __future__ import annotations

from tfrepro import errors

OK = 0
DIVERGED = 1
USAGE = 2
REFUSED = 3
JOB_FAILED = 4
TRACKING = 5
ENGINE = 6
INTERRUPTED = 130

_BY_ERROR = (  # most specific first
    (errors.JobFailed, JOB_FAILED),
    (errors.EngineError, ENGINE),
    (errors.TrackingError, TRACKING),
    (errors.UsageError, USAGE),
    (errors.Refused, REFUSED),
    (errors.RecordError, REFUSED),
    (errors.SourceError, REFUSED),
)


def for_error(error: errors.TfreproError) -> int:
    for kind, code in _BY_ERROR:
        if isinstance(error, kind):
            return code
    return USAGE
