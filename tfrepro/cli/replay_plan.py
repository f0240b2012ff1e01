"""What `tfrepro replay` shows before it runs, and what it asks: the plan (show_plan), the
questions about each offered mount and image concern (confirm), and the MLflow UI links after.
Every string from the record goes through termsafe.safe."""

from __future__ import annotations

from typing import Mapping, Optional

import click

from tfrepro.redact import strip_url_credentials
from tfrepro.replay import data, drift, grants, plan
from tfrepro.termsafe import safe, safe_lines


def show_plan(prepared, echo=click.echo, manifest: bool = True) -> None:
    """The plan: what runs, from where, what was recorded and what differs here."""
    replay_plan, record = prepared.replay_plan, prepared.record
    commit, patched = replay_plan.commit[:12], bool(replay_plan.patch.strip())
    echo("replay of run %s: commit %s%s" % (safe(record.run_id), commit, " + patch" if patched else ""))
    image = replay_plan.image
    where = "registry %s" % grants.registry(image.rsplit("@", 1)[0]) if "@" in image else "this host only"
    echo("image:     %s (%s)" % (safe(image), safe(where)))
    if replay_plan.image_ref and replay_plan.image_ref != image:
        echo("           recorded as %s" % safe(replay_plan.image_ref))
    echo("source:    %s" % safe(prepared.source))
    echo("record:    %s" % safe(prepared.trust.verification.line()))
    if prepared.credentials:
        echo(
            "tracking:  %s passed to %s for %s (the replayed command can read them)"
            % (
                ", ".join(prepared.credentials),
                safe(image),
                safe(strip_url_credentials(prepared.destination.tracking_uri)),
            )
        )
    for name in replay_plan.env_grant.passed:
        echo("env:       %s passed from your environment (--pass-env)" % safe(name))
    for name in replay_plan.env_grant.needs_pass_env:
        echo("env:       %s needs --pass-env %s (the record keeps no value)" % (safe(name), safe(name)))
    if prepared.mounts.offers:
        echo("recorded mounts (offered, not imposed):")
    for offer in prepared.mounts.offers:
        echo(
            "  %s -> %s%s  %s"
            % (
                safe(offer.source),
                safe(offer.target),
                " (ro)" if offer.read_only else "",
                _offer_state(prepared, offer),
            )
        )
    echo("drift (! blocks, * differs):\n" + drift.render(prepared.drift_items))
    mounted = [source for source in record.data if source.label == "mount"]
    if mounted:
        rows = [row for row in prepared.data.drift if row.label == "mount"]
        echo("data (! blocks):\n" + safe_lines(data.render(mounted, rows)))
    if prepared.data.beside.inputs:
        echo(safe_lines(prepared.data.beside.render(replay_plan.spec.workdir)))
    if not manifest:
        echo("%s: on stdout" % _what(prepared.engine.name))
        return
    echo(
        "%s (%s = commit %s%s):\n%s"
        % (
            _what(prepared.engine.name),
            plan.CHECKOUT,
            commit,
            " with the recorded patch" if patched else "",
            _indent(safe_lines(prepared.preview())),
        )
    )


def _offer_state(prepared, offer) -> str:
    if offer.refusal:
        return "REFUSED: " + safe(offer.refusal)
    if offer in prepared.mounts.approved:
        return "mounted"
    return "not mounted unless you confirm (or --allow-recorded-mounts, or -v again)"


def confirm(prepared, echo=click.echo, prompt_on_stderr: bool = False):
    """Ask about each offered mount and each image concern, then the whole command."""
    for offer in prepared.mounts.offers:
        if offer.refusal or offer in prepared.mounts.approved:
            continue
        if click.confirm(
            "Mount %s at %s%s, as the original run did?"
            % (safe(offer.real), safe(offer.target), " read-only" if offer.read_only else " read-write"),
            err=prompt_on_stderr,
        ):
            prepared = prepared.approve([offer])
    for concern in prepared.trust.image_concerns:
        click.confirm("Run it anyway (%s)?" % safe(concern), abort=True, err=prompt_on_stderr)
    if prepared.mounts.approved:
        echo("mounted: " + ", ".join(safe(offer.bind()) for offer in prepared.mounts.approved))
    click.confirm("Replay run %s with this command?" % safe(prepared.record.run_id), abort=True, err=prompt_on_stderr)
    return prepared


def _what(engine: str) -> str:
    return {"slurm": "batch script", "kubernetes": "Job manifest"}.get(engine, "command")


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.rstrip("\n").splitlines())


def show_links(urls: Mapping[str, Optional[str]], echo) -> None:
    """The two runs' pages and their compare page in the MLflow UI (an http(s) server only)."""
    labels = (("original_url", "original:"), ("replay_url", "replay:  "), ("compare_url", "compare: "))
    shown = [(label, urls.get(key)) for key, label in labels if urls.get(key)]
    if shown:
        echo("in the MLflow UI:")
        for label, url in shown:
            echo("  %s %s" % (label, safe(url)))
