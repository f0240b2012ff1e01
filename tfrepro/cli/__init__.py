"""The `tfrepro` command. Each subcommand lives in its own module and stays thin.

main() catches tfrepro's own errors and prints one line: no tracebacks for bad input. Exit
codes: tfrepro/cli/status.py.
"""

from __future__ import annotations

import sys

import click

from tfrepro import __version__
from tfrepro.cli import output, status
from tfrepro.errors import TfreproError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tfrepro")
def cli():
    """Record where a Keras run ran, in MLflow, and replay it in that exact container."""


def _register():
    from tfrepro.cli import diff, doctor, env, replay, run, show, sync

    for module in (env, run, replay, show, diff, doctor, sync):
        cli.add_command(module.command)


def main(argv=None) -> int:
    """Run the CLI in-process and return the exit code (tests call main([...])).

    A command that returns a non-zero code without an error (diff -> 1) calls ctx.exit(code):
    outside standalone mode click.main returns that code.
    """
    output.install()
    try:
        code = cli.main(args=argv, prog_name="tfrepro", standalone_mode=False)
    except TfreproError as exc:  # its message may quote a record: escaped (termsafe)
        output.error(exc)
        return status.for_error(exc)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            output.note("interrupted")
            return status.INTERRUPTED
        output.note("aborted")
        return status.REFUSED
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        output.error(exc.format_message())
        return status.USAGE
    except KeyboardInterrupt:
        output.note("interrupted")
        return status.INTERRUPTED
    return code if isinstance(code, int) else 0


_register()


if __name__ == "__main__":
    sys.exit(main())
