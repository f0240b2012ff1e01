"""What a replay shows in the MLflow UI: its card and tfrepro/replay.md (the original's table
of replays is replay/replays_table.py). Pure: the callers write the results (descriptions
through card.merge).

    replay_card(...)         the replay's block: "replay of" the original (linked), the verdict in
                             words, the ranked causes with their fixes (short of identical), the
                             compare page; merge it with before=schema.CARD_BLOCK, so it comes first;
                             for a --repeat summary, with each metric's interval
    replay_markdown(...)     tfrepro/replay.md: verdict, per-metric comparison, and only the
                             environment fields that differ

Verdicts are replay/verify.py's Verdict and replay/noise.py's RepeatVerdict; causes are
inspect/explain.py's Factors. Every recorded string is escaped by tfrepro.markdown; links are built by tracking/ui.py.
"""

from __future__ import annotations

import math
from typing import Any, List, Mapping, Optional, Sequence

from tfrepro import markdown as md
from tfrepro import schema
from tfrepro.inspect import compare
from tfrepro.replay import noise, verify
from tfrepro.tracking import card

CARD_LIMIT = 3000
WORDS = {
    verify.IDENTICAL: "reproduced bit for bit",
    verify.WITHIN_TOLERANCE: "reproduced within tolerance",
    noise.WITHIN_NOISE: "reproduced within run-to-run noise",
    verify.DIVERGED: "did not reproduce",
    verify.FAILED: "the replay did not finish",
}
MARKS = {verify.IDENTICAL: "\u2705", verify.WITHIN_TOLERANCE: "\u2705", noise.WITHIN_NOISE: "\u2705"}


def verdict_words(verdict: str) -> str:
    """ "diverged" -> "diverged: did not reproduce"."""
    words = WORDS.get(verdict)
    return "%s: %s" % (verdict, words) if words else verdict


def _factor(factor: Any) -> Mapping[str, str]:
    if isinstance(factor, Mapping):
        return {"line": str(factor.get("line", "")), "fix": str(factor.get("fix", ""))}
    return {"line": str(getattr(factor, "line", factor)), "fix": str(getattr(factor, "fix", ""))}


def causes(why: Sequence[Any]) -> List[str]:
    """The ranked causes as a numbered markdown list, one cause and its fix per item."""
    out = []
    for n, factor in enumerate(why, 1):
        f = _factor(factor)
        out.append("%d. %s %s %s" % (n, md.text(md.shorten(f["line"], 400)), md.bold("Fix") + ":", md.text(f["fix"])))
    return out


def _verdict_line(verdict) -> str:
    mark = MARKS.get(verdict.verdict, "\u274c")
    return "%s %s" % (mark, md.bold(verdict_words(verdict.verdict)))


def run_link(run_id: str, url: Optional[str], name: str = "") -> str:
    """A run's id (and name) as a markdown link to its page (`url`: None, no link)."""
    label = "%s (%s)" % (name, run_id) if name and name != run_id else run_id
    return md.link(label, url)


def replay_card(
    original_run_id: str,
    verdict,
    original_url: Optional[str] = None,
    compare_url: Optional[str] = None,
    original_name: str = "",
    report_url: Optional[str] = None,
    limit: int = CARD_LIMIT,
) -> str:
    """The block (schema.REPLAY_BLOCK) for the description of a replay (`verdict` a
    verify.Verdict) or of a --repeat summary (a noise.RepeatVerdict: N replays of the original,
    and for each final metric the original's value against the replays' prediction interval)."""
    original = run_link(original_run_id, original_url, original_name)
    if isinstance(verdict, noise.RepeatVerdict):
        lines = _repeat_lines(original, verdict)
        compare_label = "Compare the original with its replays"
    else:
        lines = [
            "%s %s" % (md.bold("Replay of"), original),
            "",
            _verdict_line(verdict)
            + (" " + md.text("\u2014 " + md.shorten(verdict.detail, 400)) if verdict.detail else ""),
        ]
        compare_label = "Compare the two runs"
    if verdict.verdict != verify.IDENTICAL and verdict.why:
        lines += ["", md.text("Why, most likely first:"), ""] + causes(verdict.why)
    lines += ["", _links(compare_url, compare_label, report_url)]
    return card.block(schema.REPLAY_BLOCK, _fit("\n".join(lines).rstrip(), limit))


def _links(compare_url: Optional[str], compare_label: str, report_url: Optional[str]) -> str:
    parts = []
    if compare_url:
        parts.append(md.link(compare_label, compare_url))
    if report_url:
        parts.append(md.link("the report (%s)" % schema.REPLAY_MD, report_url))
    else:
        parts.append(md.text("The report:") + " " + md.code(schema.REPLAY_MD))
    return " \u00b7 ".join(parts)


