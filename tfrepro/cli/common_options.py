"""Options that several commands take with the same meaning: --json, --tracking-uri (read from
the environment), --packages and --allowed-signers. `tfrepro run` and `tfrepro replay` take
theirs from engine_options.py."""

from __future__ import annotations

import click

from tfrepro import schema


def json_option(help_text: str):
    """--json, a flag passed as `as_json`; `help_text` says what is printed."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


tracking_uri_option = click.option(
    "--tracking-uri",
    envvar=schema.ENV_MLFLOW_TRACKING_URI,
    help="MLflow tracking URI [env %s]." % schema.ENV_MLFLOW_TRACKING_URI,
)

packages_option = click.option("--packages", is_flag=True, help="List every Python package, not just the count.")

allowed_signers_option = click.option(
    "--allowed-signers",
    metavar="FILE",
    help="ssh allowed_signers file to check the record's signature against (default: "
    "$TFREPRO_ALLOWED_SIGNERS, else git's gpg.ssh.allowedSignersFile).",
)
