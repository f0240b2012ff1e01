"""Text output for env, show, diff and doctor: at most 100 columns, colour only when asked.

Pure: every function returns a string; the CLI decides colour (a terminal and no NO_COLOR).
"""

from __future__ import annotations

import datetime
import json
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import click

from tfrepro import schema
from tfrepro.environment import Environment
from tfrepro.inspect.compare import GROUPS, RANKS, Difference, counts, split_package
from tfrepro.termsafe import safe
from tfrepro.tracking.card import gibibytes, gpu_summary, python_summary, system_summary

WIDTH = 100
KEY_WIDTH = 22
RANK_COLOURS = {"high": "red", "medium": "yellow", "low": None, "result": "cyan"}
STATUS_COLOURS = {"pass": "green", "warn": "yellow", "fail": "red", "skip": None}


def paint(text: str, color: bool, **style: Any) -> str:
    return click.style(text, **style) if color and any(style.values()) else text


def shorten(text: str, width: int, other: str = "") -> str:
    """Cut text to width keeping its head (digests and commits are known by their start),
    or its tail when the head it shares with `other` would fill the width."""
    if len(text) <= width:
        return text
    common = 0
    while common < min(len(text), len(other)) and text[common] == other[common]:
        common += 1
    if other and common > width - 15:
        return "..." + text[len(text) - (width - 3) :]
    return text[: width - 3] + "..."


def wrap(text: str, width: int) -> List[str]:
    """Hard-wrap at width, at a space, else before an `@` (repo | @sha256:...) or after a `/`,
    else anywhere."""
    lines: List[str] = []
    for paragraph in text.splitlines() or [""]:
        while len(paragraph) > width:
            cut = paragraph.rfind(" ", 0, width + 1)
            if cut <= width // 4:
                cut = max(paragraph.rfind("@", 0, width + 1), paragraph.rfind("/", 0, width) + 1)
            cut = cut if cut > width // 4 else width
            lines.append(paragraph[:cut].rstrip())
            paragraph = paragraph[cut:].lstrip()
        lines.append(paragraph)
    return lines


def section(title: str, rows: Sequence[Tuple[str, Any]], color: bool) -> List[str]:
    """A titled block of `key  value` lines; a value too long for its column moves below."""
    out = [paint(title, color, bold=True)]
    indent = 2 + KEY_WIDTH + 1
    for key, value in rows:  # keys and values come from records: escaped (termsafe)
        key = safe(key)
        shown = _shown(value)
        text = "-" if shown is None else safe(shown)
        key_text = ("  %-" + str(KEY_WIDTH) + "s ") % key
        if len(key) <= KEY_WIDTH and len(text) <= WIDTH - indent and "\n" not in text:
            out.append(key_text + text)
            continue
        if 2 + len(key) + 1 + len(text) <= WIDTH and "\n" not in text:  # a long key, a short value
            out.append("  %s %s" % (key, text))
            continue
        out.append("  " + key)
        # indented under its key, except a long word (a digest) that needs the width to stay whole
        pad = 4 if len(text) <= WIDTH - 4 or " " in text else 2
        out.extend(" " * pad + line for line in wrap(text, WIDTH - pad))
    return out


def _when(ms: Optional[int]) -> Optional[str]:
    if not ms:
        return None
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _constraints(value: str) -> str:
    """NVIDIA_REQUIRE_CUDA: the CUDA part, and a count of the driver-branch pairs (--json keeps all)."""
    words = value.split()
    brands = [w for w in words if w.startswith("brand=")]
    if len(brands) < 4:
        return value
    return " ".join(w for w in words if not w.startswith("brand=")) + " (+%d driver-branch constraints)" % len(brands)


def _shown(value: Any) -> Optional[str]:
    """A recorded value as a row shows it: a flag as yes/no, a list comma-separated; None when empty."""
    if value is None or value == "" or value == ():
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return ", ".join(str(item) for item in value)
    return str(value)


