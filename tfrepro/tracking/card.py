"""The run description's cards and the readable environment artifact. Pure.

MLflow shows a run's description (the tag mlflow.note.content) as markdown at the top of its
page. tfrepro writes its blocks there, each between markers that MLflow's renderer hides
(sanitize-html drops HTML comments), so that text a user wrote before or after survives:

    <!-- tfrepro:card -->      the environment card: image, commit, GPUs, CUDA, TensorFlow,
    ...                        Python, seed, data, engine, the replay command
    <!-- /tfrepro:card -->

    block(name, body)          a block with its markers
    merge(description, block)  the description with that block replaced in place, or appended;
                               idempotent, and within the tag's size limit
    environment_card(env, run_id, ...)   the card block (cut to CARD_LIMIT, least useful lines first)
    data_line(sources, tags)   the data inputs in one line
    environment_markdown(env, ...)       tfrepro/environment.md: the whole record, for a person

Every recorded value is untrusted: it goes through tfrepro.markdown, which escapes it to text.
"""

from __future__ import annotations

import re
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

from tfrepro import markdown as md
from tfrepro import schema
from tfrepro.environment import Environment

CARD_LIMIT = 3000  # characters of the card block: MLflow takes 5000-8000 per tag, users write too
VALUE_LIMIT = 300  # characters of one recorded value shown in a card, before escaping
CUT_NOTE = "\u2026 more in " + schema.ENVIRONMENT_MD


def open_marker(name: str) -> str:
    return "<!-- tfrepro:%s -->" % name


def close_marker(name: str) -> str:
    return "<!-- /tfrepro:%s -->" % name


def block(name: str, body: str) -> str:
    """`body` (markdown) between the markers of block `name`."""
    return "%s\n%s\n%s" % (open_marker(name), body.strip("\n"), close_marker(name))


def _block_re(name: str):
    opening, closing = re.escape(open_marker(name)), re.escape(close_marker(name))
    # the body holds no second opening marker: a marker a user left alone never swallows text
    return re.compile("%s((?:(?!%s).)*?)%s" % (opening, opening, closing), re.S)


def _name(block_text: str) -> str:
    found = re.match(r"<!-- tfrepro:([a-z]+) -->", block_text)
    if not found:
        raise ValueError("not a tfrepro block: it must start with <!-- tfrepro:NAME -->")
    return found.group(1)


def find_block(description: Optional[str], name: str) -> Optional[str]:
    """The body of block `name` in a description, None when it has none."""
    found = _block_re(name).search(description or "")
    return found.group(1).strip("\n") if found else None


def merge(
    description: Optional[str],
    block_text: str,
    limit: int = schema.MAX_TAG_VALUE,
    before: Optional[str] = None,
    after: Optional[str] = None,
) -> str:
    """The description with `block_text` in place of its block of the same name; a new block goes
    before block `before` or after block `after` when the description has it, else after the
    user's text. merge(merge(d, b), b) == merge(d, b). When the result would pass `limit`
    (MLflow's tag value limit), the description is returned as it was."""
    description = description or ""
    pattern = _block_re(_name(block_text))
    if pattern.search(description):
        first = [True]

        def replace(match) -> str:
            if first[0]:
                first[0] = False
                return block_text
            return ""  # a duplicate (two writers, or a copy-paste): one block stays

        merged = pattern.sub(replace, description)
    else:
        anchor_before = _block_re(before).search(description) if before else None
        anchor_after = _block_re(after).search(description) if after and not anchor_before else None
        if anchor_before:
            at = anchor_before.start()
            merged = description[:at] + block_text + "\n\n" + description[at:]
        elif anchor_after:
            at = anchor_after.end()
            merged = description[:at] + "\n\n" + block_text + description[at:]
        elif description.strip():
            merged = description.rstrip("\n") + "\n\n" + block_text + "\n"
        else:
            merged = block_text + "\n"
    return merged if len(merged) <= limit else description


def remove(description: Optional[str], name: str) -> str:
    """The description without block `name`."""
    return _block_re(name).sub("", description or "")


def _v(value) -> str:
    """A recorded value as text, shortened."""
    return md.text(md.shorten("" if value is None else str(value), VALUE_LIMIT))


