"""One interface over the engines, for `tfrepro run` and `tfrepro replay` (`--on NAME`).

    engine = engines.get(name, options)
    engine.check(spec, source)           pure: refuse what this engine cannot run, before any run exists
    engine.preview(spec, hidden, source) the exact text that would be submitted (--dry-run prints it)
    engine.resolve(ref)                  REF -> Resolved(digest, image id) (`tfrepro run`)
    engine.prepare(image)                make the image available where that is the launcher's job
    engine.run(spec, hidden, source, on_facts, write) -> the exit status; Ctrl-C/SIGTERM cancels
    engine.settings()                    what to record, so a replay submits the same way

Every engine takes the same LaunchSpec and translates it; none re-derives it.
"""
from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from tfrepro import imageref
from tfrepro.errors import DockerError, RecordError, SchedulerError, UsageError
from tfrepro.launch import docker, kubernetes, podman, slurm
from tfrepro.launch import spec as S

NAMES = ("docker", "podman", "slurm", "kubernetes")
Facts = Callable[[Dict[str, str]], None]
Write = Callable[[bytes], None]


@dataclass(frozen=True)
class Options:
    """Everything --on NAME can take; each engine reads its own part."""
    slurm: slurm.SlurmOptions = field(default_factory=slurm.SlurmOptions)
    kubernetes: kubernetes.KubernetesOptions = field(default_factory=kubernetes.KubernetesOptions)
    kube_context: Optional[str] = None
    output: str = "yaml"  # the manifest's form in a Kubernetes dry run


def options_from(name: str, given: Mapping[str, object], recorded: Optional[Mapping[str, object]] = None) -> Options:
    """Command-line values over recorded ones (a replay submits as the original did), checked
    against the engine: a Slurm option with --on kubernetes is a mistake, said at once."""
    recorded = dict(recorded or {}) if (recorded or {}).get("backend") == name else {}
    for key, value in given.items():
        if value not in (None, (), "") and key not in _OWN.get(name, ()) and key != "output":
            raise UsageError("--%s applies to --on %s, not --on %s"
                             % (key.replace("_", "-"), _owner(key), name))
    merged = {k: v for k, v in recorded.items() if k != "backend"}
    merged.update({k: v for k, v in given.items() if v not in (None, (), "")})
    try:
        slurm_options = slurm.SlurmOptions(**{f.name: _tuple(merged[f.name]) for f in fields(slurm.SlurmOptions)
                                              if f.name in merged})
        kube_options = kubernetes.KubernetesOptions(**{f.name: merged[f.name]
                                                       for f in fields(kubernetes.KubernetesOptions) if f.name in merged})
    except TypeError as exc:  # a malformed launch.json
        raise RecordError("launch.json: bad engine settings: %s" % exc) from None
    return Options(slurm_options, kube_options, merged.get("kube_context"), str(merged.get("output") or "yaml"))


_OWN = {
    "slurm": tuple(f.name for f in fields(slurm.SlurmOptions)),
    "kubernetes": tuple(f.name for f in fields(kubernetes.KubernetesOptions)) + ("kube_context",),
}


def _owner(key: str) -> str:
    return next((name for name, keys in _OWN.items() if key in keys), "?")


def _tuple(value):
    return tuple(value) if isinstance(value, list) else value


class Docker:
    name = "docker"

    def __init__(self, options: Options):
        self._client = None

    def client(self):
        if self._client is None:
            self._client = docker.connect()
        return self._client

    def check(self, spec: S.LaunchSpec, source: Optional[kubernetes.Source]) -> None:
        pass

    def preview(self, spec, hidden, source) -> str:
        return shlex.join(S.docker_argv(spec, hidden))

    def resolve(self, ref: str) -> docker.Resolved:
        return docker.resolve(self.client(), ref)

    def prepare(self, image: str) -> None:
        docker.ensure_image(self.client(), image)

    def run(self, spec, hidden, source, on_facts: Facts, write: Write) -> int:
        return docker.run(self.client(), S.run_kwargs(spec), write)

    def settings(self) -> Dict[str, object]:
        return {"backend": self.name}


class Podman(Docker):
    name = "podman"

    def preview(self, spec, hidden, source) -> str:
        return shlex.join(podman.podman_argv(spec, hidden))

    def resolve(self, ref: str) -> docker.Resolved:
        return podman.resolve(ref)

    def prepare(self, image: str) -> None:
        podman.ensure_image(image, lambda line: None)

    def run(self, spec, hidden, source, on_facts: Facts, write: Write) -> int:
        on_facts({"runtime": "podman"})
        return podman.run(podman.podman_argv(spec, hidden), write)


