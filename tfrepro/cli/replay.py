"""`tfrepro replay RUN_ID`: rerun a recorded run in its exact container and compare results.

Parses the options and prints the plan; replay/rerun.py does the work (see its docstring for the
order), replay/repeat.py for --repeat N. --tolerance judges one replay; --repeat judges against
the spread of N, for runs that are not bit-reproducible (GPUs, no seed). Everything printed from
the record goes through termsafe.safe: a record is data written by anyone with access to the
server, and may not draw on this terminal.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from typing import Any, Dict, Mapping, Optional

import click

from tfrepro.cli import engine_options, output, status
from tfrepro.cli.common_options import allowed_signers_option
from tfrepro.errors import JobFailed, Refused, TfreproError, UsageError
from tfrepro.inspect import explain
from tfrepro.redact import strip_url_credentials
from tfrepro.replay import data, drift, grants, plan, rerun, verify
from tfrepro.replay import links as replay_links
from tfrepro.replay import prepare as replay_prepare
from tfrepro.replay import repeat as replay_repeat
from tfrepro.termsafe import safe, safe_lines

log = logging.getLogger(__name__)


@click.command(name="replay")
@click.argument("run_id", metavar="RUN_OR_MODEL")
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
@engine_options.volume_option("Mount this (a recorded mount given again is mounted without asking).")
@click.option("--allow-recorded-mounts", is_flag=True, help="Mount the run's recorded mounts without asking.")
@click.option(
    "--allow-untrusted-image",
    is_flag=True,
    help="Run an image outside TFREPRO_TRUSTED_REGISTRIES, or from another repository than recorded.",
)
@allowed_signers_option
@click.option("--require-signed", is_flag=True, help="Refuse a record not signed by a trusted key.")
@click.option("--mount-docker-socket", is_flag=True, help="Allow a recorded Docker socket mount.")
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
    as_json,
    **engine_given,
):
    """Replay RUN_ID in its recorded image, commit and patch (on its recorded engine unless
    --on says otherwise), and verify the result."""
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
    shape_given = engine_options.pop_shape(engine_given)
    name, given = engine_options.pop(engine_given)
    echo = _to_stderr if as_json else click.echo  # with --json, stdout holds the JSON object alone
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
        show_plan(prepared, _to_stderr if manifest_only else echo, manifest=not manifest_only)
        if prepared.refusals and not dry_run:
            raise Refused(prepared.refusals[0])
        for message in prepared.replay_plan.warnings + prepared.trust.image_concerns + prepared.refusals:
            log.warning("%s", message)
        if dry_run:
            if manifest_only:
                output.echo(prepared.preview())
            if as_json:
                plan_only = {"original_run": run_id, "dry_run": True, "verdict": None, "exit_code": status.OK}
                click.echo(_json(dict(plan_only, refusals=list(prepared.refusals))))
            return
        if not yes:
            if not sys.stdin.isatty():
                raise Refused("refusing to run without confirmation: stdin is not a terminal (pass --yes)")
            prepared = _confirm(prepared, echo, prompt_on_stderr=as_json)
        write = _stderr_writer() if as_json else output.stdout_writer()
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
            click.echo(_json(error_json(run_id, exc)))
        raise
    if verdict.why:
        echo("why the results can differ, most likely first:\n" + safe_lines(explain.render(verdict.why)))
    urls = replay_links.addresses(prepared, [summary] if summary else replay_ids)
    _show_links(urls, echo)
    echo(line)
    exit_code = status.OK if verdict.ok else status.DIVERGED
    if as_json:
        click.echo(_json(dict(verdict_json(run_id, replay_ids, summary, verdict, exit_code), **urls)))
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


def _show_links(urls: Mapping[str, Optional[str]], echo) -> None:
    """The two runs' pages and their compare page in the MLflow UI (an http(s) server only)."""
    labels = (("original_url", "original:"), ("replay_url", "replay:  "), ("compare_url", "compare: "))
    shown = [(label, urls.get(key)) for key, label in labels if urls.get(key)]
    if shown:
        echo("in the MLflow UI:")
        for label, url in shown:
            echo("  %s %s" % (label, safe(url)))


def verdict_json(original: str, replay_ids, summary: Optional[str], verdict, exit_code: int) -> Dict[str, Any]:
    """--json: what a CI job gates on. `metrics` holds one row per compared metric: final values
    and the worst step (one replay), or the spread of the replays (--repeat)."""
    spreads = getattr(verdict, "spreads", ())
    if spreads:
        metrics = [
            {
                "metric": spread.metric,
                "original": spread.original,
                "mean": spread.mean,
                "sd": spread.sd,
                "low": spread.low,
                "high": spread.high,
                "z": spread.z,
                "within": spread.within,
            }
            for spread in spreads
        ]
    else:
        metrics = [row.to_dict() for row in getattr(verdict, "metrics", ())]
    return {
        "original_run": original,
        "replay_runs": list(replay_ids),
        "summary_run": summary,
        "verdict": verdict.verdict,
        "detail": verdict.detail,
        "reproduced": verdict.ok,
        "metrics": metrics,
        "causes": [dict(cause) for cause in explain.as_dicts(verdict.why)],
        "exit_code": exit_code,
    }


