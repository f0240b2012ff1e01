"""`tfrepro replay` (stub: to be written)."""
import click

from tfrepro.errors import UsageError


@click.command(name="replay", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args):
    """Not implemented yet."""
    raise UsageError("'tfrepro replay' is not implemented yet")
