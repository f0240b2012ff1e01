"""Compare two environment records field by field, ranked by how likely each changes results.

Pure: no I/O. `compare(env_a, env_b)` is what `tfrepro diff` prints; replay shows its GPU
rows, recorded run vs this host, as drift (replay/drift.py). Values are compared as text ("true", "11.2", "-" never: missing is None).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from tfrepro import schema
from tfrepro.environment import Environment

HIGH, MEDIUM, LOW, RESULT = "high", "medium", "low", "result"
RANKS = (HIGH, MEDIUM, LOW, RESULT)  # RESULT: final metrics, an outcome rather than a cause
GROUPS = (
    "image",
    "code",
    "gpu",
    "tensorflow",
    "determinism",
    "params",
    "python",
    "packages",
    "launch",
    "workers",
    "system",
    "scheduler",
    "process",
    "record",
    "metrics",
)


@dataclass(frozen=True)
class Difference:
    """One compared field. `a`/`b` are text, None when the side lacks the fact."""

    group: str
    field: str
    a: Optional[str]
    b: Optional[str]
    rank: str

    @property
    def equal(self) -> bool:
        return self.a == self.b

    @property
    def kind(self) -> str:
        """equal | changed | added (only in b) | removed (only in a)."""
        if self.a == self.b:
            return "equal"
        if self.a is None:
            return "added"
        if self.b is None:
            return "removed"
        return "changed"

    def to_dict(self) -> Dict[str, Any]:
        return dict(asdict(self), kind=self.kind, equal=self.equal)


def _text(value: Any) -> Optional[str]:
    if value is None or value == "" or value == () or value == {}:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join("%s=%s" % (k, _text(v)) for k, v in sorted(value.items()))
    return str(value)


def _devices(name: str) -> Callable[[Environment], Any]:
    """The distinct values of one GPU device field (model, compute capability...), sorted."""

    def get(env: Environment) -> Optional[str]:
        if not env.gpu:
            return None
        return ", ".join(sorted({getattr(d, name) for d in env.gpu.devices if getattr(d, name)})) or None

    return get


def _attr(section: str, name: str) -> Callable[[Environment], Any]:
    def get(env: Environment) -> Any:
        value = getattr(env, section)
        return None if value is None else getattr(value, name)

    return get


# (group, field, getter, rank). Order here is display order within a rank.
FIELDS: Tuple[Tuple[str, str, Callable[[Environment], Any], str], ...] = (
    ("image", "digest", _attr("container", "image_digest"), HIGH),
    ("image", "id", _attr("container", "image_id"), HIGH),
    ("image", "ref", _attr("container", "image_ref"), MEDIUM),
    ("image", "in_container", _attr("container", "in_container"), MEDIUM),
    ("image", "runtime", _attr("container", "runtime"), LOW),
    ("image", "digest_source", _attr("container", "digest_source"), LOW),
    ("code", "commit", _attr("git", "commit"), HIGH),
    ("code", "dirty", _attr("git", "dirty"), HIGH),
    ("code", "patch_sha256", _attr("git", "patch_sha256"), HIGH),
    ("code", "workdir", _attr("git", "workdir"), MEDIUM),
    ("code", "untracked", _attr("git", "untracked"), MEDIUM),
    ("code", "branch", _attr("git", "branch"), LOW),
    ("code", "remote", _attr("git", "remote_url"), LOW),
    ("code", "root", _attr("git", "root"), LOW),
    ("gpu", "model", _devices("name"), HIGH),
    ("gpu", "count", _attr("gpu", "count"), HIGH),
    ("gpu", "compute_capability", _devices("compute_capability"), HIGH),
    ("gpu", "mig_mode", _devices("mig_mode"), MEDIUM),
    ("gpu", "driver", _attr("gpu", "driver_version"), MEDIUM),
    ("gpu", "cuda_driver", lambda e: e.gpu.cuda_driver if e.gpu else None, MEDIUM),
    ("gpu", "cuda_visible_devices", _attr("gpu", "cuda_visible_devices"), MEDIUM),
    ("gpu", "nvidia_visible_devices", _attr("gpu", "nvidia_visible_devices"), LOW),
    ("gpu", "nvml_version", _attr("gpu", "nvml_version"), LOW),
    ("tensorflow", "version", _attr("tensorflow", "version"), HIGH),
    ("tensorflow", "cuda_build", _attr("tensorflow", "cuda_build"), HIGH),
    ("tensorflow", "cudnn_build", _attr("tensorflow", "cudnn_build"), HIGH),
    ("tensorflow", "mixed_precision_policy", _attr("tensorflow", "mixed_precision_policy"), HIGH),
    ("tensorflow", "devices", _attr("tensorflow", "devices"), MEDIUM),
    ("determinism", "seed", _attr("tensorflow", "seed"), HIGH),
    ("python", "version", _attr("python", "version"), MEDIUM),
    ("python", "implementation", _attr("python", "implementation"), MEDIUM),
    ("python", "executable", _attr("python", "executable"), LOW),
    ("system", "machine", _attr("system", "machine"), MEDIUM),
    ("system", "cpu_model", _attr("system", "cpu_model"), LOW),
    ("system", "cpu_count", _attr("system", "cpu_count"), LOW),
    ("system", "memory_bytes", _attr("system", "memory_bytes"), LOW),
    ("system", "os", _attr("system", "os"), LOW),
    ("system", "kernel", _attr("system", "kernel"), LOW),
    ("system", "hostname", _attr("system", "hostname"), LOW),
    ("scheduler", "kind", _attr("scheduler", "kind"), LOW),
    ("scheduler", "nodes", _attr("scheduler", "nodes"), LOW),
    ("scheduler", "partition", _attr("scheduler", "partition"), LOW),
    ("scheduler", "cluster", _attr("scheduler", "cluster"), LOW),
    ("process", "command", lambda e: list(e.process.argv) if e.process else None, MEDIUM),
    ("process", "entry_script", _attr("process", "entry_script"), MEDIUM),
    ("process", "cwd", _attr("process", "cwd"), LOW),
    ("process", "python_executable", _attr("process", "python_executable"), LOW),
    ("record", "schema", lambda e: e.schema, LOW),
    ("record", "tfrepro_version", lambda e: e.tfrepro_version, LOW),
)


def _sort_key(diff: Difference) -> Tuple[int, int]:
    group = GROUPS.index(diff.group) if diff.group in GROUPS else len(GROUPS)
    return RANKS.index(diff.rank), group


def split_package(spec: str) -> Tuple[str, str]:
    """ "NumPy==1.23.5" -> ("numpy", "1.23.5"); names normalised as pip does (PEP 503)."""
    name, _, version = spec.partition("==")
    return name.strip().lower().replace("_", "-").replace(".", "-"), version.strip()


def packages(env: Environment) -> Dict[str, str]:
    return dict(split_package(p) for p in (env.python.packages if env.python else ()))


def compare_mappings(
    group: str, a: Mapping[str, Any], b: Mapping[str, Any], rank: str, include_equal: bool = False
) -> List[Difference]:
    out = []
    for key in sorted(set(a) | set(b)):
        diff = Difference(group, key, _text(a.get(key)), _text(b.get(key)), rank)
        if include_equal or not diff.equal:
            out.append(diff)
    return out


def compare(env_a: Environment, env_b: Environment, include_equal: bool = False) -> List[Difference]:
    """Differences between two environments, highest rank first (all fields with include_equal)."""
    out = []
    for group, name, get, rank in FIELDS:
        diff = Difference(group, name, _text(get(env_a)), _text(get(env_b)), rank)
        if include_equal or not diff.equal:
            out.append(diff)

    def flags(env):
        return dict(env.tensorflow.determinism) if env.tensorflow else {}

    out += compare_mappings("determinism", flags(env_a), flags(env_b), HIGH, include_equal)
    ngc = [dict(e.container.ngc) if e.container else {} for e in (env_a, env_b)]
    out += compare_mappings("image", ngc[0], ngc[1], MEDIUM, include_equal)
    out += compare_mappings("packages", packages(env_a), packages(env_b), MEDIUM, include_equal)
    return sorted(out, key=_sort_key)


def compare_runs(record_a, record_b, include_equal: bool = False) -> List[Difference]:
    """compare() plus params (high), launch settings (medium) and final metrics (result)."""
    out = compare(record_a.environment, record_b.environment, include_equal)
    out += compare_mappings("params", record_a.params, record_b.params, HIGH, include_equal)
    out += compare_mappings(
        "launch", _flat(record_a.launch_settings()), _flat(record_b.launch_settings()), MEDIUM, include_equal
    )
    out += compare_mappings("workers", _workers(record_a), _workers(record_b), MEDIUM, include_equal)
    out += compare_mappings("metrics", record_a.metrics, record_b.metrics, RESULT, include_equal)
    return sorted(out, key=_sort_key)


def _workers(record) -> Dict[str, Any]:
    """A multi-worker job's shape and agreement (tfrepro/workers.json, its tags); {} for one worker."""
    tags = getattr(record, "tags", None) or {}
    gathered = getattr(record, "workers", None) or {}
    count = str(gathered.get("workers") or tags.get(schema.LAUNCH_WORKERS) or "1")
    if count == "1":
        return {}
    out: Dict[str, Any] = {"count": count}
    agree = tags.get(schema.WORKERS_AGREE) or (None if not gathered else ("true" if gathered.get("agree") else "false"))
    if agree:
        out["agree"] = agree
    disagree = tags.get(schema.WORKERS_DISAGREE) or ",".join(gathered.get("disagree") or ())
    if disagree:
        out["disagree"] = disagree
    return out


def _flat(data: Optional[Mapping[str, Any]], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in (data or {}).items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, prefix + key + "."))
        else:
            out[prefix + key] = value
    return out


def differs(diffs: List[Difference]) -> bool:
    """True when a cause differs: anything but final metrics (which runs rarely share)."""
    return any(not d.equal and d.rank != RESULT for d in diffs)


def counts(diffs: List[Difference]) -> Dict[str, int]:
    return {rank: sum(1 for d in diffs if d.rank == rank and not d.equal) for rank in RANKS}
