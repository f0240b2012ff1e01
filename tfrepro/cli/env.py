"""`tfrepro env`: print this machine's environment record (what a run here would log)."""

from __future__ import annotations

import click

from tfrepro.cli.common_options import json_option, packages_option


@click.command(name="env")
@json_option("Print the record as JSON.")
@click.option(
    "--tensorflow",
    "import_tf",
    is_flag=True,
    help="Import TensorFlow first (slow) to add its build, devices and determinism.",
)
@packages_option
def command(as_json, import_tf, packages):
    """Print this machine's environment record: container image, git, GPU, TensorFlow, Python."""
    if import_tf:
        try:
            import tensorflow  # noqa: F401  (the tensorflow source reads it from sys.modules)
        except ImportError:
            pass  # recorded as "tensorflow not installed"
    from tfrepro.cli.show import use_color
    from tfrepro.fingerprint import collect
    from tfrepro.inspect.render import render_environment

    env = collect()
    click.echo(env.to_json() if as_json else render_environment(env, packages, use_color()), nl=as_json)
