"""`tfrepro replay RUN_ID`: rerun a recorded run in its exact container and compare results.

Parses the options and prints the plan; replay/rerun.py does the work (see its docstring for the
order), replay/repeat.py for --repeat N. --tolerance judges one replay; --repeat judges against
the spread of N, for runs that are not bit-reproducible (GPUs, no seed). Everything printed from
the record goes through termsafe.safe: a record is data written by anyone with access to the
server, and may not draw on this terminal.
"""

from __future__ import annotations

import logging
import sys
from typing import Optional

import click

from tfrepro.cli import engine_options, grant_options, output, replay_json, replay_plan, status
from tfrepro.errors import Refused, TfreproError, UsageError
from tfrepro.inspect import explain
from tfrepro.replay import links as replay_links
from tfrepro.replay import prepare as replay_prepare
from tfrepro.replay import repeat as replay_repeat
from tfrepro.replay import rerun, verify
from tfrepro.termsafe import safe_lines

log = logging.getLogger(__name__)


@click.command(name="replay")
@click.argument("run_id", metavar="RUN_OR_MODEL")
@click.option("--dry-run", is_flag=True, help="Show drift and exactly what would be submitted; run nothing.")
@click.option(
    "--yes", "-y", is_flag=True, help="Do not ask before running (recorded mounts need --allow-recorded-mounts)."
)
@click.option("--gpus", help="all, a count or none (default: as recorded).")
@engine_options.tracking_uri_option
@click.option("--experiment", help="Experiment for the replay run (default: the original's).")
@click.option(
    "--tolerance",
    type=float,
    default=verify.DEFAULT_TOLERANCE,
    show_default=True,
    help="Relative tolerance: |a-b| <= T*max(1,|a|). 0: only identical passes.",
)
@click.option(
    "--allow-drift",
    is_flag=True,
    help="Run even if this host's driver cannot run the image's CUDA, or the data (mounted, or "
    "beside the code) changed.",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Run N replays one after another and judge the original against their spread (N >= 2).",
)
@grant_options.grant_options
@click.option("--keep-checkout", is_flag=True, help="Leave the temporary checkout in place afterwards.")
@click.option(
    "--no-untracked",
    is_flag=True,
    help="Do not mount the recorded untracked and ignored inputs from your clone (read-only otherwise).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object on stdout (run ids, verdict, metrics, causes, exit code); the plan, "
    "progress and the job's output go to stderr.",
)
@engine_options.engine_options
@engine_options.shape_options
@click.pass_context
def command(
    ctx,
    run_id,
    dry_run,
    yes,
    gpus,
    tracking_uri,
    experiment,
    tolerance,
    allow_drift,
    repeat,
    keep_checkout,
    no_untracked,
    as_json,
    **given_options,
):
    """Replay RUN_ID in its recorded image, commit and patch (on its recorded engine unless
    --on says otherwise), and verify the result."""
    options = grant_options.pop(given_options, yes)
    shape_given = engine_options.pop_shape(given_options)
    name, given = engine_options.pop(given_options)
    echo = replay_json.to_stderr if as_json else click.echo  # with --json, stdout holds the JSON object alone
    try:
        if tolerance < 0:
            raise UsageError("--tolerance must be >= 0")
        run_id = _run_id(run_id, tracking_uri)
        prepared = replay_prepare.prepare(
            run_id,
            gpus,
            tracking_uri,
            experiment,
            allow_drift,
            options=options,
            untracked=not no_untracked,
            engine_name=name,
            engine_given=given,
            shape_given=shape_given,
        )
        # a Kubernetes dry run: the manifest alone on stdout (kubectl apply -f -), the plan on stderr
        manifest_only = dry_run and not as_json and prepared.engine.name == "kubernetes"
        replay_plan.show_plan(prepared, replay_json.to_stderr if manifest_only else echo, manifest=not manifest_only)
        if prepared.refusals and not dry_run:
            raise Refused(prepared.refusals[0])
        for message in prepared.replay_plan.warnings + prepared.trust.image_concerns + prepared.refusals:
            log.warning("%s", message)
        if dry_run:
            if manifest_only:
                output.echo(prepared.preview())
            if as_json:
                plan_only = {"original_run": run_id, "dry_run": True, "verdict": None, "exit_code": status.OK}
                click.echo(replay_json.dumps(dict(plan_only, refusals=list(prepared.refusals))))
            return
        if not yes:
            if not sys.stdin.isatty():
                raise Refused("refusing to run without confirmation: stdin is not a terminal (pass --yes)")
            prepared = replay_plan.confirm(prepared, echo, prompt_on_stderr=as_json)
        write = replay_json.stderr_writer() if as_json else output.stdout_writer()
        # the verdict line comes last: scripts read it from the end of the output
        if repeat > 1:
            summary, replay_ids, verdict = replay_repeat.repeat(prepared, repeat, tolerance, keep_checkout, write)
            line = "replays of run %s (summary run %s; %s): %s" % (
                prepared.record.run_id,
                summary,
                ", ".join(replay_ids),
                verdict.line(),
            )
            table = replay_repeat.render(verdict)
            if table:
                echo(safe_lines(table))
        else:
            new_run, verdict = rerun.replay(prepared, tolerance, keep_checkout, write)
            summary, replay_ids = None, [new_run]
            line = "replay run %s: %s" % (new_run, verdict.line())
    except (TfreproError, click.exceptions.Abort, KeyboardInterrupt) as exc:
        if as_json:
            click.echo(replay_json.dumps(replay_json.error_json(run_id, exc)))
        raise
    if verdict.why:
        echo("why the results can differ, most likely first:\n" + safe_lines(explain.render(verdict.why)))
    urls = replay_links.addresses(prepared, [summary] if summary else replay_ids)
    replay_plan.show_links(urls, echo)
    echo(line)
    exit_code = status.OK if verdict.ok else status.DIVERGED
    if as_json:
        click.echo(
            replay_json.dumps(dict(replay_json.verdict_json(run_id, replay_ids, summary, verdict, exit_code), **urls))
        )
    if exit_code:
        ctx.exit(exit_code)


def _run_id(ref: str, tracking_uri: Optional[str]) -> str:
    """The run to replay: RUN_ID as given, or the run that produced a model reference."""
    from tfrepro.cli import refs

    if not refs.is_model_ref(ref):
        return ref
    from tfrepro.tracking import record as run_record
    from tfrepro.tracking import runs

    return refs.run_id(run_record.client(runs.tracking_uri(tracking_uri), existing=True), ref)
