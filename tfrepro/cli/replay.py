"""`tfrepro replay RUN_ID`: rerun a recorded run in its exact container and compare results.

Parses the options and prints the plan; replay/run.py does the work (see its docstring for the
order), replay/repeat.py for --repeat N. --tolerance judges one replay; --repeat judges against
the spread of N, for runs that are not bit-reproducible (GPUs, no seed). Everything printed from
the record goes through termsafe.safe: a record is data written by anyone with access to the
server, and may not draw on this terminal.
"""

from __future__ import annotations

import logging
import sys

import click

from tfrepro.cli import engine_options, output
from tfrepro.errors import Refused, UsageError
from tfrepro.inspect import explain
from tfrepro.redact import strip_url_credentials
from tfrepro.replay import data, drift, grants, plan, verify
from tfrepro.replay import repeat as replay_repeat
from tfrepro.replay import run as replay_run
from tfrepro.termsafe import safe, safe_lines

log = logging.getLogger(__name__)


@click.command(name="replay")
@click.argument("run_id")
@click.option("--dry-run", is_flag=True, help="Show drift and exactly what would be submitted; run nothing.")
@click.option(
    "--yes", "-y", is_flag=True, help="Do not ask before running (recorded mounts need --allow-recorded-mounts)."
)
@click.option("--gpus", help="all, a count or none (default: as recorded).")
@click.option("--tracking-uri", help="Defaults to $MLFLOW_TRACKING_URI / MLflow's default.")
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
@click.option(
    "--pass-env",
    "pass_env",
    multiple=True,
    metavar="NAME",
    help="Pass this variable's value from your environment (repeatable); nothing else of yours is passed.",
)
@click.option("-e", "--env", "env_items", multiple=True, metavar="NAME=VALUE", help="Set a variable in the container.")
@click.option(
    "-v",
    "--volume",
    "volumes",
    multiple=True,
    metavar="SRC:DST[:ro]",
    help="Mount this (a recorded mount given again is mounted without asking).",
)
@click.option("--allow-recorded-mounts", is_flag=True, help="Mount the run's recorded mounts without asking.")
@click.option(
    "--allow-untrusted-image",
    is_flag=True,
    help="Run an image outside TFREPRO_TRUSTED_REGISTRIES, or from another repository than recorded.",
)
@click.option(
    "--allowed-signers",
    metavar="FILE",
    help="ssh allowed_signers file to check the record's signature against (default: "
    "$TFREPRO_ALLOWED_SIGNERS, else git's gpg.ssh.allowedSignersFile).",
)
@click.option("--require-signed", is_flag=True, help="Refuse a record not signed by a trusted key.")
@click.option("--mount-docker-socket", is_flag=True, help="Allow a recorded Docker socket mount.")
@click.option("--keep-checkout", is_flag=True, help="Leave the temporary checkout in place afterwards.")
@click.option(
    "--no-untracked",
    is_flag=True,
    help="Do not mount the recorded untracked and ignored inputs from your clone (read-only otherwise).",
)
@engine_options.engine_options
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
    pass_env,
    env_items,
    volumes,
    allow_recorded_mounts,
    allow_untrusted_image,
    allowed_signers,
    require_signed,
    mount_docker_socket,
    keep_checkout,
    no_untracked,
    **engine_given,
):
    """Replay RUN_ID in its recorded image, commit and patch (on its recorded engine unless
    --on says otherwise), and verify the result."""
    if tolerance < 0:
        raise UsageError("--tolerance must be >= 0")
    options = grants.Options(
        tuple(env_items),
        tuple(pass_env),
        tuple(volumes),
        allow_recorded_mounts,
        mount_docker_socket,
        allow_untrusted_image,
        allowed_signers,
        require_signed,
        yes,
    )
    name, given = engine_options.pop(engine_given)
    prepared = replay_run.prepare(
        run_id,
        gpus,
        tracking_uri,
        experiment,
        allow_drift,
        options=options,
        untracked=not no_untracked,
        engine_name=name,
        engine_given=given,
    )
    show_plan(prepared)
    if prepared.refusals and not dry_run:
        raise Refused(prepared.refusals[0])
    for message in prepared.replay_plan.warnings + prepared.trust.image_concerns + prepared.refusals:
        log.warning("%s", message)
    if dry_run:
        return
    if not yes:
        if not sys.stdin.isatty():
            raise Refused("refusing to run without confirmation: stdin is not a terminal (pass --yes)")
        prepared = _confirm(prepared)
    # the verdict line comes last: scripts read it from the end of the output
    if repeat > 1:
        summary, runs, verdict = replay_repeat.repeat(
            prepared, repeat, tolerance, keep_checkout, output.stdout_writer()
        )
        line = "replays of run %s (summary run %s; %s): %s" % (
            prepared.record.run_id,
            summary,
            ", ".join(runs),
            verdict.line(),
        )
        table = replay_repeat.render(verdict)
        if table:
            click.echo(safe_lines(table))
    else:
        new_run, verdict = replay_run.replay(prepared, tolerance, keep_checkout, output.stdout_writer())
        line = "replay run %s: %s" % (new_run, verdict.line())
    if verdict.why:
        click.echo("why the results can differ, most likely first:\n" + safe_lines(explain.render(verdict.why)))
    click.echo(line)
    if not verdict.ok:
        ctx.exit(1)


