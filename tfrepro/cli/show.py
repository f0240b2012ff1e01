"""`tfrepro show RUN_ID`: a run's environment record as a grouped table (or --json)."""
from __future__ import annotations

import json
import os
import sys

import click


def use_color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def show_json(record) -> str:
    """The documented --json form: {"run", "environment" (as stored), "launch", "params",
    "metrics", "tags"}."""
    data = {
        "run": record.summary(),
        "environment": record.environment_json,
        "launch": record.launch_settings(),
        "params": dict(record.params),
        "metrics": dict(record.metrics),
        "tags": dict(record.tags),
    }
    return json.dumps(data, indent=2, sort_keys=True)


@click.command(name="show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON (environment.json as stored).")
@click.option("--packages", is_flag=True, help="List every Python package, not just the count.")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI [env MLFLOW_TRACKING_URI].")
def command(run_id, as_json, packages, tracking_uri):
    """Show where run RUN_ID ran: image, code, GPU, TensorFlow, packages, params, metrics."""
    from tfrepro.tracking import record as run_record

    record = run_record.load(run_record.client(tracking_uri, existing=True), run_id)
    if as_json:
        click.echo(show_json(record))
        return
    from tfrepro.inspect.render import render_show

    click.echo(render_show(record, show_packages=packages, color=use_color()), nl=False)