def error_json(original: str, error: BaseException) -> Dict[str, Any]:
    """--json when the replay was refused or failed: the error's line and its exit code."""
    if isinstance(error, TfreproError):
        exit_code, message = status.for_error(error), str(error)
    elif isinstance(error, KeyboardInterrupt) or isinstance(error.__cause__, KeyboardInterrupt):
        exit_code, message = status.INTERRUPTED, "interrupted"
    else:  # a declined prompt
        exit_code, message = status.REFUSED, "aborted"
    verdict = verify.FAILED if isinstance(error, JobFailed) else None
    return {"original_run": original, "verdict": verdict, "reproduced": False, "error": message, "exit_code": exit_code}


def _json(data: Mapping[str, Any]) -> str:
    """One JSON object; NaN and infinity (a diverged metric can be either) are written as strings."""
    return json.dumps(_plain(data), indent=2, sort_keys=True, allow_nan=False)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _to_stderr(text: str = "") -> None:
    click.echo(text, err=True)


def _stderr_writer():
    """write(bytes) to our stderr: the job's output when stdout is kept for --json."""
    stream = click.get_binary_stream("stderr")

    def write(chunk: bytes) -> None:
        try:
            sys.stderr.flush()
            stream.write(chunk)
            stream.flush()
        except (AttributeError, ValueError):  # a captured text stream
            sys.stderr.write(chunk.decode("utf-8", "replace"))

    return write


def show_plan(prepared, echo=click.echo, manifest: bool = True) -> None:
    """The plan: what runs, from where, what was recorded and what differs here."""
    replay_plan, record = prepared.replay_plan, prepared.record
    commit, patched = replay_plan.commit[:12], bool(replay_plan.patch.strip())
    echo("replay of run %s: commit %s%s" % (safe(record.run_id), commit, " + patch" if patched else ""))
    image = replay_plan.image
    where = "registry %s" % grants.registry(image.rsplit("@", 1)[0]) if "@" in image else "this host only"
    echo("image:     %s (%s)" % (safe(image), safe(where)))
    if replay_plan.image_ref and replay_plan.image_ref != image:
        echo("           recorded as %s" % safe(replay_plan.image_ref))
    echo("source:    %s" % safe(prepared.source))
    echo("record:    %s" % safe(prepared.trust.verification.line()))
    if prepared.credentials:
        echo(
            "tracking:  %s passed to %s for %s (the replayed command can read them)"
            % (
                ", ".join(prepared.credentials),
                safe(image),
                safe(strip_url_credentials(prepared.destination.tracking_uri)),
            )
        )
    for name in replay_plan.env_grant.passed:
        echo("env:       %s passed from your environment (--pass-env)" % safe(name))
    for name in replay_plan.env_grant.needs_pass_env:
        echo("env:       %s needs --pass-env %s (the record keeps no value)" % (safe(name), safe(name)))
    if prepared.mounts.offers:
        echo("recorded mounts (offered, not imposed):")
    for offer in prepared.mounts.offers:
        echo(
            "  %s -> %s%s  %s"
            % (
                safe(offer.source),
                safe(offer.target),
                " (ro)" if offer.read_only else "",
                _offer_state(prepared, offer),
            )
        )
    echo("drift (! blocks, * differs):\n" + drift.render(prepared.drift_items))
    mounted = [source for source in record.data if source.label == "mount"]
    if mounted:
        rows = [row for row in prepared.data.drift if row.label == "mount"]
        echo("data (! blocks):\n" + safe_lines(data.render(mounted, rows)))
    if prepared.data.beside.inputs:
        echo(safe_lines(prepared.data.beside.render(replay_plan.spec.workdir)))
    if not manifest:
        echo("%s: on stdout" % _what(prepared.engine.name))
        return
    echo(
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


def _confirm(prepared, echo=click.echo, prompt_on_stderr: bool = False):
    """Ask about each offered mount and each image concern, then the whole command."""
    for offer in prepared.mounts.offers:
        if offer.refusal or offer in prepared.mounts.approved:
            continue
        if click.confirm(
            "Mount %s at %s%s, as the original run did?"
            % (safe(offer.real), safe(offer.target), " read-only" if offer.read_only else " read-write"),
            err=prompt_on_stderr,
        ):
            prepared = prepared.approve([offer])
    for concern in prepared.trust.image_concerns:
        click.confirm("Run it anyway (%s)?" % safe(concern), abort=True, err=prompt_on_stderr)
    if prepared.mounts.approved:
        echo("mounted: " + ", ".join(safe(offer.bind()) for offer in prepared.mounts.approved))
    click.confirm("Replay run %s with this command?" % safe(prepared.record.run_id), abort=True, err=prompt_on_stderr)
    return prepared


def _what(engine: str) -> str:
    return {"slurm": "batch script", "kubernetes": "Job manifest"}.get(engine, "command")


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.rstrip("\n").splitlines())