def show_plan(prepared) -> None:
    replay_plan, record = prepared.replay_plan, prepared.record
    commit, patched = replay_plan.commit[:12], bool(replay_plan.patch.strip())
    click.echo("replay of run %s: commit %s%s" % (safe(record.run_id), commit, " + patch" if patched else ""))
    image = replay_plan.image
    where = "registry %s" % grants.registry(image.rsplit("@", 1)[0]) if "@" in image else "this host only"
    click.echo("image:     %s (%s)" % (safe(image), safe(where)))
    if replay_plan.image_ref and replay_plan.image_ref != image:
        click.echo("           recorded as %s" % safe(replay_plan.image_ref))
    click.echo("source:    %s" % safe(prepared.source))
    click.echo("record:    %s" % safe(prepared.trust.verification.line()))
    if prepared.credentials:
        click.echo(
            "tracking:  %s passed to %s for %s (the replayed command can read them)"
            % (
                ", ".join(prepared.credentials),
                safe(image),
                safe(strip_url_credentials(prepared.destination.tracking_uri)),
            )
        )
    for name in replay_plan.passed_env:
        click.echo("env:       %s passed from your environment (--pass-env)" % safe(name))
    for name in replay_plan.needs_pass_env:
        click.echo("env:       %s needs --pass-env %s (the record keeps no value)" % (safe(name), safe(name)))
    if prepared.mounts.offers:
        click.echo("recorded mounts (offered, not imposed):")
    for offer in prepared.mounts.offers:
        click.echo(
            "  %s -> %s%s  %s"
            % (
                safe(offer.source),
                safe(offer.target),
                " (ro)" if offer.read_only else "",
                _offer_state(prepared, offer),
            )
        )
    click.echo("drift (! blocks, * differs):\n" + drift.render(prepared.drift_items))
    mounted = [s for s in record.data if s.label == "mount"]
    if mounted:
        rows = [row for row in prepared.data.drift if row.label == "mount"]
        click.echo("data (! blocks):\n" + safe_lines(data.render(mounted, rows)))
    if prepared.data.beside.inputs:
        click.echo(safe_lines(prepared.data.beside.render(replay_plan.spec.workdir)))
    click.echo(
        "%s (%s = commit %s%s):\n%s"
        % (
            _what(prepared.engine.name),
            plan.CHECKOUT,
            commit,
            " with the recorded patch" if patched else "",
            _indent(safe_lines(prepared.preview())),
        )
    )


def _offer_state(prepared, offer) -> str:
    if offer.refusal:
        return "REFUSED: " + safe(offer.refusal)
    if offer in prepared.mounts.approved:
        return "mounted"
    return "not mounted unless you confirm (or --allow-recorded-mounts, or -v again)"


def _confirm(prepared):
    """Ask about each offered mount and each image concern, then the whole command."""
    for offer in prepared.mounts.offers:
        if offer.refusal or offer in prepared.mounts.approved:
            continue
        if click.confirm(
            "Mount %s at %s%s, as the original run did?"
            % (safe(offer.real), safe(offer.target), " read-only" if offer.read_only else " read-write")
        ):
            prepared = prepared.approve([offer])
    for concern in prepared.trust.image_concerns:
        click.confirm("Run it anyway (%s)?" % safe(concern), abort=True)
    if prepared.mounts.approved:
        click.echo("mounted: " + ", ".join(safe(offer.bind()) for offer in prepared.mounts.approved))
    click.confirm("Replay run %s with this command?" % safe(prepared.record.run_id), abort=True)
    return prepared


def _what(engine: str) -> str:
    return {"slurm": "batch script", "kubernetes": "Job manifest"}.get(engine, "command")


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.rstrip("\n").splitlines())
