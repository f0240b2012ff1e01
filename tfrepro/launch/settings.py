"""What `--on NAME` and its options are, and how a replay reads them back from launch.json.

Command-line values win over recorded ones (a replay submits as its original did unless told
otherwise); an option of another engine is refused; recorded settings are untrusted. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, Mapping, Optional, Tuple

from tfrepro import schema
from tfrepro.errors import RecordError, UsageError
from tfrepro.launch import kubernetes, slurm

NAMES = ("docker", "podman", "slurm", "kubernetes")


@dataclass(frozen=True)
class Options:
    """Everything `--on NAME` can take; each engine reads its own part."""

    slurm: slurm.SlurmOptions = field(default_factory=slurm.SlurmOptions)
    kubernetes: kubernetes.KubernetesOptions = field(default_factory=kubernetes.KubernetesOptions)
    kube_context: Optional[str] = None
    output: str = "yaml"  # a Kubernetes dry run prints the manifest as yaml or json


OWN = {
    "slurm": tuple(f.name for f in fields(slurm.SlurmOptions)),
    "kubernetes": tuple(f.name for f in fields(kubernetes.KubernetesOptions)) + ("kube_context", "output"),
}


# What a replay takes from a record's engine settings (SECURITY.md: a record is data): the
# shape of the job. What grants access -- extra sbatch options (--export, --output, --chdir...),
# a Kubernetes namespace, service account or Secret -- comes only from the replaying user.
FROM_RECORD = {"slurm": ("partition", "time", "account", "nodes", "gres", "runtime"), "kubernetes": ("ttl_seconds",)}


def not_reused(name: str, recorded: Optional[Mapping[str, object]]) -> Tuple[str, ...]:
    """The recorded settings of engine `name` that a replay leaves out, as option names."""
    if not recorded or recorded.get("backend") != name:
        return ()
    return tuple(
        "--sbatch-arg" if k == "sbatch_args" else "--" + k.replace("_", "-")
        for k, v in sorted(recorded.items())
        if k in OWN.get(name, ()) and k not in FROM_RECORD.get(name, ()) and v not in (None, (), [], "")
    )


def options_from(name: str, given: Mapping[str, object], recorded: Optional[Mapping[str, object]] = None) -> Options:
    """Command-line values over recorded ones (a replay submits as its original did, within
    FROM_RECORD); an option of another engine (--partition with --on kubernetes) is refused."""
    if name not in NAMES:
        raise UsageError("--on must be one of %s, not %r" % (", ".join(NAMES), name))
    for key, value in given.items():
        if value not in (None, (), "") and key not in OWN.get(name, ()):
            owner = next((n for n, keys in OWN.items() if key in keys), "?")
            raise UsageError("--%s is for --on %s, not --on %s" % (key.replace("_", "-"), owner, name))
    merged: Dict[str, Any] = {}  # each value checked: by _recorded(), or by click for the given ones
    if recorded and recorded.get("backend") == name:
        merged.update((k, _recorded(k, v)) for k, v in recorded.items() if k in FROM_RECORD.get(name, ()))
    merged.update((k, v) for k, v in given.items() if v not in (None, (), ""))
    kube_fields = {f.name for f in fields(kubernetes.KubernetesOptions)}
    return Options(
        slurm.SlurmOptions(**{k: v for k, v in merged.items() if k in OWN["slurm"]}),
        kubernetes.KubernetesOptions(**{k: v for k, v in merged.items() if k in kube_fields}),
        merged.get("kube_context"),
        str(merged.get("output") or "yaml"),
    )


def _recorded(key: str, value: object) -> object:
    """A setting from launch.json (untrusted): the type its option has, or RecordError."""
    if value is None:
        return None
    if key in ("nodes", "ttl_seconds"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif key == "sbatch_args":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value  # type: ignore[arg-type]
    else:
        ok = isinstance(value, str)
    if not ok:
        raise RecordError("launch.json: malformed engine setting %s: %.60r" % (key, value))
    return value


def recorded_backend(launch: Mapping[str, object], tags: Mapping[str, str]) -> Tuple[str, Dict[str, object]]:
    """(engine name, its recorded settings) of a run; docker for runs from before `--on`."""
    engine = launch.get("engine")
    settings: Mapping[str, object] = engine if isinstance(engine, dict) else {}
    name = str(settings.get("backend") or tags.get(schema.LAUNCH_BACKEND) or "docker")
    if name not in NAMES:
        raise RecordError("unknown engine %.40r in the run's launch record" % name)
    return name, dict(settings)
