"""`tfrepro replay` once prepared (replay/prepare.py): run_one() launches one replay run,
replay() runs it and returns the verdict (replay/repeat.py: N of them).

run_one() materialises commit + patch in a standalone temporary checkout (so git inside the
container records them itself) with the data beside the code mounted read-only over it, pulls
by digest where the engine pulls here (a Kubernetes pod clones the commit itself), and runs it
through the recorded-launch pipeline shared with `tfrepro run` (launch/pipeline.py) as a new
MLflow run tagged tfrepro.replay_of. replay() then compares metrics and model hash, explains a
verdict short of identical (inspect/explain.py), and tags the verdict on the replay and on the
original (replay/verdict_tags.py: tfrepro.replayed_by, tfrepro.replay.last_verdict), and links
the two on their run pages (replay/links.py: the replay's card, the original's replays table,
tfrepro/replay.md; a single replay in the original's experiment nests under it).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Dict, Optional, Tuple

from tfrepro import schema
from tfrepro.errors import JobFailed
from tfrepro.fingerprint.data_record import to_tags as data_tags
from tfrepro.inspect import explain
from tfrepro.launch import pipeline, tags
from tfrepro.replay import checkout, links, overlay, plan, verdict_tags, verify
from tfrepro.replay.prepare import Prepared
from tfrepro.tracking import record as run_record

log = logging.getLogger(__name__)


def run_one(
    prepared: Prepared,
    keep_checkout: bool = False,
    extra_tags: Optional[Dict[str, str]] = None,
    run_name: Optional[str] = None,
    write: Optional[pipeline.Write] = None,
) -> Tuple[str, int]:
    """Launch one replay run: (its run id, the container's exit status)."""
    record, replay_plan = prepared.record, prepared.replay_plan
    candidates = [os.getcwd()] + list(replay_plan.repo_roots)
    # the source first: a missing commit or a stale patch is found before a long pull
    with checkout.materialise(
        replay_plan.commit, replay_plan.patch, candidates, replay_plan.remote, log=log.info, keep=keep_checkout
    ) as checkout_dir:
        engine = prepared.engine
        engine.prepare(replay_plan.image)
        run_tags = _launch_tags(replay_plan, checkout_dir)
        overlay.prepare_checkout(checkout_dir, prepared.data.beside, log.info)
        mounted = prepared.mounted_data()
        run_tags.update(data_tags(mounted))  # the data this replay saw
        run_tags[schema.REPLAY_OF] = record.run_id
        run_tags.update(extra_tags or {})
        recording = dataclasses.replace(
            prepared.recording, run_name=run_name or prepared.recording.run_name, tags=run_tags, data=mounted
        )
        return pipeline.launch_recorded(
            engine, prepared.blueprint, recording, write, prepared.pod_source, checkout=checkout_dir
        )


def replay(
    prepared: Prepared,
    tolerance: float = verify.DEFAULT_TOLERANCE,
    keep_checkout: bool = False,
    write: Optional[pipeline.Write] = None,
) -> Tuple[str, verify.Verdict]:
    """Run the replay; return (its run id, the verdict). JobFailed if it exited non-zero."""
    record, client = prepared.record, prepared.client
    new_run, status = run_one(prepared, keep_checkout, links.parent_tags(prepared), write=write)
    if status:
        raise_job_failed(prepared, new_run, status)
    replayed = run_record.load(client, new_run, histories=True)
    verdict = verify.compare(
        run_record.read_histories(client, record.run_id),
        replayed.histories or {},
        record.tags.get(schema.MODEL_HASH),
        replayed.tags.get(schema.MODEL_HASH),
        tolerance,
    )
    verdict = explained(prepared, replayed, verdict)
    verdict_tags.set_verdict(client, new_run, verdict)
    verdict_tags.mark_original(client, record.run_id, new_run, verdict.verdict)
    links.link_replay(prepared, replayed, verdict)
    return new_run, verdict


def raise_job_failed(prepared: Prepared, run_id: str, status: int, tagged: Optional[str] = None) -> None:
    """A replay container exited non-zero: tag it (and the original), raise JobFailed."""
    verdict = verify.Verdict(verify.FAILED, "container exited with status %d" % status)
    verdict_tags.set_verdict(prepared.client, tagged or run_id, verdict)
    verdict_tags.mark_original(prepared.client, prepared.record.run_id, tagged or run_id, verdict.verdict)
    if not tagged:
        _link_failed(prepared, run_id, verdict)
    raise JobFailed(status, "replay run %s: container exited with status %d" % (run_id, status))


def _link_failed(prepared: Prepared, run_id: str, verdict: verify.Verdict) -> None:
    """A failed replay still says what it replayed, and the original lists it."""
    try:
        replayed = run_record.load(prepared.client, run_id)
    except Exception as exc:  # the job failed before it recorded anything: nothing to link
        log.warning("could not link the failed replay run %s: %s", run_id, exc)
        return
    links.link_replay(prepared, replayed, verdict)


def explained(prepared: Prepared, replayed: run_record.RunRecord, verdict):
    """The verdict with what can explain it (inspect/explain.py): always when the data had
    changed (--allow-drift), else whenever it is short of identical."""
    if verdict.verdict == verify.IDENTICAL and not prepared.data.drift:
        return verdict
    rows = list(prepared.data.drift) + prepared.data.beside.unrestored
    factors = explain.explain(prepared.record, replayed, rows, prepared.record.data)
    if verdict.verdict == verify.IDENTICAL:
        factors = [factor for factor in factors if factor.key == "data"]
    return dataclasses.replace(verdict, why=tuple(factors))


def _launch_tags(replay_plan: plan.ReplayPlan, checkout_dir: str) -> Dict[str, str]:
    """What the launcher knows, as `tfrepro run` records it: the checkout read on this side
    (the in-container fingerprint records it again), the command, its directory, the seed."""
    git, _ = tags.host_git(checkout_dir)
    spec, recorded = replay_plan.spec, replay_plan.launch
    launch_tags = pipeline.launcher_tags(git, spec.command, spec.subdir, recorded.autolog, recorded.hook_seed)
    if recorded.seed is not None:
        launch_tags.setdefault(schema.SEED, recorded.seed)  # where the hook applies a seed, that one stands
    return launch_tags