def _c(value) -> str:
    """A recorded identifier (digest, commit, command) as code, shortened."""
    return md.code(md.shorten(str(value), VALUE_LIMIT))


def _item(label: str, value: str) -> str:
    return "- %s: %s" % (md.bold(label), value)


def image_text(env: Environment) -> str:
    c = env.container
    if not c or not (c.image_digest or c.image_ref):
        why = "no container detected" if not c or not c.in_container else "image not known"
        return md.text("none (%s)" % why)
    if c.image_digest:
        return _c(c.image_digest)
    return "%s %s" % (_c(c.image_ref), md.text("(no digest: not pullable by digest)"))


def commit_text(env: Environment, patch_withheld: bool = False) -> str:
    g = env.git
    if not g or not g.commit:
        return md.text("not in a git repository")
    out = _c(g.commit)
    if g.branch:
        out += " %s %s" % (md.text("on"), _c(g.branch))
    if g.dirty:
        if patch_withheld:
            out += " " + md.text("\u2014 dirty: uncommitted changes, patch withheld (kept off the server)")
        else:
            out += " %s %s" % (md.text("\u2014 dirty: uncommitted changes in"), md.code(schema.GIT_PATCH))
    return out


def gpu_models(env: Environment) -> str:
    names = sorted({d.name for d in env.gpu.devices if d.name}) if env.gpu else []
    return ", ".join(names)


def gpu_text(env: Environment) -> str:
    gpu = env.gpu
    if not gpu or not gpu.count:
        return md.text("none" + (" (%s)" % gpu.reason if gpu and gpu.reason else ""))
    parts = ["%d \u00d7 %s" % (gpu.count, gpu_models(env) or "GPU")]
    if gpu.driver_version:
        parts.append("driver %s" % gpu.driver_version + (" (CUDA %s)" % gpu.cuda_driver if gpu.cuda_driver else ""))
    return _v(", ".join(parts))


def cuda_text(env: Environment) -> str:
    tf = env.tensorflow
    gpu = env.gpu
    parts = []
    if gpu and gpu.cuda_driver:
        parts.append("driver supports CUDA %s" % gpu.cuda_driver)
    if tf and (tf.cuda_build or tf.cudnn_build):
        parts.append("TensorFlow built for CUDA %s, cuDNN %s" % (tf.cuda_build or "?", tf.cudnn_build or "?"))
    return _v("; ".join(parts)) if parts else md.text("not recorded")


def determinism_text(env: Environment, seed=None) -> str:
    tf = env.tensorflow
    seed = seed if seed is not None else (tf.seed if tf else None)
    parts = ["seed %s" % seed if seed is not None else "no seed"]
    if tf and tf.imported:
        parts.append("op determinism " + ("on" if (tf.determinism or {}).get("op_determinism") else "off"))
    else:
        parts.append("op determinism unknown")
    return _v(", ".join(parts))


def data_line(sources: Sequence = (), tags: Optional[Mapping[str, str]] = None) -> str:
    """The data inputs in one line, plain text: the fingerprinted sources (DataSource.summary)
    and what fit() was given (the tfrepro.input.<context>.* tags); "" when nothing is known."""
    parts = [s.summary() for s in sources]
    tags = tags or {}
    contexts = sorted(
        {k[len(schema.INPUT_PREFIX) :].rsplit(".", 1)[0] for k in tags if k.startswith(schema.INPUT_PREFIX)}
    )
    for context in contexts:
        fields = [tags.get("%s%s.%s" % (schema.INPUT_PREFIX, context, f)) or "" for f in ("kind", "shape", "digest")]
        what = " ".join(x for x in fields[:2] + [fields[2][:19]] if x)
        parts.append("fit() %s: %s" % (context, what or "recorded"))
    return "; ".join(parts)


