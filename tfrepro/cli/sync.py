"""`tfrepro sync`: upload runs left in the local spool (tracking server was down)."""

from __future__ import annotations

import os

import click

from tfrepro.errors import TrackingError, UsageError


@click.command(name="sync")
@click.argument("runs", nargs=-1)
@click.option(
    "--spool-dir", metavar="DIR", help="Spool directory (default: $TFREPRO_SPOOL_DIR, else ~/.cache/tfrepro/spool)."
)
@click.option("--tracking-uri", metavar="URI", help="Upload here instead of the server each run recorded.")
@click.option("--list", "list_only", is_flag=True, help="Only list what is waiting; upload nothing.")
def command(runs, spool_dir, tracking_uri, list_only):
    """Upload spooled runs (all, or the given run ids / spool files), each point once."""
    from tfrepro.redact import strip_url_credentials
    from tfrepro.termsafe import safe
    from tfrepro.tracking import spool
    from tfrepro.tracking.sync import sync_all

    directory = spool.spool_dir(spool_dir)
    paths = [_resolve(directory, run) for run in runs] if runs else spool.pending_files(directory)
    if not paths:
        click.echo("nothing to sync in %s" % directory)
        return
    if list_only:
        for path in paths:
            header = spool.read_header(path)
            uri = strip_url_credentials(str(header.get("tracking_uri") or ""))
            click.echo(
                "%s  run %s  %s  %d bytes" % (safe(path), safe(header.get("run_id")), safe(uri), os.path.getsize(path))
            )
        return
    failures = []
    for result in sync_all(directory, paths, tracking_uri):
        name = os.path.basename(result.path)
        if result.failure:
            failures.append(result.failure)
            click.echo("%s: not uploaded: %s" % (safe(name), safe(result.failure)), err=True)
        elif result.skipped_reason:
            click.echo("%s: skipped (%s)" % (safe(name), safe(result.skipped_reason)))
        else:
            counts = result.counts
            click.echo(
                "%s -> run %s%s: %d points (%d already there), %d params, %d tags, %d files"
                % (
                    safe(name),
                    safe(result.run_id),
                    " (created)" if result.created else "",
                    counts.get("points", 0),
                    counts.get("skipped", 0),
                    counts.get("params", 0),
                    counts.get("tags", 0),
                    counts.get("files", 0),
                )
            )
            for error in result.errors:
                click.echo("%s: rejected by the server: %s" % (safe(name), safe(error)), err=True)
            for refused in result.refused:
                click.echo("%s: not uploaded: %s" % (safe(name), safe(refused)), err=True)
    if failures:
        raise TrackingError("%d of %d spool files not uploaded: %s" % (len(failures), len(paths), safe(failures[0])))


def _resolve(directory, run):
    if os.path.isfile(run):
        return run
    path = os.path.join(directory, run + ".jsonl")
    if not os.path.isfile(path):
        raise UsageError("no spooled run %r in %s" % (run, directory))
    return path
