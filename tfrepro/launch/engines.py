"""One interface over the engines, for `tfrepro run` and `tfrepro replay` (`--on NAME`).

    engine = get(name, options)
    engine.check(spec, source)            refuse what this engine cannot run, before any run exists
    engine.preview(spec, hidden, source)  the exact text that would be submitted (--dry-run prints it)
    engine.announce(...)                  the line(s) shown when it is submitted
    engine.resolve(ref)                   REF -> Resolved(digest, image id)   (`tfrepro run`)
    engine.prepare(image)                 make the image present where that is the launcher's job
    engine.image_env(image)               the image's ENV (the hook keeps its PYTHONPATH)
    engine.run(spec, hidden, source, on_facts, write) -> exit status; Ctrl-C/SIGTERM cancels
    engine.settings()                     what launch.json records, so a replay submits the same way

`source` (kubernetes.Source: remote, commit, patch) is what a pod clones; the other engines
mount the checkout. Every engine takes the same LaunchSpec and translates it; none re-derives it.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from tfrepro import imageref, schema
from tfrepro.errors import DockerError, SchedulerError, UsageError
from tfrepro.launch import docker, hooks, kubernetes, podman, slurm
from tfrepro.launch import spec as S
from tfrepro.launch.settings import NAMES, Options
from tfrepro.redact import is_secret

CLUSTERS = ("slurm", "kubernetes")  # the job runs on a node: this host's GPUs say nothing about it
Facts = Callable[[Dict[str, str]], None]
Write = Callable[[bytes], None]


def _info(line: str) -> None:
    import click

    click.echo("tfrepro: %s" % line, err=True)


class Docker:
    name = "docker"

    def __init__(self, options: Options):
        self._client = None

    def client(self):
        if self._client is None:
            self._client = docker.connect()
        return self._client

    def check(self, spec: S.LaunchSpec, source: Optional[kubernetes.Source]) -> None:
        claims = [m.source for m in spec.mounts if m.source.startswith(S.CLAIM_PREFIX)]
        if claims:
            raise UsageError("%s: a PersistentVolumeClaim mount needs --on kubernetes" % claims[0])

    def preview(self, spec, hidden, source) -> str:
        return shlex.join(S.docker_argv(spec, hidden))

    def announce(self, spec, hidden, source) -> str:
        return self.preview(spec, hidden, source)

    def resolve(self, ref: str) -> docker.Resolved:
        return docker.resolve(self.client(), ref)

    def prepare(self, image: str) -> None:
        docker.ensure_image(self.client(), image)

    def image_env(self, image: str) -> Dict[str, str]:
        return hooks.image_env(self.client(), image)

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
        podman.ensure_image(image, _info)

    def image_env(self, image: str) -> Dict[str, str]:
        return podman.image_env(image)

    def run(self, spec, hidden, source, on_facts: Facts, write: Write) -> int:
        on_facts({"runtime": "podman"})
        label = "%s=%s" % (schema.RUN_ID_LABEL, spec.labels.get(schema.RUN_ID_LABEL))
        return podman.run(podman.podman_argv(spec, hidden), write, caller_env(spec, hidden, os.environ), label)


class _Cluster(Docker):
    """The job's node pulls the image by digest: nothing to pull here. The image's ENV is read
    from this host's Docker or Podman when either has the image, else left out."""

    def resolve(self, ref: str) -> docker.Resolved:
        return resolve_for_cluster(ref)

    def prepare(self, image: str) -> None:
        pass

    def image_env(self, image: str) -> Dict[str, str]:
        try:
            return hooks.image_env(docker.connect(), image) or podman.image_env(image)
        except (DockerError, SchedulerError):
            return {}


