"""`tfrepro doctor`: check this machine, one pass/warn/fail line per check with its fix."""

from __future__ import annotations

import json

import click

from tfrepro.cli.common_options import json_option, tracking_uri_option


@click.command(name="doctor")
@json_option("Print the checks as JSON.")
@tracking_uri_option
@click.pass_context
def command(ctx, as_json, tracking_uri):
    """Check TensorFlow, GPUs, driver/CUDA, numpy/protobuf, Docker, tracking, git and image.

    Exit 0 when nothing fails (warnings allowed), 1 otherwise.
    """
    from tfrepro.inspect.checks import FAIL, gather, run_checks

    checks = run_checks(gather(tracking_uri=tracking_uri))
    if as_json:
        click.echo(
            json.dumps({"ok": all(c.status != FAIL for c in checks), "checks": [c.to_dict() for c in checks]}, indent=2)
        )
    else:
        from tfrepro.cli.show import use_color
        from tfrepro.inspect.render import render_checks

        click.echo(render_checks(checks, use_color()), nl=False)
    if any(c.status == FAIL for c in checks):
        ctx.exit(1)
