"""`tfrepro run` (stub: to be written)."""
import click

from tfrepro.errors import UsageError


@click.command(name="run", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args):
    """Not implemented yet."""
    raise UsageError("'tfrepro run' is not implemented yet")
