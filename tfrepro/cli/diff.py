"""`tfrepro diff RUN_A RUN_B` / `tfrepro diff RUN --here`: what differs, ranked.

Exit code as with diff(1): 0 equal, 1 different, 2 error. Final metrics are shown but do not
count as a difference. A run may be named by a model reference (cli/refs.py); against an http(s)
tracking server MLflow's compare page for the two is named on stderr (and in --json).
"""

from __future__ import annotations

import json

import click

from tfrepro.cli.common_options import json_option, tracking_uri_option
from tfrepro.errors import UsageError


def _side(record=None):
    if record is None:
        return {"here": True, "run_id": None}
    return {"here": False, "run_id": record.run_id, "run_name": record.run_name, "experiment_id": record.experiment_id}


def compare_url(record_a, record_b):
    """MLflow's compare page for the two runs; None for a store with no web UI, or --here."""
    from tfrepro.tracking import ui

    if record_b is None:
        return None
    runs = [record_a.run_id, record_b.run_id]
    return ui.compare_url(record_a.tracking_uri, runs, [record_a.experiment_id, record_b.experiment_id])


def diff_json(diffs, record_a, record_b) -> str:
    from tfrepro.inspect.compare import counts, differs

    return json.dumps(
        {
            "a": _side(record_a),
            "b": _side(record_b),
            "compare_url": compare_url(record_a, record_b),
            "equal": not differs(diffs),
            "counts": counts(diffs),
            "differences": [d.to_dict() for d in diffs],
        },
        indent=2,
        sort_keys=True,
    )


def here_environment():
    """This machine's record, with TensorFlow imported so its CUDA/cuDNN build is known."""
    import dataclasses
    import os

    from tfrepro import collect_environment

    env = collect_environment()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no CUDA loader chatter on stderr
    try:
        from tfrepro.fingerprint import tensorflow as tf_source

        return dataclasses.replace(env, tensorflow=tf_source.collect(import_tensorflow=True))
    except Exception:  # no TensorFlow here: the metadata-only record says so
        return env


def _label(record) -> str:
    name = " (%s)" % record.run_name if record.run_name else ""
    return "run %s%s" % (record.run_id, name)


@click.command(name="diff")
@click.argument("runs", nargs=-1, required=True)
@click.option("--here", is_flag=True, help="Compare the run with this machine.")
@click.option("--all", "show_all", is_flag=True, help="Also show the fields that are equal.")
@json_option("Print the comparison as JSON.")
@tracking_uri_option
@click.pass_context
def command(ctx, runs, here, show_all, as_json, tracking_uri):
    """Show what differs between two runs' environments (or a run and this machine).

    Ranked by how likely a difference changes results. Exit 0: equal, 1: different, 2: error.
    """
    from tfrepro.cli import refs
    from tfrepro.inspect import compare
    from tfrepro.tracking import record as run_record

    if here and len(runs) != 1:
        raise UsageError("diff --here takes one run id")
    if not here and len(runs) != 2:
        raise UsageError("diff takes two run ids (or one with --here)")
    client = run_record.client(tracking_uri, existing=True)
    record_a = run_record.load(client, refs.run_id(client, runs[0]))
    if here:
        record_b = None
        diffs = compare.compare(record_a.environment, here_environment(), include_equal=show_all)
        # this process is `tfrepro diff`, not the training command: its process facts mean nothing
        diffs = [d for d in diffs if d.group != "process"]
    else:
        record_b = run_record.load(client, refs.run_id(client, runs[1]))
        refs.show_link("compare them in the MLflow UI", compare_url(record_a, record_b))
        diffs = compare.compare_runs(record_a, record_b, include_equal=show_all)
    if as_json:
        click.echo(diff_json(diffs, record_a, record_b))
    else:
        from tfrepro.cli.show import use_color
        from tfrepro.inspect.render import render_diff

        label_b = "this machine" if here else _label(record_b)
        click.echo(render_diff(diffs, _label(record_a), label_b, show_all, use_color()), nl=False)
    if compare.differs(diffs):
        ctx.exit(1)
