"""The command-line tools the podman and Slurm engines drive (podman, sbatch, scontrol, scancel),
run one way: a tool that is missing or does not answer in time is one SchedulerError that says so.
"""

from __future__ import annotations

import subprocess
from typing import Mapping, Optional, Sequence

from tfrepro.errors import SchedulerError


def run(
    argv: Sequence[str], timeout: float, missing: str, env: Optional[Mapping[str, str]] = None
) -> subprocess.CompletedProcess:
    """Run to the end, output captured as text. `missing` is the error when argv[0] is not installed."""
    try:
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, env=dict(env) if env is not None else None
        )
    except FileNotFoundError:
        raise SchedulerError(missing) from None
    except subprocess.TimeoutExpired:
        raise SchedulerError("%s did not answer within %d s" % (" ".join(argv), timeout)) from None


def start(argv: Sequence[str], missing: str, env: Optional[Mapping[str, str]] = None, **popen) -> subprocess.Popen:
    """Start in a session of its own: a Ctrl-C on the terminal reaches us, not the tool, and we
    decide how the container or job is stopped."""
    try:
        return subprocess.Popen(list(argv), env=dict(env) if env is not None else None, start_new_session=True, **popen)
    except FileNotFoundError:
        raise SchedulerError(missing) from None


def first_line(text: Optional[str]) -> str:
    """The first non-blank line of a tool's output, for a one-line error."""
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "no output")[:300]