def environment_card(
    env: Environment,
    run_id: str,
    engine: Optional[str] = None,
    data: str = "",
    seed=None,
    patch_withheld: bool = False,
    environment_url: Optional[str] = None,
    limit: int = CARD_LIMIT,
) -> str:
    """The card block for the run's description: where it ran, and the command that replays it.

    engine: what ran it (docker, podman, slurm, kubernetes; None: started by hand); data: from
    data_line(); seed: the launch seed when `tfrepro run --seed` set it; environment_url: the
    UI address of tfrepro/environment.md (ui.artifact_url), linked from the card's title.
    """
    tf, py = env.tensorflow, env.python
    title = md.link("Environment recorded by tfrepro", environment_url)  # text without a URL
    lines: List[Tuple[int, str]] = [  # (priority: lower stays first when cut, line)
        (0, (title if environment_url else md.bold("Environment recorded by tfrepro")) + "\n"),
        (0, _item("Image", image_text(env))),
        (0, _item("Commit", commit_text(env, patch_withheld))),
        (1, _item("GPUs", gpu_text(env))),
        (1, _item("CUDA", cuda_text(env))),
        (
            1,
            _item(
                "TensorFlow",
                "%s %s %s"
                % (
                    _v((tf.version if tf else None) or "?"),
                    md.bold("Python") + ":",
                    _v((py.version if py else "") or "?"),
                ),
            ),
        ),
        (1, _item("Determinism", determinism_text(env, seed))),
        (2, _item("Data", _v(data) if data else md.text("no data fingerprinted"))),
        (2, _item("Ran on", _v(engine) if engine else md.text("started directly (no tfrepro engine)"))),
        (0, _item("Replay", md.code("tfrepro replay %s" % run_id))),
    ]
    return block(schema.CARD_BLOCK, _fit_ranked(lines, limit - 60))


def _fit_ranked(lines: Sequence[Tuple[int, str]], limit: int) -> str:
    """The lines in order, leaving out the lowest-priority ones (then the longest) to fit."""
    keep = list(range(len(lines)))
    while keep and sum(len(lines[i][1]) + 1 for i in keep) + len(CUT_NOTE) + 1 > limit:
        drop = max(keep, key=lambda i: (lines[i][0], len(lines[i][1])))
        keep.remove(drop)
    out = [lines[i][1] for i in keep]
    if len(keep) < len(lines):
        out.append(md.text(CUT_NOTE))
    return "\n".join(out)


# -- tfrepro/environment.md ---------------------------------------------------------------------


def gpu_summary(gpu) -> List[Tuple[str, object]]:
    """The GPU record's own fields as (label, value), for environment.md and `tfrepro show`."""
    return [
        ("count", gpu.count),
        ("driver", gpu.driver_version),
        ("CUDA (driver)", gpu.cuda_driver),
        ("NVML", gpu.nvml_version),
        ("CUDA_VISIBLE_DEVICES", gpu.cuda_visible_devices),
        ("NVIDIA_VISIBLE_DEVICES", gpu.nvidia_visible_devices),
    ]


def python_summary(python) -> List[Tuple[str, object]]:
    """The Python record's interpreter, as (label, value), for environment.md and `tfrepro show`."""
    return [("version", python.version), ("implementation", python.implementation), ("executable", python.executable)]


def system_summary(system) -> List[Tuple[str, object]]:
    """The host record as (label, value), for environment.md and `tfrepro show`."""
    return [
        ("hostname", system.hostname),
        ("os", system.os),
        ("kernel", system.kernel),
        ("machine", system.machine),
        ("cpu", system.cpu_model),
        ("cpus", system.cpu_count),
        ("memory", gibibytes(system.memory_bytes)),
    ]


def gibibytes(size: Optional[int]) -> Optional[str]:
    """A size as environment.md and `tfrepro show` print it ("140.4 GiB"); None when unknown."""
    return "%.1f GiB" % (size / 2**30) if size else None


def _rows(pairs: Iterable[Tuple[str, object]], code_fields: Sequence[str] = ()) -> List[List[str]]:
    rows = []
    for name, value in pairs:
        if value is None or value == "" or value == ():
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, (list, tuple)):
            value = " ".join(str(v) for v in value)
        cell = md.cell_code(value) if name in code_fields else md.text(value)
        rows.append([md.text(name), cell])
    return rows


def _section(title: str, rows: List[List[str]], headers: Sequence[str] = ("field", "value")) -> List[str]:
    if not rows:
        return []
    return ["## " + md.text(title), "", md.table(headers, rows), ""]