class _Cluster(Docker):
    """A cluster's node pulls the image itself, by digest: nothing to pull here."""

    def resolve(self, ref: str) -> docker.Resolved:
        return resolve_for_cluster(ref)

    def prepare(self, image: str) -> None:
        pass


class Slurm(_Cluster):
    """docker/podman in the job pull a missing digest; pyxis (enroot) imports it."""
    name = "slurm"

    def __init__(self, options: Options):
        super().__init__(options)
        self.given = self.options = options.slurm

    def check(self, spec, source) -> None:
        imageref.check_digest_ref(spec.image, _cluster_image)
        self.options = slurm.check_options(self.given, spec)

    def preview(self, spec, hidden, source) -> str:
        from tfrepro.launch import slurm_job

        return slurm.batch_script(spec, self.options, slurm_job.output_pattern(), hidden, "tfrepro")

    def run(self, spec, hidden, source, on_facts: Facts, write: Write) -> int:
        import os

        from tfrepro.launch import slurm_job

        script = self.preview(spec, hidden, source)
        on_facts({"runtime": self.options.runtime})
        return slurm_job.submit(script, slurm.submit_env(spec, hidden, os.environ), slurm_job.output_pattern(),
                                write, on_facts, _info)

    def settings(self) -> Dict[str, object]:
        """The options as given: a --gres derived from --gpus is derived again on replay."""
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.given).items()}
        return dict({k: v for k, v in values.items() if v not in (None, [])}, backend=self.name)


class Kubernetes(_Cluster):
    name = "kubernetes"

    def __init__(self, options: Options):
        super().__init__(options)
        self.options = options.kubernetes
        self.context, self.output = options.kube_context, options.output

    def check(self, spec, source) -> None:
        self.options = kubernetes.check_options(self.options)
        if self.output not in ("yaml", "json"):
            raise UsageError("-o must be yaml or json, not %r" % self.output)
        self.job(spec, source)

    def job(self, spec, source, hidden: Sequence[str] = ()):
        if source is None:
            raise UsageError("--on kubernetes needs a git checkout: the pod clones the commit")
        return kubernetes.build_job(spec, source, self.options, hidden)

    def preview(self, spec, hidden, source) -> str:
        job = self.job(spec, source, _secret_names(hidden))
        if self.output == "json":
            import json

            return json.dumps(kubernetes.to_dict(job), indent=2)
        return kubernetes.to_yaml(job)

    def run(self, spec, hidden, source, on_facts: Facts, write: Write) -> int:
        from tfrepro.launch import kubernetes_job

        job = self.job(spec, source, _secret_names(hidden))
        missing = kubernetes.secret_env_names(spec, _secret_names(hidden))
        if missing:
            _info("secret values come from Secret %s/%s (keys %s)" % (self.options.namespace, self.options.env_secret,
                                                                       ", ".join(missing)))
        apis = kubernetes_job.connect(context=self.context)
        return kubernetes_job.submit(job, apis, write, on_facts, _info)

    def settings(self) -> Dict[str, object]:
        values = {k: v for k, v in asdict(self.options).items() if v is not None}
        if self.context:
            values["kube_context"] = self.context
        return dict(values, backend=self.name)


def _secret_names(hidden: Sequence[str]) -> Tuple[str, ...]:
    # MLFLOW_RUN_ID is hidden in a preview only because it is not known yet: not a secret
    return tuple(name for name in hidden if name != "MLFLOW_RUN_ID")


def _cluster_image(message: str) -> UsageError:
    return UsageError("%s: a cluster pulls its image from a registry, so it needs a digest" % message)


def _info(line: str) -> None:
    import click

    click.echo("tfrepro: %s" % line, err=True)


def resolve_for_cluster(ref: str) -> docker.Resolved:
    """A digest for a cluster to pull: given, or resolved by this host's Docker or Podman."""
    imageref.check_image_ref(ref)
    if imageref.split(ref)[2]:
        return docker.Resolved(ref, ref, None)
    try:
        found = docker.resolve(docker.connect(), ref)
    except DockerError:
        try:
            found = podman.resolve(ref)
        except SchedulerError:
            raise UsageError("cannot resolve %s to a digest here (no Docker or Podman): pass --image repo@sha256:..."
                             % ref) from None
    if not found.digest:
        raise UsageError("image %s is in no registry: a cluster cannot pull it (push it first)" % ref)
    return found


ENGINES = {"docker": Docker, "podman": Podman, "slurm": Slurm, "kubernetes": Kubernetes}


def get(name: str, options: Options):
    if name not in ENGINES:
        raise UsageError("--on must be one of %s, not %r" % (", ".join(NAMES), name))
    return ENGINES[name](options)
