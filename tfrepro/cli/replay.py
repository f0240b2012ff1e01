"""`tfrepro replay RUN_ID`: rerun a recorded run in its exact container and compare results.

Parses the options and prints; replay/run.py does the work (see its docstring for the order),
replay/repeat.py for --repeat N. --tolerance judges one replay; --repeat judges against the
spread of N, for runs that are not bit-reproducible (GPUs, no seed).
"""
from __future__ import annotations

import shlex
import sys

import click

from tfrepro.errors import UsageError
from tfrepro.inspect import explain
from tfrepro.replay import data, drift, launch, plan, verify
from tfrepro.replay import repeat as replay_repeat
from tfrepro.replay import run as replay_run


@click.command(name="replay")
@click.argument("run_id")
@click.option("--dry-run", is_flag=True, help="Show drift and the docker command, run nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before running.")
@click.option("--gpus", help="all, a count or none (default: as recorded).")
@click.option("--tracking-uri", help="Defaults to $MLFLOW_TRACKING_URI / MLflow's default.")
@click.option("--experiment", help="Experiment for the replay run (default: the original's).")
@click.option("--tolerance", type=float, default=verify.DEFAULT_TOLERANCE, show_default=True,
              help="Relative tolerance: |a-b| <= T*max(1,|a|). 0: only identical passes.")
@click.option("--allow-drift", is_flag=True,
              help="Run even if this host's driver cannot run the image's CUDA, or the data (mounted, or "
                   "beside the code) changed.")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run N replays one after another and judge the original against their spread (N >= 2).")
@click.option("--mount-docker-socket", is_flag=True, help="Allow a recorded Docker socket mount.")
@click.option("--keep-checkout", is_flag=True, help="Leave the temporary checkout in place afterwards.")
@click.option("--no-untracked", is_flag=True,
              help="Do not mount the recorded untracked and ignored inputs from your clone (read-only otherwise).")
@click.pass_context
def command(ctx, run_id, dry_run, yes, gpus, tracking_uri, experiment, tolerance, allow_drift, repeat,
            mount_docker_socket, keep_checkout, no_untracked):
    """Replay RUN_ID in its recorded image, commit and patch, and verify the result."""
    if tolerance < 0:
        raise UsageError("--tolerance must be >= 0")
    prepared = replay_run.prepare(run_id, gpus, tracking_uri, experiment, allow_drift, mount_docker_socket,
                                  untracked=not no_untracked)
    replay_plan = prepared.replay_plan
    commit, patched = replay_plan.commit[:12], bool(replay_plan.patch.strip())
    click.echo("replay of run %s: image %s, commit %s%s"
               % (prepared.record.run_id, replay_plan.image, commit, " + patch" if patched else ""))
    click.echo("drift (! blocks, * differs):\n" + drift.render(prepared.drift_items))
    mounted = [s for s in prepared.record.data if s.label == "mount"]
    if mounted:
        click.echo("data (! blocks):\n" + data.render(mounted, [r for r in prepared.data_drift if r.label == "mount"]))
    if prepared.beside.inputs:
        click.echo(prepared.beside.render(replay_plan.spec.workdir))
    click.echo("command (%s = commit %s%s):\n  %s" % (plan.CHECKOUT, commit, " with the recorded patch" if patched else "",
                                                     shlex.join(prepared.preview())))
    if prepared.refusals and not dry_run:
        raise UsageError(prepared.refusals[0])
    for message in replay_plan.warnings + prepared.refusals:
        launch.warn(message)
    if dry_run:
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("refusing to run without confirmation: stdin is not a terminal (pass --yes)")
        click.confirm("Replay run %s with this command?" % prepared.record.run_id, abort=True)
    # the verdict line comes last: scripts read it from the end of the output
    if repeat > 1:
        summary, runs, verdict = replay_repeat.repeat(prepared, repeat, tolerance, keep_checkout)
        line = "replays of run %s (summary run %s; %s): %s" % (prepared.record.run_id, summary, ", ".join(runs),
                                                              verdict.line())
        table = replay_repeat.render(verdict)
        if table:
            click.echo(table)
    else:
        new_run, verdict = replay_run.replay(prepared, tolerance, keep_checkout)
        line = "replay run %s: %s" % (new_run, verdict.line())
    if verdict.why:
        click.echo("why the results can differ, most likely first:\n" + explain.render(verdict.why))
    click.echo(line)
    if not verdict.ok:
        ctx.exit(1)