def _fit(body: str, limit: int) -> str:
    if len(body) <= limit:
        return body
    cut = body[: limit - 80].rsplit("\n", 1)[0]
    return cut + "\n\n" + md.text("\u2026 cut; the whole report is in %s" % schema.REPLAY_MD)


def _number(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return "%.6g" % value


def spread_table(spreads: Sequence[noise.Spread]) -> str:
    rows = [
        [
            md.text(s.metric),
            md.text(_number(s.original)),
            md.text(_number(s.mean)),
            md.text(_number(s.sd)),
            md.text("[%s, %s]" % (_number(s.low), _number(s.high))),
            md.text("%+.2f" % s.z if math.isfinite(s.z) else str(s.z)),
            md.text("inside" if s.within else "outside"),
        ]
        for s in spreads
    ]
    interval = "%g%% interval" % (noise.CONFIDENCE * 100)
    return md.table(("metric", "original", "mean", "sd", interval, "z", "original is"), rows)


def _repeat_lines(original: str, verdict: noise.RepeatVerdict) -> List[str]:
    lines = [
        "%s %s" % (md.bold("%d replays of" % verdict.replays), original),
        "",
        _verdict_line(verdict),
        "",
        md.text(md.shorten(verdict.detail, 600)),
    ]
    if verdict.spreads:
        lines += ["", spread_table(verdict.spreads)]
    return lines


# -- tfrepro/replay.md --------------------------------------------------------------------------


def metric_table(original: Mapping[str, float], replay: Mapping[str, float]) -> str:
    """Final values side by side; wall-clock metrics marked as not judged."""
    rows = []
    for key in sorted(set(original) | set(replay)):
        a, b = original.get(key), replay.get(key)
        if a is None or b is None:
            diff, same = "", "only in the %s" % ("replay" if a is None else "original")
        elif a == b or (math.isnan(a) and math.isnan(b)):
            diff, same = "0", "yes"
        else:
            diff, same = "%.3g" % abs(a - b), "no"
        if verify.ignored(key):
            same = "not judged (wall-clock or host metric)"
        rows.append(
            [
                md.text(key),
                md.text("" if a is None else repr(a)),
                md.text("" if b is None else repr(b)),
                md.text(diff),
                md.text(same),
            ]
        )
    return md.table(("metric", "original", "replay", "|difference|", "same"), rows)


def differences_table(differences: Sequence[compare.Difference]) -> str:
    """Only the environment, code, params and launch fields that differ (not the metrics)."""
    rows = [
        [
            md.text(d.group),
            md.text(d.field),
            md.cell_code(d.a) if d.a else md.text("unset"),
            md.cell_code(d.b) if d.b else md.text("unset"),
            md.text(d.rank),
        ]
        for d in differences
        if not d.equal and d.rank != compare.RESULT and d.group != "metrics"
    ]
    if not rows:
        return md.text("None: every recorded field is the same.")
    return md.table(("group", "field", "original", "replay", "rank"), rows)


def replay_markdown(
    original_run_id: str,
    replay_run_id: str,
    verdict,
    original_metrics: Mapping[str, float],
    replay_metrics: Mapping[str, float],
    differences: Sequence[compare.Difference] = (),
    original_url: Optional[str] = None,
    compare_url: Optional[str] = None,
) -> str:
    """tfrepro/replay.md for a replay (verdict a verify.Verdict) or a --repeat summary (a
    RepeatVerdict: then `replay_metrics` are the first replay's and the intervals are shown).
    No HTML at all: MLflow 3's artifact viewer shows HTML as text."""
    out = [
        "# " + md.text("Replay %s" % replay_run_id),
        "",
        "%s %s" % (md.bold("Replay of"), run_link(original_run_id, original_url)),
        "",
        "%s %s" % (md.bold("Verdict") + ":", md.text(verdict.line())),
    ]
    if compare_url:
        out += ["", md.link("Compare the runs in MLflow", compare_url)]
    why = getattr(verdict, "why", ())
    if why and verdict.verdict != verify.IDENTICAL:
        out += ["", "## " + md.text("Why, most likely first"), ""] + causes(why)
    spreads = getattr(verdict, "spreads", ())
    if spreads:
        out += ["", "## " + md.text("Final metrics against the replays' spread"), "", spread_table(spreads)]
    out += ["", "## " + md.text("Metrics (final values)"), "", metric_table(original_metrics, replay_metrics)]
    out += ["", "## " + md.text("What differs"), "", differences_table(differences)]
    return "\n".join(out) + "\n"
