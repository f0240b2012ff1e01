"""`tfrepro replay --json`: the one JSON object a CI job gates on (verdict_json, error_json),
and writing the job's output to stderr while stdout is kept for it."""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, Mapping, Optional

import click

from tfrepro.cli import status
from tfrepro.errors import JobFailed, TfreproError
from tfrepro.inspect import explain
from tfrepro.replay import verify


def verdict_json(original: str, replay_ids, summary: Optional[str], verdict, exit_code: int) -> Dict[str, Any]:
    """--json: what a CI job gates on. `metrics` holds one row per compared metric: final values
    and the worst step (one replay), or the spread of the replays (--repeat)."""
    spreads = getattr(verdict, "spreads", ())
    rows = spreads or getattr(verdict, "metrics", ())
    metrics = [row.to_dict() for row in rows]
    return {
        "original_run": original,
        "replay_runs": list(replay_ids),
        "summary_run": summary,
        "verdict": verdict.verdict,
        "detail": verdict.detail,
        "reproduced": verdict.ok,
        "metrics": metrics,
        "causes": [dict(cause) for cause in explain.as_dicts(verdict.why)],
        "exit_code": exit_code,
    }


def error_json(original: str, error: BaseException) -> Dict[str, Any]:
    """--json when the replay was refused or failed: the error's line and its exit code."""
    if isinstance(error, TfreproError):
        exit_code, message = status.for_error(error), str(error)
    elif isinstance(error, KeyboardInterrupt) or isinstance(error.__cause__, KeyboardInterrupt):
        exit_code, message = status.INTERRUPTED, "interrupted"
    else:  # a declined prompt
        exit_code, message = status.REFUSED, "aborted"
    verdict = verify.FAILED if isinstance(error, JobFailed) else None
    return {"original_run": original, "verdict": verdict, "reproduced": False, "error": message, "exit_code": exit_code}


def dumps(data: Mapping[str, Any]) -> str:
    """One JSON object. Its NaN and infinity (a diverged metric can be either) were written as
    strings by the metric rows' to_dict(): allow_nan=False makes sure none is left."""
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False)


def to_stderr(text: str = "") -> None:
    click.echo(text, err=True)


def stderr_writer():
    """write(bytes) to our stderr: the job's output when stdout is kept for --json."""
    stream = click.get_binary_stream("stderr")

    def write(chunk: bytes) -> None:
        try:
            sys.stderr.flush()
            stream.write(chunk)
            stream.flush()
        except (AttributeError, ValueError):  # a captured text stream
            sys.stderr.write(chunk.decode("utf-8", "replace"))

    return write