def environment_markdown(env: Environment, run_id: Optional[str] = None, patch_withheld: bool = False) -> str:
    """tfrepro/environment.md: every section of the record as tables a person reads (MLflow 3
    renders it in its artifact viewer). No HTML at all: that viewer shows HTML as text."""
    c, g, gpu, tf = env.container, env.git, env.gpu, env.tensorflow
    py, system, proc, sched = env.python, env.system, env.process, env.scheduler
    out = ["# " + md.text("Environment of run %s" % run_id if run_id else "Environment"), ""]
    out.append(
        md.text("Recorded by tfrepro %s at %s (schema %s)." % (env.tfrepro_version, env.collected_at, env.schema))
    )
    if run_id:
        out += ["", md.text("Replay it with") + " " + md.code("tfrepro replay %s" % run_id)]
    out.append("")
    if c:
        rows = _rows(
            [
                ("in a container", c.in_container),
                ("runtime", c.runtime),
                ("image (pullable)", c.image_digest),
                ("image as launched", c.image_ref),
                ("image id", c.image_id),
                ("digest from", c.digest_source),
                ("container id", c.container_id),
                ("evidence", ", ".join(c.evidence)),
            ],
            ("image (pullable)", "image as launched", "image id", "container id"),
        )
        rows += [[md.text(k), md.cell_code(v)] for k, v in sorted((c.ngc or {}).items())]
        out += _section("Container", rows)
    if g:
        dirty = g.dirty and ("yes: patch withheld" if patch_withheld else "yes: the patch is " + schema.GIT_PATCH)
        rows = _rows(
            [
                ("commit", g.commit),
                ("branch", g.branch),
                ("remote", g.remote_url),
                ("uncommitted changes", dirty or "no"),
                ("patch sha256", g.patch_sha256),
                ("working directory", g.workdir),
                ("repository root", g.root),
                ("untracked files", ", ".join(g.untracked)),
            ],
            ("commit", "branch", "patch sha256"),
        )
        out += _section("Code", rows)
    if gpu:
        summary = _rows(gpu_summary(gpu) + [("why none", gpu.reason)])
        out += _section("GPUs", summary)
        devices = [
            [
                md.text(d.index),
                md.text(d.name),
                md.cell_code(d.uuid) if d.uuid else " ",
                md.text(gibibytes(d.memory_total_bytes) or ""),
                md.text(d.compute_capability or ""),
                md.text(d.mig_mode or ""),
                md.text(d.pci_bus_id or ""),
            ]
            for d in gpu.devices
        ]
        if devices:
            out += [md.table(("index", "model", "uuid", "memory", "compute capability", "MIG", "PCI"), devices), ""]
    if tf:
        rows = _rows(
            [
                ("version", tf.version),
                ("built for CUDA", tf.cuda_build),
                ("built for cuDNN", tf.cudnn_build),
                ("seed", None if tf.seed is None else str(tf.seed)),
                ("mixed precision", tf.mixed_precision_policy),
                ("devices", ", ".join(tf.devices)),
                ("imported", tf.imported),
            ]
        )
        rows += [[md.text("determinism: %s" % k), md.text(v)] for k, v in sorted((tf.determinism or {}).items())]
        out += _section("TensorFlow", rows)
    if py:
        out += _section("Python", _rows(python_summary(py)))
        packages = [[md.text(n), md.text(v)] for n, _, v in (p.partition("==") for p in py.packages)]
        out += _section("Packages (%d)" % len(packages), packages, ("package", "version"))
    if proc:
        rows = _rows(
            [
                ("command", " ".join(proc.argv)),
                ("working directory", proc.cwd),
                ("script", proc.entry_script),
                ("python", proc.python_executable),
            ],
            ("command",),
        )
        out += _section("Process", rows)
    if system:
        out += _section("Host", _rows(system_summary(system)))
    if sched:
        out += _section(
            "Scheduler", _rows([("kind", sched.kind)] + [(k, getattr(sched, k)) for k in schema.SCHEDULER_FIELDS])
        )
    if env.reasons:
        out += _section("What is missing, and why", [[md.text(k), md.text(v)] for k, v in sorted(env.reasons.items())])
    return "\n".join(out).rstrip("\n") + "\n"
