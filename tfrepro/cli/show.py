"""`tfrepro show RUN_ID`: a run's environment record as a grouped table (or --json).

RUN_ID may be a model reference (models:/NAME/VERSION, models:/NAME@ALIAS, runs:/ID/PATH, a
logged model id): the run that produced it is shown (cli/refs.py). Against an http(s) tracking
server the run's page in the MLflow UI is named on stderr (and in --json as run.ui_url).
"""

from __future__ import annotations

import json
import os
import sys

import click

from tfrepro.cli.common_options import allowed_signers_option, json_option, packages_option, tracking_uri_option


def use_color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def show_json(record, verification=None) -> str:
    """The documented --json form: {"run", "environment" (as stored), "launch", "data" (the
    data fingerprints without per-file detail), "params", "metrics", "tags", "signature", "workers"}.
    JSON escapes control characters itself."""
    data = {
        "run": dict(record.summary(), ui_url=run_url(record)),
        "signature": verification
        and {"status": verification.status, "signer": verification.principal, "line": verification.line()},
        "environment": record.environment_json,
        "launch": record.launch_settings(),
        "data": [{k: v for k, v in d.to_dict().items() if k != "entries"} for d in record.data],
        "params": dict(record.params),
        "metrics": dict(record.metrics),
        "tags": dict(record.tags),
        "workers": getattr(record, "workers", None),  # tfrepro/workers.json of a multi-worker job, else null
    }
    return json.dumps(data, indent=2, sort_keys=True)


def run_url(record):
    """The run's page in the MLflow UI; None for a store with no web UI."""
    from tfrepro.tracking import ui

    return ui.run_url(record.tracking_uri, record.experiment_id, record.run_id)


@click.command(name="show")
@click.argument("run_id", metavar="RUN_OR_MODEL")
@json_option("Print the record as JSON (environment.json as stored).")
@packages_option
@tracking_uri_option
@allowed_signers_option
def command(run_id, as_json, packages, tracking_uri, allowed_signers):
    """Show where run RUN_ID ran: image, code, GPU, TensorFlow, packages, params, metrics."""
    from tfrepro import signing
    from tfrepro.cli import refs
    from tfrepro.tracking import record as run_record

    client = run_record.client(tracking_uri, existing=True)
    record = run_record.load(client, refs.run_id(client, run_id))
    refs.show_link("in the MLflow UI", run_url(record))
    verification = signing.verify_record(record, signing.allowed_signers_file(allowed_signers))
    if as_json:
        click.echo(show_json(record, verification))
        return
    from tfrepro.inspect.render import render_show

    click.echo(render_show(record, show_packages=packages, color=use_color(), signature=verification.line()), nl=False)
