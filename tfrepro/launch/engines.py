"""The engines behind `--on NAME` (docker, podman, slurm, kubernetes), one small class each,
all shaped by the Engine protocol below. `tfrepro run` and `tfrepro replay` call only get(),
CLUSTERS and the protocol's methods.

The engines share behaviour through functions, not a base class: check_on_host() and
refuse_claims() for the engines that mount host paths, caller_env() for those that start the container from a command
line, cluster_images for those whose node pulls the image.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, replace
from typing import Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, TypeVar

from tfrepro import schema
from tfrepro.errors import UsageError
from tfrepro.launch import (
    cluster_images,
    docker,
    hooks,
    kubernetes,
    kubernetes_job,
    podman,
    settings,
    slurm,
    slurm_job,
    workers,
)
from tfrepro.launch.spec import CLAIM_PREFIX, LaunchSpec, docker_argv, run_kwargs
from tfrepro.redact import is_secret
from tfrepro.termsafe import shell_join

CLUSTERS = ("slurm", "kubernetes")  # the job runs on a node: this host's GPUs say nothing about it
OnJobFacts = Callable[[Dict[str, str]], None]  # gets the job's facts (id, nodes...) as the engine learns them
WriteOutput = Callable[[bytes], None]  # gets the job's output, as it comes
T = TypeVar("T")


class Engine(Protocol):
    """What every engine does, in the order a launch calls it:

        engine = get(name, options)           all its state is set here (a client opens on first use)
        engine.check(spec, source)            refuse what this engine cannot run, before any run exists
        engine.preview(spec, hidden, source)  the exact text that would be submitted (--dry-run prints it)
        engine.announce(spec, hidden, source) the line(s) shown when it is submitted
        engine.resolve(ref)                   REF -> docker.Resolved(digest, image id)   (`tfrepro run`)
        engine.prepare(image)                 make the image present where that is the launcher's job
        engine.image_env(image)               the image's ENV (the hook keeps its PYTHONPATH)
        engine.run(spec, hidden, source, on_facts, write) -> exit status; Ctrl-C/SIGTERM cancels
        engine.settings()                     what launch.json records, so a replay submits the same way

    `spec` is the LaunchSpec: every engine translates it, none re-derives it. `hidden` names
    the variables whose values stay out of what is shown or written (the engine passes them by
    name). `source` (kubernetes.Source: remote, commit, patch) is what a pod clones; the other
    engines mount the checkout. run() streams the job's output to write(), reports the job's
    facts to on_facts() and returns the exit status (a non-zero status is returned, not
    raised); it raises EngineError when the engine cannot launch, KeyboardInterrupt once
    the job is cancelled.

    `shape=` (workers.Shape, a keyword of check, preview, announce, run and settings) asks for
    N workers of the same image, each with its TF_CONFIG; None or one worker is the launch
    above, unchanged. With N workers, run() returns the status of the first worker that failed
    (the others are stopped) and settings() adds the shape and its wiring under "shape".
    """

    name: str

    def check(
        self, spec: LaunchSpec, source: Optional[kubernetes.Source], shape: Optional[workers.Shape] = None
    ) -> None: ...

    def preview(
        self,
        spec: LaunchSpec,
        hidden: Sequence[str],
        source: Optional[kubernetes.Source],
        shape: Optional[workers.Shape] = None,
    ) -> str: ...

    def announce(
        self,
        spec: LaunchSpec,
        hidden: Sequence[str],
        source: Optional[kubernetes.Source],
        shape: Optional[workers.Shape] = None,
    ) -> str: ...

    def resolve(self, ref: str) -> docker.Resolved: ...

    def prepare(self, image: str) -> None: ...

    def image_env(self, image: str) -> Dict[str, str]: ...

    def run(
        self,
        spec: LaunchSpec,
        hidden: Sequence[str],
        source: Optional[kubernetes.Source],
        on_facts: OnJobFacts,
        write: WriteOutput,
        shape: Optional[workers.Shape] = None,
    ) -> int: ...

    def settings(self, shape: Optional[workers.Shape] = None) -> Dict[str, object]: ...


def check_on_host(spec: LaunchSpec, source=None, shape: Optional[workers.Shape] = None) -> None:
    """check() of the engines that run the job on this host: no claim, and the shape fits here."""
    refuse_claims(spec)
    workers.check_local(spec, workers.check_shape(shape))


class Docker:
    """Docker Engine on this host (docker-py); the daemon is reached on first use only."""

    name = "docker"

    def __init__(self, options: settings.Options):
        self.client = _once(docker.connect)

    check = staticmethod(check_on_host)

    def preview(self, spec, hidden, source, shape: Optional[workers.Shape] = None) -> str:
        shape = workers.check_shape(shape)
        if not shape.multi:
            return shell_join(docker_argv(spec, hidden))
        return "\n".join(shell_join(_docker_worker_argv(spec, shape, index, hidden)) for index in range(shape.workers))

    def announce(self, spec, hidden, source, shape: Optional[workers.Shape] = None) -> str:
        return self.preview(spec, hidden, source, shape)

    def resolve(self, ref: str) -> docker.Resolved:
        return docker.resolve(self.client(), ref)

    def prepare(self, image: str) -> None:
        docker.ensure_image(self.client(), image)

    def image_env(self, image: str) -> Dict[str, str]:
        return hooks.image_env(self.client(), image)

    def run(
        self, spec, hidden, source, on_facts: OnJobFacts, write: WriteOutput, shape: Optional[workers.Shape] = None
    ) -> int:
        shape = workers.check_shape(shape)
        if not shape.multi:
            return docker.run(self.client(), run_kwargs(spec), write)
        self.check(spec, source, shape)
        kwargs_list = []
        for index in range(shape.workers):
            kwargs = run_kwargs(workers.local_worker_spec(spec, shape, index))
            devices = workers.worker_devices(shape, index)
            if devices is not None:
                kwargs["device_requests"] = docker.device_ids_request(devices)
            kwargs_list.append(kwargs)
        on_facts({"workers": str(shape.workers)})
        return docker.run_workers(self.client(), kwargs_list, write, shape.timeout_s, on_facts)

    def settings(self, shape: Optional[workers.Shape] = None) -> Dict[str, object]:
        return _with_shape({"backend": self.name}, shape, workers.WIRING_LOCAL)


class Podman:
    """The podman CLI on this host, for sites without a Docker daemon."""

    name = "podman"

    def __init__(self, options: settings.Options):
        pass  # podman takes no options of its own

    check = staticmethod(check_on_host)

    def preview(self, spec, hidden, source, shape: Optional[workers.Shape] = None) -> str:
        return "\n".join(shell_join(argv) for argv in self._argvs(spec, hidden, workers.check_shape(shape)))

    def _argvs(self, spec: LaunchSpec, hidden: Sequence[str], shape: workers.Shape) -> List[List[str]]:
        """One `podman run` per worker."""
        if not shape.multi:
            return [podman.podman_argv(spec, hidden)]
        return [
            podman.podman_argv(
                workers.local_worker_spec(spec, shape, index), hidden, workers.worker_devices(shape, index)
            )
            for index in range(shape.workers)
        ]

    def announce(self, spec, hidden, source, shape: Optional[workers.Shape] = None) -> str:
        return self.preview(spec, hidden, source, shape)

    # the image is this host's: podman's own functions, as they are
    resolve = staticmethod(podman.resolve)
    prepare = staticmethod(podman.ensure_image)
    image_env = staticmethod(podman.image_env)

    def run(
        self, spec, hidden, source, on_facts: OnJobFacts, write: WriteOutput, shape: Optional[workers.Shape] = None
    ) -> int:
        shape = workers.check_shape(shape)
        on_facts({"runtime": "podman"})
        label = "%s=%s" % (schema.RUN_ID_LABEL, spec.labels.get(schema.RUN_ID_LABEL))
        environment = caller_env(spec, hidden, os.environ)
        if not shape.multi:
            return podman.run(podman.podman_argv(spec, hidden), write, environment, label)
        self.check(spec, source, shape)
        on_facts({"workers": str(shape.workers)})
        labels = [[label, "%s=%d" % (workers.WORKER_LABEL, index)] for index in range(shape.workers)]
        return podman.run_workers(
            self._argvs(spec, hidden, shape), write, environment, labels, shape.timeout_s, on_facts
        )

    def settings(self, shape: Optional[workers.Shape] = None) -> Dict[str, object]:
        return _with_shape({"backend": self.name}, shape, workers.WIRING_LOCAL)


class Slurm:
    """A batch script submitted with sbatch; docker or podman in the job pull a missing digest,
    pyxis (enroot) imports it."""

    name = "slurm"

    def __init__(self, options: settings.Options):
        self.options = options.slurm  # as given: a --gres derived from --gpus is derived again on replay

    def check(self, spec, source, shape: Optional[workers.Shape] = None) -> None:
        self._job_options(spec, shape)

    def _job_options(
        self, spec: LaunchSpec, shape: Optional[workers.Shape] = None
    ) -> Tuple[slurm.SlurmOptions, workers.Shape]:
        """The options the script is written with: checked, --gres derived from the spec's GPUs
        (from the GPUs per task, for workers with GPUs of their own); the shape, checked."""
        refuse_claims(spec)
        cluster_images.check_pullable(spec.image)
        shape = workers.check_shape(shape)
        derive_from = replace(spec, gpus=None) if shape.gpus_per_task is not None else spec
        options = slurm.check_options(self.options, derive_from)
        return options, slurm.check_shape(options, shape)

    def preview(self, spec, hidden, source, shape: Optional[workers.Shape] = None) -> str:
        options, shape = self._job_options(spec, shape)
        return slurm.batch_script(spec, options, slurm_job.output_pattern(), hidden, shape=shape)

    def announce(self, spec, hidden, source, shape: Optional[workers.Shape] = None) -> str:
        return "submitting this batch script with %s:\n%s" % (
            " ".join(slurm.SUBMIT),
            self.preview(spec, hidden, source, shape),
        )

    resolve = staticmethod(cluster_images.resolve)  # the node pulls the image
    image_env = staticmethod(cluster_images.image_env)

    def prepare(self, image: str) -> None:
        slurm_job.check_controller()  # before any MLflow run exists; the node pulls the image

    def run(
        self, spec, hidden, source, on_facts: OnJobFacts, write: WriteOutput, shape: Optional[workers.Shape] = None
    ) -> int:
        script = self.preview(spec, hidden, source, shape)
        multi = shape is not None and shape.multi
        on_facts({"runtime": self.options.runtime, "workers": str(shape.workers) if multi else None})
        environment = caller_env(spec, hidden, os.environ)
        if multi:
            write = workers.failure_watcher(write, on_facts)
        return slurm_job.submit(script, environment, slurm_job.output_pattern(), write, on_facts)

    def settings(self, shape: Optional[workers.Shape] = None) -> Dict[str, object]:
        """The options as given: a --gres derived from --gpus is derived again on replay."""
        values = {
            key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self.options).items()
        }
        values = dict({key: value for key, value in values.items() if value not in (None, [])}, backend=self.name)
        return _with_shape(values, shape, workers.WIRING_SLURM)


class Kubernetes:
    """A batch/v1 Job created with the user's kubeconfig; the pod clones the commit."""

    name = "kubernetes"

    def __init__(self, options: settings.Options):
        self.options = options.kubernetes
        self.kube_context = options.kube_context
        self.manifest_format = options.output  # what --dry-run prints: yaml or json
        self.apis = _once(functools.partial(kubernetes_job.connect, context=options.kube_context))

    def job(
        self,
        spec: LaunchSpec,
        source: Optional[kubernetes.Source],
        hidden: Sequence[str] = (),
        shape: Optional[workers.Shape] = None,
    ):
        """The V1Job this engine submits for `spec`; UsageError for what it cannot run."""
        if self.manifest_format not in ("yaml", "json"):
            raise UsageError("-o must be yaml or json, not %r" % self.manifest_format)
        if source is None:
            raise UsageError("--on kubernetes needs a git checkout: the pod clones its commit")
        hook = hooks.hook_sources() if any(mount.kind == "hook" for mount in spec.mounts) else {}
        options = kubernetes.check_options(self.options)
        return kubernetes.build_job(spec, source, options, _secret_names(hidden), hook, shape)

    def check(self, spec, source, shape: Optional[workers.Shape] = None) -> None:
        self.job(spec, source, shape=shape)

    def preview(self, spec, hidden, source, shape: Optional[workers.Shape] = None) -> str:
        """The manifest; N workers: the headless Service and the Indexed Job, as one YAML stream
        or one v1 List (what `kubectl apply -f -` takes)."""
        shape = workers.check_shape(shape)
        job = self.job(spec, source, hidden, shape)
        objects = [kubernetes.build_service(job, shape), job] if shape.multi else [job]
        if self.manifest_format == "json":
            document = kubernetes.to_list(objects) if shape.multi else kubernetes.to_dict(job)
            return json.dumps(document, indent=2)
        return kubernetes.to_yaml_documents(objects)

    def announce(self, spec, hidden, source, shape: Optional[workers.Shape] = None) -> str:
        shape = workers.check_shape(shape)
        job = self.job(spec, source, hidden, shape)
        names = kubernetes.secret_env_names(spec, _secret_names(hidden))
        if shape.multi:
            line = "creating Service and Indexed Job %s/%s (%d workers, image %s)" % (
                job.metadata.namespace,
                job.metadata.name,
                shape.workers,
                spec.image,
            )
        else:
            line = "creating Job %s/%s (image %s)" % (job.metadata.namespace, job.metadata.name, spec.image)
        if names:
            line += "; values of %s come from Secret %s" % (", ".join(names), self.options.env_secret)
        return line

    resolve = staticmethod(cluster_images.resolve)  # the node pulls the image
    image_env = staticmethod(cluster_images.image_env)

    def prepare(self, image: str) -> None:
        self.apis()  # the kubeconfig is read before any run exists; the node pulls the image

    def run(
        self, spec, hidden, source, on_facts: OnJobFacts, write: WriteOutput, shape: Optional[workers.Shape] = None
    ) -> int:
        shape = workers.check_shape(shape)
        job = self.job(spec, source, hidden, shape)
        if not shape.multi:
            return kubernetes_job.submit(job, self.apis(), write, on_facts)
        service = kubernetes.build_service(job, shape)
        return kubernetes_job.submit_workers(job, service, self.apis(), write, on_facts, shape.timeout_s)

    def settings(self, shape: Optional[workers.Shape] = None) -> Dict[str, object]:
        values = {key: value for key, value in asdict(self.options).items() if value is not None}
        if self.kube_context:
            values["kube_context"] = self.kube_context
        return _with_shape(dict(values, backend=self.name), shape, workers.WIRING_KUBERNETES)