class Slurm(_Cluster):
    """docker or podman in the job pull a missing digest; pyxis (enroot) imports it."""

    name = "slurm"

    def __init__(self, options: Options):
        super().__init__(options)
        self.given = self.options = options.slurm

    def check(self, spec, source) -> None:
        super().check(spec, source)
        imageref.check_digest_ref(spec.image, _needs_digest)
        self.options = slurm.check_options(self.given, spec)

    def preview(self, spec, hidden, source) -> str:
        from tfrepro.launch import slurm_job

        self.check(spec, source)
        return slurm.batch_script(spec, self.options, slurm_job.output_pattern(), hidden)

    def announce(self, spec, hidden, source) -> str:
        return "submitting this batch script with %s:\n%s" % (
            " ".join(slurm.SUBMIT),
            self.preview(spec, hidden, source),
        )

    def prepare(self, image: str) -> None:
        from tfrepro.launch import slurm_job

        slurm_job.check_controller()  # before any MLflow run exists

    def run(self, spec, hidden, source, on_facts: Facts, write: Write) -> int:
        from tfrepro.launch import slurm_job

        script = self.preview(spec, hidden, source)
        on_facts({"runtime": self.options.runtime})
        return slurm_job.submit(
            script, caller_env(spec, hidden, os.environ), slurm_job.output_pattern(), write, on_facts, _info
        )

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

    def job(self, spec, source, hidden: Sequence[str] = ()):
        if self.output not in ("yaml", "json"):
            raise UsageError("-o must be yaml or json, not %r" % self.output)
        if source is None:
            raise UsageError("--on kubernetes needs a git checkout: the pod clones its commit")
        hook = hooks.hook_source() if any(m.kind == "hook" for m in spec.mounts) else ""
        return kubernetes.build_job(spec, source, kubernetes.check_options(self.options), _secrets(hidden), hook)

    def check(self, spec, source) -> None:
        self.job(spec, source)

    def preview(self, spec, hidden, source) -> str:
        job = self.job(spec, source, hidden)
        if self.output == "json":
            return json.dumps(kubernetes.to_dict(job), indent=2)
        return kubernetes.to_yaml(job)

    def announce(self, spec, hidden, source) -> str:
        job = self.job(spec, source, hidden)
        names = kubernetes.secret_env_names(spec, _secrets(hidden))
        line = "creating Job %s/%s (image %s)" % (job.metadata.namespace, job.metadata.name, spec.image)
        if names:
            line += "; values of %s come from Secret %s" % (", ".join(names), self.options.env_secret)
        return line

    def prepare(self, image: str) -> None:
        from tfrepro.launch import kubernetes_job

        self.apis = kubernetes_job.connect(context=self.context)  # the kubeconfig is read before any run exists

    def run(self, spec, hidden, source, on_facts: Facts, write: Write) -> int:
        from tfrepro.launch import kubernetes_job

        job = self.job(spec, source, hidden)
        apis = getattr(self, "apis", None) or kubernetes_job.connect(context=self.context)
        return kubernetes_job.submit(job, apis, write, on_facts, _info)

    def settings(self) -> Dict[str, object]:
        values = {k: v for k, v in asdict(self.options).items() if v is not None}
        if self.context:
            values["kube_context"] = self.context
        return dict(values, backend=self.name)


def caller_env(spec: S.LaunchSpec, hidden: Sequence[str], environ: Mapping[str, str]) -> Dict[str, str]:
    """The environment of a process that starts the container from a command line (podman,
    sbatch): ours, plus the values that line names (`-e NAME`) but does not contain."""
    env = dict(environ)
    env.update({k: v for k, v in spec.env.items() if is_secret(k) or k in hidden})
    return env


def _secrets(hidden: Sequence[str]) -> Tuple[str, ...]:
    """Names whose values go through a Secret. MLFLOW_RUN_ID is hidden in a preview only
    because it is not known yet: it is no secret."""
    return tuple(name for name in hidden if name != "MLFLOW_RUN_ID")


def _needs_digest(message: str) -> UsageError:
    return UsageError("%s: a cluster's node pulls the image from a registry, by digest" % message)


def resolve_for_cluster(ref: str) -> docker.Resolved:
    """A digest for a cluster to pull: as given, or resolved by this host's Docker or Podman."""
    imageref.check_image_ref(ref)
    try:
        found = docker.resolve(docker.connect(), ref)
    except DockerError:
        if imageref.split(ref)[2]:  # a digest needs no resolving; only its image id stays unknown
            return docker.Resolved(ref, ref, None)
        try:
            found = podman.resolve(ref)
        except SchedulerError:
            raise UsageError(
                "cannot resolve %s to a digest here (neither Docker nor Podman): pass --image repo@sha256:..." % ref
            ) from None
    if not found.digest:
        raise UsageError("image %s is in no registry: a cluster cannot pull it (push it first)" % ref)
    return found


ENGINES = {"docker": Docker, "podman": Podman, "slurm": Slurm, "kubernetes": Kubernetes}


def get(name: str, options: Options):
    if name not in ENGINES:
        raise UsageError("--on must be one of %s, not %r" % (", ".join(NAMES), name))
    return ENGINES[name](options)
