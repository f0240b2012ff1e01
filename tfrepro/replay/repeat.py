"""`tfrepro replay RUN --repeat N`: N replays, one after another, judged against their spread.

MLflow layout (ordinary runs, so the compare view shows the N curves side by side):
    a summary run "replays-of-<name>"   tags tfrepro.replay.summary_of = RUN, tfrepro.replay.repeat = N,
                                        tfrepro.replay.verdict / .detail; metrics
                                        noise/<metric>/{original,mean,sd,low,high,z} (the statistics)
    N replay runs, nested under it      tags tfrepro.replay_of = RUN, tfrepro.replay.summary = the summary,
                                        tfrepro.replay.repeat = "i/N", mlflow.parentRunId; each has its
                                        own metrics, and no verdict of its own
    the original                        tfrepro.replayed_by = the summary, tfrepro.replay.last_verdict
The verdict is noise.judge_repeats (its docstring states the rule).
"""

from __future__ import annotations

import logging
import math
import time
from typing import List, Optional, Tuple

from tfrepro import schema
from tfrepro.launch.pipeline import Write
from tfrepro.replay import links, noise, rerun, verdict_tags, verify
from tfrepro.replay.prepare import Prepared
from tfrepro.tracking import record as run_record
from tfrepro.tracking import runs

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: nests the replays under the summary in its UI


def repeat(
    prepared: Prepared,
    n: int,
    tolerance: float = verify.DEFAULT_TOLERANCE,
    keep_checkout: bool = False,
    write: Optional[Write] = None,
) -> Tuple[str, List[str], noise.RepeatVerdict]:
    """Run n >= 2 replays; (summary run id, replay run ids, verdict). JobFailed if one fails."""
    record, client = prepared.record, prepared.client
    name = record.run_name or record.run_id
    summary = runs.create_run(
        client,
        prepared.destination.experiment_id,
        "replays-of-%s" % name,
        {schema.REPLAY_SUMMARY_OF: record.run_id, schema.REPLAY_REPEAT: str(n)},
    )
    replay_ids: List[str] = []
    try:
        for i in range(1, n + 1):
            log.info("replay %d/%d of run %s (summary run %s)", i, n, record.run_id, summary)
            tags = {schema.REPLAY_SUMMARY: summary, schema.REPLAY_REPEAT: "%d/%d" % (i, n), PARENT_TAG: summary}
            new_run, status = rerun.run_one(prepared, keep_checkout, tags, "replay-%d-of-%s" % (i, name), write)
            replay_ids.append(new_run)
            if status:
                rerun.raise_job_failed(prepared, new_run, status, tagged=summary)
        replayed = [run_record.load(client, run_id, histories=True) for run_id in replay_ids]
        verdict = noise.judge_repeats(
            run_record.read_histories(client, record.run_id),
            [run.histories or {} for run in replayed],
            record.tags.get(schema.MODEL_HASH),
            [run.tags.get(schema.MODEL_HASH) for run in replayed],
            tolerance,
        )
        verdict = rerun.explained(prepared, replayed[0], verdict)
        _log_statistics(client, summary, verdict)
        verdict_tags.set_verdict(client, summary, verdict)
        verdict_tags.mark_original(client, record.run_id, summary, verdict.verdict)
        links.link_repeat(prepared, summary, replayed, verdict)
    except BaseException:
        runs.finish(client, summary, 1)
        raise
    runs.finish(client, summary, 0)
    return summary, replay_ids, verdict


def _log_statistics(client, run_id: str, verdict: noise.RepeatVerdict) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = []
    for spread in verdict.spreads:
        for key, value in spread.statistics():
            if math.isfinite(value):
                metrics.append(Metric("noise/%s/%s" % (spread.metric, key), float(value), now, 0))
    try:
        for i in range(0, len(metrics), 200):
            client.log_batch(run_id, metrics=metrics[i : i + 200])
    except Exception as exc:
        log.warning("could not log the statistics on run %s: %s", run_id, run_record.tracking_error(exc, "run"))


def render(verdict: noise.RepeatVerdict) -> str:
    """The per-metric table that goes with the verdict line ("" when there are no statistics)."""
    if not verdict.spreads:
        return ""
    lines = [
        "final metrics of the original against %d replays:" % verdict.replays,
        "  %-16s %12s %12s %10s  %-27s %8s"
        % ("metric", "original", "mean", "sd", "%g%% interval" % (noise.CONFIDENCE * 100), "z"),
    ]
    for spread in verdict.spreads:
        interval = "[%.6g, %.6g]" % (spread.low, spread.high)
        lines.append(
            "  %-16s %12.6g %12.6g %10.3g  %-27s %+8.2f%s"
            % (
                spread.metric,
                spread.original,
                spread.mean,
                spread.sd,
                interval,
                spread.z,
                "" if spread.within else "  outside",
            )
        )
    return "\n".join(lines)
