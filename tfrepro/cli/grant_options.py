"""The options of `tfrepro replay` that grant what a record may not decide (replay/grants.py
Options): variables passed in, mounts, an image from elsewhere, the signature required."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict

import click

from tfrepro.cli.common_options import allowed_signers_option
from tfrepro.cli.engine_options import stack, volume_option
from tfrepro.replay import grants

grant_options = stack(
    click.option(
        "--pass-env",
        "pass_env",
        multiple=True,
        metavar="NAME",
        help="Pass this variable's value from your environment (repeatable); nothing else of yours is passed.",
    ),
    click.option(
        "-e", "--env", "env_items", multiple=True, metavar="NAME=VALUE", help="Set a variable in the container."
    ),
    volume_option("Mount this (a recorded mount given again is mounted without asking)."),
    click.option("--allow-recorded-mounts", is_flag=True, help="Mount the run's recorded mounts without asking."),
    click.option(
        "--allow-untrusted-image",
        is_flag=True,
        help="Run an image outside TFREPRO_TRUSTED_REGISTRIES, or from another repository than recorded.",
    ),
    allowed_signers_option,
    click.option("--require-signed", is_flag=True, help="Refuse a record not signed by a trusted key."),
    click.option("--mount-docker-socket", is_flag=True, help="Allow a recorded Docker socket mount."),
)


def pop(kwargs: Dict[str, Any], yes: bool) -> grants.Options:
    """The grants out of a command's keyword arguments (each option is named as its field);
    `yes` (--yes) is the command's own option, shown first."""
    names = [field.name for field in dataclasses.fields(grants.Options) if field.name != "yes"]
    return grants.Options(yes=yes, **{name: kwargs.pop(name) for name in names})
