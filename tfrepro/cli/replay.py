"""`tfrepro replay RUN_ID`: rerun a recorded run in its exact container and compare results.

Parses the options and prints; replay/run.py does the work (see its docstring for the order).
"""
from __future__ import annotations

import sys

import click

from tfrepro.cli import engine_options as E
from tfrepro.errors import UsageError
from tfrepro.launch import launcher as launch
from tfrepro.replay import drift, plan, verify
from tfrepro.replay import run as replay_run


@click.command(name="replay")
@click.argument("run_id")
@click.option("--dry-run", is_flag=True, help="Show drift and exactly what would be submitted; run nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before running.")
@click.option("--gpus", help="all, a count or none (default: as recorded).")
@click.option("--tracking-uri", help="Defaults to $MLFLOW_TRACKING_URI / MLflow's default.")
@click.option("--experiment", help="Experiment for the replay run (default: the original's).")
@click.option("--tolerance", type=float, default=verify.DEFAULT_TOLERANCE, show_default=True,
              help="Relative tolerance: |a-b| <= T*max(1,|a|). 0: only identical passes.")
@click.option("--allow-drift", is_flag=True, help="Run even if this host's driver cannot run the image's CUDA.")
@click.option("--mount-docker-socket", is_flag=True, help="Allow a recorded Docker socket mount.")
@click.option("--keep-checkout", is_flag=True, help="Leave the temporary checkout in place afterwards.")
@E.engine_options
@click.pass_context
def command(ctx, run_id, dry_run, yes, gpus, tracking_uri, experiment, tolerance, allow_drift,
            mount_docker_socket, keep_checkout, **engine_given):
    """Replay RUN_ID in its recorded image, commit and patch (on its recorded engine unless
    --on says otherwise), and verify the result."""
    if tolerance < 0:
        raise UsageError("--tolerance must be >= 0")
    name, given = E.pop(engine_given)
    prepared = replay_run.prepare(run_id, gpus, tracking_uri, experiment, allow_drift, mount_docker_socket,
                                  name, given)
    replay_plan = prepared.replay_plan
    commit, patched = replay_plan.commit[:12], bool(replay_plan.patch.strip())
    click.echo("replay of run %s: image %s, commit %s%s"
               % (prepared.record.run_id, replay_plan.image, commit, " + patch" if patched else ""))
    click.echo("drift (! blocks, * differs):\n" + drift.render(prepared.drift_items))
    click.echo("%s (%s = commit %s%s):\n%s" % (_what(prepared.engine.name), plan.CHECKOUT, commit,
                                             " with the recorded patch" if patched else "",
                                             _indent(prepared.preview())))
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
    new_run, verdict = replay_run.replay(prepared, tolerance, keep_checkout)
    click.echo("replay run %s: %s" % (new_run, verdict.line()))
    if not verdict.ok:
        ctx.exit(1)


def _what(engine: str) -> str:
    return {"slurm": "batch script", "kubernetes": "Job manifest"}.get(engine, "command")


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.rstrip("\n").splitlines())
