"""Judge N >= 2 replays of one original against run-to-run noise (`judge_repeats`). Pure.

    identical          every replay is identical to the original (replay/verify.py)
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

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tfrepro.replay.verify import (
    DEFAULT_TOLERANCE,
    DIVERGED,
    IDENTICAL,
    IGNORED_METRICS,
    History,
    Judged,
    compare,
    finite,
    ignored,
    same,
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
            return all(same(self.original, v) for v in self.values)
        return self.low <= self.original <= self.high

    @property
    def z(self) -> float:
        if self.sd > 0:
            return (self.original - self.mean) / self.sd
        return 0.0 if self.original == self.mean else math.copysign(math.inf, self.original - self.mean)

    def statistics(self) -> List[Tuple[str, float]]:
        """(name, value) of each number the spread gives: the --json row's, and the summary
        run's noise/METRIC/NAME metrics."""
        return [(name, getattr(self, name)) for name in ("original", "mean", "sd", "low", "high", "z")]

    def to_dict(self) -> Dict[str, Any]:
        """The row `tfrepro replay --json` shows for this metric."""
        row: Dict[str, Any] = {"metric": self.metric, "within": self.within}
        row.update((name, finite(value)) for name, value in self.statistics())
        return row

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
class RepeatVerdict(Judged):
    PASSING = (IDENTICAL, WITHIN_NOISE)
    replays: int = 0
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