def environment_sections(env: Environment, show_packages: bool) -> List[Tuple[str, List[Tuple[str, Any]]]]:
    container, git, gpu, tf, python, sysinfo, proc = (
        env.container,
        env.git,
        env.gpu,
        env.tensorflow,
        env.python,
        env.system,
        env.process,
    )
    groups: List[Tuple[str, List[Tuple[str, Any]]]] = []
    rows: List[Tuple[str, Any]]
    if container:
        rows = [
            ("ref", container.image_ref),
            ("digest", container.image_digest),
            ("id", container.image_id),
            ("digest source", container.digest_source),
            ("in container", container.in_container),
            ("runtime", container.runtime),
            ("evidence", container.evidence),
        ]
        rows += [(k, _constraints(v) if k == "NVIDIA_REQUIRE_CUDA" else v) for k, v in sorted(container.ngc.items())]
        groups.append(("Image", rows))
    if git:
        rows = [
            ("commit", git.commit),
            ("branch", git.branch),
            ("remote", git.remote_url),
            ("dirty", git.dirty),
            ("patch sha256", git.patch_sha256),
            ("untracked", "%d files" % len(git.untracked) if git.untracked else None),
            ("workdir", git.workdir),
            ("root", git.root),
        ]
        groups.append(("Code", rows))
    if gpu:
        rows = gpu_summary(gpu)
        for d in gpu.devices:
            facts = [
                d.name,
                gibibytes(d.memory_total_bytes),
                d.compute_capability and "cc " + d.compute_capability,
                d.mig_mode and "MIG " + d.mig_mode,
                d.pci_bus_id,
            ]
            rows.append(("GPU %d" % d.index, ", ".join(f for f in facts if f)))
        if gpu.reason:
            rows.append(("note", gpu.reason))
        groups.append(("GPU", rows))
    if tf:
        rows = [
            ("version", tf.version),
            ("CUDA (build)", tf.cuda_build),
            ("cuDNN (build)", tf.cudnn_build),
            ("devices", tf.devices),
            ("mixed precision", tf.mixed_precision_policy),
            ("imported", tf.imported),
        ]
        groups.append(("TensorFlow", rows))
        rows = [("seed", tf.seed)]
        rows += [(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in sorted(tf.determinism.items())]
        groups.append(("Determinism", rows))
    if python:
        rows = python_summary(python) + [("packages", "%d installed" % len(python.packages))]
        if show_packages:
            rows += [(name, version or "-") for name, version in map(split_package, python.packages)]
        groups.append(("Python", rows))
    if proc:
        groups.append(
            (
                "Process",
                [("command", " ".join(proc.argv) or None), ("cwd", proc.cwd), ("entry script", proc.entry_script)],
            )
        )
    if sysinfo:
        groups.append(("System", system_summary(sysinfo)))
    if env.scheduler:
        scheduler = env.scheduler
        rows = [("kind", scheduler.kind)]
        rows += [(name.replace("_", " "), getattr(scheduler, name)) for name in schema.SCHEDULER_FIELDS]
        groups.append(("Scheduler", rows))
    if env.reasons:
        groups.append(("Missing or partial", sorted(env.reasons.items())))
    return groups


def _experiment(record) -> str:
    if record.experiment_name:
        return "%s (id %s)" % (record.experiment_name, record.experiment_id)
    return record.experiment_id


def _requested(record) -> List[Tuple[str, str]]:
    """The experiment the script's ReproCallback asked for, when `tfrepro run` put the run elsewhere."""
    from tfrepro.tracking.launched import REQUESTED_TAG

    requested = record.tags.get(REQUESTED_TAG)
    if not requested or requested == record.experiment_name:
        return []
    return [
        ("asked for", "%s (by the script; not used under tfrepro run)" % requested),
        ("to put it there", "tfrepro run --experiment %s ..." % requested),
    ]


def worker_rows(record) -> List[Tuple[str, str]]:
    """A multi-worker job's workers (tfrepro/workers.json), one row each, and whether they agree."""
    gathered = getattr(record, "workers", None) or {}
    count = gathered.get("workers") or (record.tags or {}).get(schema.LAUNCH_WORKERS)
    if not count or str(count) == "1":
        return []
    rows = [("count", str(count))]
    for worker in gathered.get("records") or ():
        gpus = "%s x %s" % (worker.get("gpu_count") or 0, worker.get("gpu_model") or "no GPU")
        digest = str(worker.get("image_digest") or worker.get("image_id") or "-")
        facts = [
            worker.get("host") or "?",
            gpus,
            "driver %s" % (worker.get("driver") or "-"),
            "cuda %s" % (worker.get("cuda_driver") or "-"),
            digest.split("@")[-1][:19],
        ]
        rows.append(("worker %s" % worker.get("index"), ", ".join(facts)))
    if gathered.get("missing"):
        rows.append(("no record from", ", ".join("worker %s" % index for index in gathered["missing"])))
    if gathered:
        disagree = gathered.get("disagree") or []
        rows.append(("agree", "yes" if not disagree else "NO: they differ in %s" % ", ".join(disagree)))
    return rows


def _blocks(groups, color: bool) -> str:
    lines: List[str] = []
    for title, rows in groups:
        lines += section(title, rows, color) + [""]
    return "\n".join(lines).rstrip() + "\n"


def render_environment(env: Environment, show_packages: bool = False, color: bool = False) -> str:
    """`tfrepro env`: this machine's record, one block per source, then what is missing and why.
    Unlike show (a record, where "-" says the run did not know), unknown facts are left out."""
    head = "tfrepro %s, collected %s\n\n" % (env.tfrepro_version or "?", env.collected_at or "?")
    groups = [
        (title, [row for row in rows if _shown(row[1]) is not None])
        for title, rows in environment_sections(env, show_packages)
    ]
    return head + _blocks([group for group in groups if group[1]], color)


def render_show(record, show_packages: bool = False, color: bool = False, signature: Optional[str] = None) -> str:
    env = record.environment
    run_rows = (
        [
            ("run id", record.run_id),
            ("name", record.run_name),
            ("record", signature),
            ("experiment", _experiment(record)),
        ]
        + _requested(record)
        + [
            ("status", record.status),
            ("started", _when(record.start_time)),
            ("tracking uri", record.tracking_uri),
            ("collected", env.collected_at or None),
            ("tfrepro", "%s (schema %s)" % (env.tfrepro_version or "?", env.schema)),
            ("record from", "tags only (no environment.json)" if record.source == "tags" else None),
        ]
    )
    groups = [("Run", [r for r in run_rows if r[1] is not None])]
    groups += environment_sections(env, show_packages)
    launch = record.launch_settings()
    if launch:
        groups.append(("Launch", [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in sorted(launch.items())]))
    workers = worker_rows(record)
    if workers:
        groups.append(("Workers", workers))
    if getattr(record, "data", ()):  # data fingerprints: one line each, as `tfrepro run` printed them
        groups.append(("Data", [(d.label, d.summary()[len(d.label) + 1 :]) for d in record.data]))
    groups.append(("Params", sorted(record.params.items()) or [("(none)", "")]))
    groups.append(("Final metrics", [(k, "%.6g" % v) for k, v in sorted(record.metrics.items())] or [("(none)", "")]))
    return _blocks(groups, color)


def _diff_value(diff: Difference, width: int) -> List[str]:
    """One line `old -> new` when it fits, else an a/b pair of lines."""
    a, b = safe(diff.a) if diff.a is not None else "-", safe(diff.b) if diff.b is not None else "-"
    if diff.group == "packages" and diff.kind in ("added", "removed"):
        return ["%s %s" % (diff.kind, b if diff.kind == "added" else a)]
    if diff.equal:
        return [shorten(a, width)]
    one = "%s -> %s" % (a, b)
    if len(one) <= width:
        return [one]
    return ["a: " + shorten(a, width - 3, b), "b: " + shorten(b, width - 3, a)]


def render_diff(
    diffs: Iterable[Difference], label_a: str, label_b: str, show_all: bool = False, color: bool = False
) -> str:
    diffs = list(diffs)
    changed = [d for d in diffs if not d.equal]
    n = counts(diffs)
    summary = ", ".join("%d %s" % (n[r], r) for r in RANKS if n[r])
    lines = ["a: %s" % safe(label_a), "b: %s" % safe(label_b), ""]
    if not changed:
        lines.append("no differences")
    else:
        lines.append("%d difference%s (%s)" % (len(changed), "" if len(changed) == 1 else "s", summary))
    field_width, group_width = 24, 12
    indent = 2 + group_width + 1 + field_width + 1
    for rank in RANKS:
        block = [d for d in changed if d.rank == rank]
        if not block:
            continue
        lines += ["", paint(rank.upper(), color, fg=RANK_COLOURS[rank], bold=True)]
        for d in block:
            values = _diff_value(d, WIDTH - indent)
            head = "  %-*s %-*s " % (group_width, safe(d.group), field_width, shorten(safe(d.field), field_width))
            lines.append(head + values[0])
            lines.extend(" " * indent + v for v in values[1:])
    if show_all:
        order = {g: i for i, g in enumerate(GROUPS)}
        same = sorted((d for d in diffs if d.equal), key=lambda d: order.get(d.group, len(order)))
        same_packages = [d for d in same if d.group == "packages"]
        lines += ["", paint("EQUAL", color, bold=True)]
        for d in same:
            if d.group != "packages":
                head = "  %-*s %-*s " % (group_width, safe(d.group), field_width, shorten(safe(d.field), field_width))
                lines.append(head + _diff_value(d, WIDTH - indent)[0])
        if same_packages:
            lines.append(
                "  %-*s %d packages with the same version (--json lists them)"
                % (group_width, "packages", len(same_packages))
            )
    return "\n".join(lines) + "\n"


def render_checks(checks, color: bool = False) -> str:
    lines = []
    for check in checks:
        label = paint("%-4s" % check.status.upper(), color, fg=STATUS_COLOURS[check.status], bold=True)
        head = "%s  %-12s " % (label, check.name)
        body = wrap(safe(check.message), WIDTH - 19)
        lines.append(head + body[0])
        lines.extend(" " * 19 + line for line in body[1:])
        if check.fix and check.status in ("warn", "fail"):
            fix = wrap("fix: " + safe(check.fix), WIDTH - 19)
            lines.extend(" " * 19 + line for line in fix)
    n = {s: sum(1 for c in checks if c.status == s) for s in STATUS_COLOURS}
    lines += ["", "%d pass, %d warn, %d fail, %d skipped" % (n["pass"], n["warn"], n["fail"], n["skip"])]
    return "\n".join(lines) + "\n"
