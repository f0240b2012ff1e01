"""Compare an original run with one replay: metric histories and the model hash. Pure.

    identical          every value of every compared metric is bit-for-bit equal, same hash
    within tolerance   every |a - b| <= tolerance * max(1, |a|) (a = original)
    diverged           anything else; `detail` names the first metric and step that differ
    failed             the replay did not finish (its container exited non-zero)

N >= 2 replays are judged against run-to-run noise by replay/noise.py.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

from tfrepro.schema import MODEL_HASH

IDENTICAL = "identical"
WITHIN_TOLERANCE = "within tolerance"
DIVERGED = "diverged"
FAILED = "failed"

DEFAULT_TOLERANCE = 1e-6
# Wall-clock and host metrics differ on every run; they say nothing about the result.
IGNORED_METRICS = ("system/*", "*time*", "*seconds*", "*duration*", "*throughput*", "*per_sec*")

History = Dict[str, List[Tuple[int, float]]]


@dataclass(frozen=True)
class MetricComparison:
    """One metric of the original against the replay: final values, and its worst step."""

    metric: str
    original: Optional[float]  # final value; None when the run did not log it
    replay: Optional[float]
    steps: int  # values compared (at steps both logged)
    max_difference: float  # the largest |original - replay| over those steps
    status: str  # IDENTICAL, WITHIN_TOLERANCE or DIVERGED

    def to_dict(self) -> Dict[str, Any]:
        return {
            "metric": self.metric,
            "original": finite(self.original),
            "replay": finite(self.replay),
            "steps": self.steps,
            "max_difference": finite(self.max_difference),
            "status": self.status,
        }


def finite(value: Optional[float]) -> Any:
    """JSON has no NaN or infinity: those become their names."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


@dataclass(frozen=True)
class Judged:
    """What a verdict says: `ok` when it is one of PASSING, and its one line."""

    PASSING: ClassVar[Tuple[str, ...]] = ()  # set by each subclass
    verdict: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict in self.PASSING

    def line(self) -> str:
        return self.verdict + (": " + self.detail if self.detail else "")


@dataclass(frozen=True)
class Verdict(Judged):
    PASSING = (IDENTICAL, WITHIN_TOLERANCE)
    compared: int = 0  # values compared
    max_difference: float = 0.0
    why: Tuple[Any, ...] = ()  # inspect/explain.py Factors: what can explain a verdict short of identical
    metrics: Tuple[MetricComparison, ...] = ()  # one row per compared metric


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _close(a: float, b: float, tolerance: float) -> bool:
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return same(a, b)
    return abs(a - b) <= tolerance * max(1.0, abs(a))


def ignored(key: str, patterns: Sequence[str] = IGNORED_METRICS) -> bool:
    return any(fnmatch.fnmatchcase(key.lower(), p) for p in patterns)


def _metric_row(key: str, a_points: List[Tuple[int, float]], b_points: List[Tuple[int, float]], tolerance: float):
    """One metric's row: its final values and its worst step (the verdict names only the first
    metric that differs)."""
    b_by_step = dict(b_points)
    pairs = [(a, b_by_step[step]) for step, a in a_points if step in b_by_step]
    worst = max([abs(a - b) for a, b in pairs if not same(a, b)] or [0.0])
    if len(pairs) != len(a_points) or len(pairs) != len(b_points):
        status = DIVERGED
    elif all(same(a, b) for a, b in pairs):
        status = IDENTICAL
    elif all(_close(a, b, tolerance) for a, b in pairs):
        status = WITHIN_TOLERANCE
    else:
        status = DIVERGED
    return MetricComparison(
        metric=key,
        original=a_points[-1][1] if a_points else None,
        replay=b_points[-1][1] if b_points else None,
        steps=len(pairs),
        max_difference=worst,
        status=status,
    )


def compare(
    original: History,
    replay: History,
    original_hash: Optional[str] = None,
    replay_hash: Optional[str] = None,
    tolerance: float = DEFAULT_TOLERANCE,
    ignore: Sequence[str] = IGNORED_METRICS,
) -> Verdict:
    """The verdict, with one row per compared metric (`metrics`)."""
    keys = sorted(k for k in set(original) | set(replay) if not ignored(k, ignore))
    rows = tuple(_metric_row(key, original.get(key, []), replay.get(key, []), tolerance) for key in keys)
    return replace(_judge(original, replay, keys, original_hash, replay_hash, tolerance), metrics=rows)


def _judge(
    original: History,
    replay: History,
    keys: Sequence[str],
    original_hash: Optional[str],
    replay_hash: Optional[str],
    tolerance: float,
) -> Verdict:
    exact = True
    compared = 0
    worst = 0.0
    for key in keys:
        if key not in replay:
            return Verdict(DIVERGED, "metric %s is missing from the replay" % key, compared, worst)
        if key not in original:
            return Verdict(DIVERGED, "metric %s was not logged by the original" % key, compared, worst)
        a_points, b_points = original[key], replay[key]
        for i in range(max(len(a_points), len(b_points))):
            if i >= len(b_points):
                return Verdict(DIVERGED, "%s step %d: missing from the replay" % (key, a_points[i][0]), compared, worst)
            if i >= len(a_points):
                return Verdict(DIVERGED, "%s step %d: not in the original" % (key, b_points[i][0]), compared, worst)
            (step_a, a), (step_b, b) = a_points[i], b_points[i]
            if step_a != step_b:
                return Verdict(
                    DIVERGED,
                    "%s: value %d is step %d in the original, step %d in the replay" % (key, i, step_a, step_b),
                    compared,
                    worst,
                )
            compared += 1
            if same(a, b):
                continue
            exact = False
            if not _close(a, b, tolerance):
                return Verdict(
                    DIVERGED, "%s step %d: %r (original) != %r (replay)" % (key, step_a, a, b), compared, abs(a - b)
                )
            worst = max(worst, abs(a - b))
    hash_note = ""
    if original_hash != replay_hash:
        if not original_hash or not replay_hash or tolerance <= 0:
            return Verdict(
                DIVERGED,
                "%s: %s (original) != %s (replay)" % (MODEL_HASH, original_hash or "none", replay_hash or "none"),
                compared,
                worst,
            )
        hash_note = "; the model hash differs"
    if not compared and not original_hash:
        return Verdict(DIVERGED, "nothing to compare: the original logged no metrics and no model hash")
    if exact and not hash_note:
        what = "%d metric values" % compared + (" and the model hash" if original_hash else "")
        return Verdict(IDENTICAL, what + " match bit for bit", compared)
    return Verdict(
        WITHIN_TOLERANCE, "max difference %.3g <= tolerance %g%s" % (worst, tolerance, hash_note), compared, worst
    )
