"""The one voice: everything tfrepro prints goes through here, escaped (termsafe).

Library modules never print. They log to the `tfrepro` logger (`logging.getLogger(__name__)`):
INFO becomes a `tfrepro: ...` line on stderr, WARNING a `tfrepro: warning: ...` line. A record's
strings in a message are escaped like everything else. A library caller that wants silence
sets the `tfrepro` logger's level; the CLI installs the handler in main().
"""

from __future__ import annotations

import logging
import sys

import click

from tfrepro.termsafe import safe, safe_lines


class TerminalHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = safe(record.getMessage())  # a recorded newline is shown as \n: it starts no line
            prefix = "tfrepro: warning: " if record.levelno >= logging.WARNING else "tfrepro: "
            if getattr(record, "bare", False):  # a continuation line (an indented command, a table row)
                prefix = ""
            click.echo(prefix + message, err=True)
        except Exception:
            self.handleError(record)


def install() -> TerminalHandler:
    """Route the `tfrepro` logger to stderr, once per process."""
    logger = logging.getLogger("tfrepro")
    for handler in logger.handlers:
        if isinstance(handler, TerminalHandler):
            return handler
    handler = TerminalHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def echo(text: object = "") -> None:
    """A result line on stdout (what scripts parse), escaped line by line."""
    click.echo(safe_lines(text))


def error(text: object) -> None:
    click.echo("tfrepro: error: %s" % safe(text), err=True)


def note(text: object) -> None:
    click.echo("tfrepro: %s" % safe(text), err=True)


def stdout_writer():
    """write(bytes) to our stdout, in order with what click printed before: the job's output."""
    out = click.get_binary_stream("stdout")
    stdout = sys.stdout

    def write(chunk: bytes) -> None:
        try:
            stdout.flush()
            out.write(chunk)
            out.flush()
        except (AttributeError, ValueError):  # a captured text stream
            stdout.write(chunk.decode("utf-8", "replace"))

    return write
