"""`tfrepro env`: print this machine's environment record (what a run here would log)."""
from __future__ import annotations

import shlex
import textwrap
from typing import List, Optional, Tuple

import click

WIDTH = 100
LABEL = 18  # longer labels (NGC variable names) push their value right
Rows = List[Tuple[str, Optional[str]]]


def _wrap(text: str, width: int, max_lines: int = 2) -> List[str]:
    """At most two lines: a digest must stay whole, NVIDIA_REQUIRE_CUDA need not."""
    lines = textwrap.wrap(" ".join(str(text).split()), width, break_on_hyphens=False) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 3] + "..."
    return lines


def _gib(value: Optional[int]) -> Optional[str]:
    return None if value is None else "%.1f GiB" % (value / (1 << 30))


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _join(*parts: Optional[str], sep: str = ", ") -> Optional[str]:
    kept = [p for p in parts if p]
    return sep.join(kept) if kept else None


def _sections(env) -> List[Tuple[str, Rows]]:
    out: List[Tuple[str, Rows]] = []
    c = env.container
    if c:
        out.append(("container", [
            ("in container", "%s (%s)" % (_yes(c.in_container), ", ".join(c.evidence)) if c.evidence
             else _yes(c.in_container)),
            ("runtime", c.runtime),
            ("container id", c.container_id),
            ("image", c.image_ref),
            ("digest", c.image_digest),
            ("digest source", c.digest_source),
            ("image id", c.image_id),
        ] + [(key, value) for key, value in c.ngc.items()]))
    g = env.git
    if g:
        patch = "patch %d bytes, sha256 %s" % (len(g.patch.encode("utf-8", "surrogateescape")),
                                               g.patch_sha256[:12]) if g.patch_sha256 else None
        out.append(("git", [
            ("commit", _join(g.commit, "(%s)" % (g.branch or "detached HEAD"), sep=" ")),
            ("remote", g.remote_url),
            ("dirty", _join(_yes(g.dirty), patch)),
            ("untracked", "%d files" % len(g.untracked) if g.untracked else None),
            ("root", _join(g.root, "(workdir %s)" % g.workdir, sep=" ")),
        ]))
    gpu = env.gpu
    if gpu:
        rows: Rows = [("driver", _join(gpu.driver_version, gpu.cuda_driver and "CUDA " + gpu.cuda_driver,
                                       gpu.nvml_version and "NVML " + gpu.nvml_version))]
        for d in gpu.devices:
            rows.append(("gpu %d" % d.index, _join(d.name, _gib(d.memory_total_bytes),
                                                   d.compute_capability and "cc " + d.compute_capability,
                                                   d.mig_mode and "MIG " + d.mig_mode, d.pci_bus_id, d.uuid)))
        rows += [("count", str(gpu.count)), ("CUDA_VISIBLE_DEVICES", gpu.cuda_visible_devices),
                 ("NVIDIA_VISIBLE_DEVICES", gpu.nvidia_visible_devices)]
        out.append(("gpu", rows))
    tf = env.tensorflow
    if tf:
        out.append(("tensorflow", [
            ("version", tf.version if tf.imported else "%s (not imported; --tensorflow imports it)" % tf.version),
            ("built with", _join(tf.cuda_build and "CUDA " + tf.cuda_build,
                                 tf.cudnn_build and "cuDNN " + tf.cudnn_build)),
            ("devices", _join(*tf.devices)),
            ("determinism", _join(*("%s=%s" % kv for kv in sorted(tf.determinism.items())))),
            ("mixed precision", tf.mixed_precision_policy),
            ("seed", None if tf.seed is None else str(tf.seed)),
        ]))
    py = env.python
    if py:
        out.append(("python", [
            ("version", _join(py.version, py.implementation, py.executable, sep=" ")),
            ("packages", "%d installed (--json lists them)" % len(py.packages)),
        ]))
    s = env.system
    if s:
        out.append(("system", [
            ("os", _join(s.os, s.kernel and "kernel " + s.kernel, s.machine)),
            ("cpu", _join(s.cpu_model, s.cpu_count and "%d cores" % s.cpu_count)),
            ("memory", _gib(s.memory_bytes)),
            ("hostname", s.hostname),
        ]))
    j = env.scheduler
    if j:
        out.append(("scheduler", [
            ("kind", j.kind), ("job", _join(j.job_id, j.job_name and "(%s)" % j.job_name, sep=" ")),
            ("nodes", j.nodes), ("partition", j.partition), ("cluster", j.cluster), ("account", j.account),
            ("pod", _join(j.pod, j.namespace and "(namespace %s)" % j.namespace, sep=" ")),
        ]))
    p = env.process
    if p:
        out.append(("process", [("command", " ".join(shlex.quote(a) for a in p.argv)), ("cwd", p.cwd)]))
    return out


def _row(label: str, value: str) -> List[str]:
    value = " ".join(str(value).split())
    width = max(LABEL, len(label) + 1)  # long NGC variable names push their value right
    if len(value) <= WIDTH - 2 - width:
        return ["  %-*s%s" % (width, label, value)]
    if len(value) <= WIDTH - 2:  # a digest stays whole and copyable on its own line
        return ["  " + label, "  " + value]
    return ["  " + label] + [" " * (LABEL + 2) + line for line in _wrap(value, WIDTH - 2 - LABEL)]


def render(env) -> str:
    """The readable form: one block per source, then what is missing and why."""
    lines = ["tfrepro %s, collected %s" % (env.tfrepro_version, env.collected_at)]
    for title, rows in _sections(env):
        lines += ["", title]
        for label, value in rows:
            if value:
                lines += _row(label, value)
    if env.reasons:
        lines += ["", "missing or partial"]
        for source, reason in sorted(env.reasons.items()):
            wrapped = _wrap(reason, WIDTH - LABEL - 2, max_lines=5)
            lines.append("  %-*s%s" % (LABEL, source, wrapped[0]))
            lines += [" " * (LABEL + 2) + more for more in wrapped[1:]]
    return "\n".join(lines)


@click.command(name="env")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@click.option("--tensorflow", "import_tf", is_flag=True,
              help="Import TensorFlow first (slow) to add its build, devices and determinism.")
def command(as_json, import_tf):
    """Print this machine's environment record: container image, git, GPU, TensorFlow, Python."""
    if import_tf:
        try:
            import tensorflow  # noqa: F401  (the tensorflow source reads it from sys.modules)
        except ImportError:
            pass  # recorded as "tensorflow not installed"
    from tfrepro.fingerprint import collect

    env = collect()
    click.echo(env.to_json() if as_json else render(env))
