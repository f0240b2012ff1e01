"""Compare an original run with its replay(s): metric histories and the model hash. Pure.

One replay (`compare`):
    identical          every value of every compared metric is bit-for-bit equal, same hash
    within tolerance   every |a - b| <= tolerance * max(1, |a|) (a = original)
    diverged           anything else; `detail` names the first metric and step that differ
    failed             the replay did not finish (its container exited non-zero)

N >= 2 replays (`judge_repeats`), against run-to-run noise:
    identical          every replay is identical to the original (as above)
    within noise       every final metric of the original lies in its prediction interval from
                       the n replays: mean +- t(p, n-1) * sd * sqrt(1 + 1/n), mean and sd (the
                       sample standard deviation) over the replays' final values, widened to
                       their observed range and to at least +- tolerance * max(1, |mean|) (so n
                       identical replays still allow rounding)
    diverged           a final metric outside it: names the metric, the value, the interval and
                       z = (original - mean) / sd
A prediction interval (not a confidence interval for the mean) is the right width: it bounds
where one more run, the original, falls if it comes from the same distribution as the replays.
The level is familywise: with k metrics judged, p = 1 - (1 - CONFIDENCE) / (2k) (Bonferroni,
two-sided), so when nothing but noise differs, a false `diverged` comes about once in 100.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

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
            "original": _finite(self.original),
            "replay": _finite(self.replay),
            "steps": self.steps,
            "max_difference": _finite(self.max_difference),
            "status": self.status,
        }


def _finite(value: Optional[float]) -> Any:
    """JSON has no NaN or infinity: those become their names."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


class _Judged:
    """What a verdict says: `ok` when it is one of PASSING, and its one line."""

    PASSING: Tuple[str, ...] = ()  # set by each subclass; not a dataclass field

    @property
    def ok(self) -> bool:
        return self.verdict in self.PASSING

    def line(self) -> str:
        return self.verdict + (": " + self.detail if self.detail else "")


@dataclass(frozen=True)
class Verdict(_Judged):
    PASSING = (IDENTICAL, WITHIN_TOLERANCE)
    verdict: str
    detail: str = ""
    compared: int = 0  # values compared
    max_difference: float = 0.0
    why: Tuple[Any, ...] = ()  # inspect/explain.py Factors: what can explain a verdict short of identical
    metrics: Tuple[MetricComparison, ...] = ()  # compare_metrics(): one row per compared metric


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _close(a: float, b: float, tolerance: float) -> bool:
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return _same(a, b)
    return abs(a - b) <= tolerance * max(1.0, abs(a))


def ignored(key: str, patterns: Sequence[str] = IGNORED_METRICS) -> bool:
    return any(fnmatch.fnmatchcase(key.lower(), p) for p in patterns)


def compare_metrics(
    original: History,
    replay: History,
    tolerance: float = DEFAULT_TOLERANCE,
    ignore: Sequence[str] = IGNORED_METRICS,
) -> Tuple[MetricComparison, ...]:
    """Every compared metric, one row each (the verdict names only the first that differs)."""
    rows = []
    for key in sorted(k for k in set(original) | set(replay) if not ignored(k, ignore)):
        a_points, b_points = original.get(key, []), replay.get(key, [])
        b_by_step = dict(b_points)
        pairs = [(a, b_by_step[step]) for step, a in a_points if step in b_by_step]
        worst = max([abs(a - b) for a, b in pairs if not _same(a, b)] or [0.0])
        if len(pairs) != len(a_points) or len(pairs) != len(b_points):
            status = DIVERGED
        elif all(_same(a, b) for a, b in pairs):
            status = IDENTICAL
        elif all(_close(a, b, tolerance) for a, b in pairs):
            status = WITHIN_TOLERANCE
        else:
            status = DIVERGED
        rows.append(
            MetricComparison(
                metric=key,
                original=a_points[-1][1] if a_points else None,
                replay=b_points[-1][1] if b_points else None,
                steps=len(pairs),
                max_difference=worst,
                status=status,
            )
        )
    return tuple(rows)


def compare(
    original: History,
    replay: History,
    original_hash: Optional[str] = None,
    replay_hash: Optional[str] = None,
    tolerance: float = DEFAULT_TOLERANCE,
    ignore: Sequence[str] = IGNORED_METRICS,
) -> Verdict:
    keys = sorted(k for k in set(original) | set(replay) if not ignored(k, ignore))
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
            if _same(a, b):
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


WITHIN_NOISE = "within noise"
CONFIDENCE = 0.99  # familywise, over all judged metrics


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student t distribution function, without scipy."""
    tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with t_cdf(t, df) == p (0.5 < p < 1), by bisection: t_quantile(0.975, 4) = 2.776."""
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