def _docker_worker_argv(spec: LaunchSpec, shape: workers.Shape, index: int, hidden: Sequence[str]) -> List[str]:
    """`docker run ...` of worker `index`, its own GPUs named when it has a slice of them."""
    argv = docker_argv(workers.local_worker_spec(spec, shape, index), hidden)
    devices = workers.worker_devices(shape, index)
    if devices is not None:
        argv[5:5] = ["--gpus", '"device=%s"' % ",".join(devices)]  # after --network host
    return argv


def _with_shape(values: Dict[str, object], shape: Optional[workers.Shape], wiring: str) -> Dict[str, object]:
    """settings() of a multi-worker launch also record its shape and wiring; one worker: as before."""
    if shape is None or not shape.multi:
        return values
    return dict(values, shape=workers.settings(shape, wiring))


def _once(connect: Callable[[], T]) -> Callable[[], T]:
    """connect() on the first call, not before (a dry run reaches no daemon, no API server),
    then the same client on every call."""
    return functools.lru_cache(maxsize=None)(connect)


def refuse_claims(spec: LaunchSpec) -> None:
    """A PersistentVolumeClaim exists only on Kubernetes: every other engine refuses one."""
    claims = [mount.source for mount in spec.mounts if mount.source.startswith(CLAIM_PREFIX)]
    if claims:
        raise UsageError("%s: a PersistentVolumeClaim mount needs --on kubernetes" % claims[0])


def caller_env(spec: LaunchSpec, hidden: Sequence[str], environ: Mapping[str, str]) -> Dict[str, str]:
    """The environment of a process that starts the container from a command line (podman,
    sbatch): ours, plus the values that line names (`-e NAME`) but does not contain."""
    env = dict(environ)
    env.update({name: value for name, value in spec.env.items() if is_secret(name) or name in hidden})
    return env


def _secret_names(hidden: Sequence[str]) -> Tuple[str, ...]:
    """Names whose values go through a Secret. MLFLOW_RUN_ID is hidden in a preview only
    because it is not known yet: it is no secret."""
    return tuple(name for name in hidden if name != "MLFLOW_RUN_ID")


ENGINES: Dict[str, Callable[[settings.Options], Engine]] = {
    "docker": Docker,
    "podman": Podman,
    "slurm": Slurm,
    "kubernetes": Kubernetes,
}


def get(name: str, options: settings.Options) -> Engine:
    if name not in ENGINES:
        raise UsageError("--on must be one of %s, not %r" % (", ".join(settings.NAMES), name))
    return ENGINES[name](options)