@dataclass(frozen=True)
class Spread:
    """One final metric: the original's value against the replays' distribution."""

    metric: str
    original: float
    values: Tuple[float, ...]  # the replays' final values
    mean: float
    sd: float
    low: float
    high: float

    @property
    def within(self) -> bool:
        finite = [v for v in (self.original,) + self.values if math.isfinite(v)]
        if len(finite) != len(self.values) + 1:  # NaN/inf: only "all the same" passes
            return all(_same(self.original, v) for v in self.values)
        return self.low <= self.original <= self.high

    @property
    def z(self) -> float:
        if self.sd > 0:
            return (self.original - self.mean) / self.sd
        return 0.0 if self.original == self.mean else math.copysign(math.inf, self.original - self.mean)

    def line(self) -> str:
        return "%s: %.6g (original) %s [%.6g, %.6g] from %d replays (mean %.6g, sd %.3g), z=%+.2f" % (
            self.metric,
            self.original,
            "in" if self.within else "outside",
            self.low,
            self.high,
            len(self.values),
            self.mean,
            self.sd,
            self.z,
        )


def spread(
    metric: str, original: float, values: Sequence[float], tolerance: float = DEFAULT_TOLERANCE, metrics: int = 1
) -> Spread:
    """The prediction interval of one metric; `metrics` is how many are judged together."""
    n = len(values)
    if n < 2:
        raise ValueError("a spread needs at least 2 replays")
    if not all(math.isfinite(v) for v in values):
        return Spread(metric, original, tuple(values), math.nan, math.nan, math.nan, math.nan)
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(1.0 - (1.0 - CONFIDENCE) / (2.0 * metrics), n - 1) * sd * math.sqrt(1.0 + 1.0 / n)
    half = max(half, tolerance * max(1.0, abs(mean)))
    return Spread(
        metric, original, tuple(values), mean, sd, min(mean - half, min(values)), max(mean + half, max(values))
    )


@dataclass(frozen=True)
class RepeatVerdict(_Judged):
    PASSING = (IDENTICAL, WITHIN_NOISE)
    verdict: str
    detail: str
    replays: int
    spreads: Tuple[Spread, ...] = ()
    why: Tuple[Any, ...] = ()  # as Verdict.why


def final_values(history: History, ignore: Sequence[str] = IGNORED_METRICS) -> Dict[str, float]:
    return {k: points[-1][1] for k, points in history.items() if points and not ignored(k, ignore)}


def judge_repeats(
    original: History,
    replays: Sequence[History],
    original_hash: Optional[str] = None,
    replay_hashes: Sequence[Optional[str]] = (),
    tolerance: float = DEFAULT_TOLERANCE,
    ignore: Sequence[str] = IGNORED_METRICS,
) -> RepeatVerdict:
    """The verdict of N >= 2 replays of one original (see the module docstring for the rule)."""
    n = len(replays)
    hashes = list(replay_hashes) or [None] * n
    if n < 2:
        raise ValueError("judge_repeats needs at least 2 replays; use compare() for one")
    if all(compare(original, r, original_hash, h, 0.0, ignore).verdict == IDENTICAL for r, h in zip(replays, hashes)):
        return RepeatVerdict(IDENTICAL, "all %d replays match the original bit for bit" % n, n)
    finals = final_values(original, ignore)
    replay_finals = [final_values(r, ignore) for r in replays]
    for i, values in enumerate(replay_finals, 1):
        for key in sorted(set(finals) ^ set(values)):
            where = "replay %d" % i if key in finals else "the original"
            return RepeatVerdict(DIVERGED, "final metric %s is missing from %s" % (key, where), n)
    if not finals:
        return RepeatVerdict(DIVERGED, "nothing to compare: the original logged no metrics", n)
    spreads = tuple(spread(k, finals[k], [v[k] for v in replay_finals], tolerance, len(finals)) for k in sorted(finals))
    outside = [s for s in spreads if not s.within]
    if outside:
        worst = max(outside, key=lambda s: abs(s.z))
        more = " (%d more metric(s) outside)" % (len(outside) - 1) if len(outside) > 1 else ""
        return RepeatVerdict(DIVERGED, worst.line() + more, n, spreads)
    closest = max(spreads, key=lambda s: abs(s.z))
    return RepeatVerdict(
        WITHIN_NOISE,
        "%d final metric(s) inside their %g%% prediction intervals from %d replays; "
        "farthest %s" % (len(spreads), CONFIDENCE * 100, n, closest.line()),
        n,
        spreads,
    )
