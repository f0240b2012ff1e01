"""The engines whose job runs on a node the cluster picks: Slurm (a batch script) and
Kubernetes (a batch/v1 Job). The node pulls the image (launch/cluster_images.py); this host's
GPUs say nothing about the job.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, replace
from typing import Dict, Sequence, Tuple

from tfrepro.errors import UsageError
from tfrepro.launch import cluster_images, hooks, kubernetes, kubernetes_job, settings, slurm, slurm_job, workers
from tfrepro.launch.job import Job, OnJobFacts, WriteOutput, caller_env, once, refuse_claims, with_shape


class Slurm:
    """A batch script submitted with sbatch; docker or podman in the job pull a missing digest,
    pyxis (enroot) imports it."""

    name = "slurm"

    def __init__(self, options: settings.Options):
        self.options = options.slurm  # as given: a --gres derived from --gpus is derived again on replay

    def check(self, job: Job) -> None:
        self._job_options(job)

    def _job_options(self, job: Job) -> Tuple[slurm.SlurmOptions, workers.Shape]:
        """The options the script is written with: checked, --gres derived from the spec's GPUs
        (from the GPUs per task, for workers with GPUs of their own); the shape, checked."""
        refuse_claims(job.spec)
        cluster_images.check_pullable(job.spec.image)
        shape = workers.check_shape(job.shape)
        derive_from = replace(job.spec, gpus=None) if shape.gpus_per_task is not None else job.spec
        options = slurm.check_options(self.options, derive_from)
        return options, slurm.check_shape(options, shape)

    def preview(self, job: Job) -> str:
        options, shape = self._job_options(job)
        return slurm.batch_script(job.spec, options, slurm_job.output_pattern(), job.hidden, shape=shape)

    def announce(self, job: Job) -> str:
        return "submitting this batch script with %s:\n%s" % (" ".join(slurm.SUBMIT), self.preview(job))

    resolve = staticmethod(cluster_images.resolve)  # the node pulls the image
    image_env = staticmethod(cluster_images.image_env)

    def prepare(self, image: str) -> None:
        slurm_job.check_controller()  # before any MLflow run exists; the node pulls the image

    def run(self, job: Job, on_facts: OnJobFacts, write: WriteOutput) -> int:
        script = self.preview(job)
        multi = job.shape.multi
        on_facts({"runtime": self.options.runtime, "workers": str(job.shape.workers) if multi else None})
        if multi:
            write = workers.failure_watcher(write, on_facts)
        return slurm_job.submit(script, caller_env(job, os.environ), slurm_job.output_pattern(), write, on_facts)

    def settings(self, shape: workers.Shape = workers.ONE) -> Dict[str, object]:
        """The options as given: a --gres derived from --gpus is derived again on replay."""
        values = {
            key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self.options).items()
        }
        values = dict({key: value for key, value in values.items() if value not in (None, [])}, backend=self.name)
        return with_shape(values, shape, workers.WIRING_SLURM)


class Kubernetes:
    """A batch/v1 Job created with the user's kubeconfig; the pod clones the commit."""

    name = "kubernetes"

    def __init__(self, options: settings.Options):
        self.options = options.kubernetes
        self.kube_context = options.kube_context
        self.manifest_format = options.output  # what --dry-run prints: yaml or json
        self.apis = once(functools.partial(kubernetes_job.connect, context=options.kube_context))

    def job(self, job: Job):
        """The V1Job this engine submits for `job`; UsageError for what it cannot run."""
        if self.manifest_format not in ("yaml", "json"):
            raise UsageError("-o must be yaml or json, not %r" % self.manifest_format)
        if job.source is None:
            raise UsageError("--on kubernetes needs a git checkout: the pod clones its commit")
        hook = hooks.hook_sources() if any(mount.kind == "hook" for mount in job.spec.mounts) else {}
        options = kubernetes.check_options(self.options)
        return kubernetes.build_job(job.spec, job.source, options, _secret_names(job.hidden), hook, job.shape)

    def check(self, job: Job) -> None:
        self.job(job)

    def preview(self, job: Job) -> str:
        """The manifest; N workers: the headless Service and the Indexed Job, as one YAML stream
        or one v1 List (what `kubectl apply -f -` takes)."""
        shape = workers.check_shape(job.shape)
        manifest = self.job(job)
        objects = [kubernetes.build_service(manifest, shape), manifest] if shape.multi else [manifest]
        if self.manifest_format == "json":
            document = kubernetes.to_list(objects) if shape.multi else kubernetes.to_dict(manifest)
            return json.dumps(document, indent=2)
        return kubernetes.to_yaml_documents(objects)

    def announce(self, job: Job) -> str:
        shape = workers.check_shape(job.shape)
        metadata = self.job(job).metadata
        names = kubernetes.secret_env_names(job.spec, _secret_names(job.hidden))
        if shape.multi:
            line = "creating Service and Indexed Job %s/%s (%d workers, image %s)" % (
                metadata.namespace,
                metadata.name,
                shape.workers,
                job.spec.image,
            )
        else:
            line = "creating Job %s/%s (image %s)" % (metadata.namespace, metadata.name, job.spec.image)
        if names:
            line += "; values of %s come from Secret %s" % (", ".join(names), self.options.env_secret)
        return line

    resolve = staticmethod(cluster_images.resolve)  # the node pulls the image
    image_env = staticmethod(cluster_images.image_env)

    def prepare(self, image: str) -> None:
        self.apis()  # the kubeconfig is read before any run exists; the node pulls the image

    def run(self, job: Job, on_facts: OnJobFacts, write: WriteOutput) -> int:
        shape = workers.check_shape(job.shape)
        manifest = self.job(job)
        if not shape.multi:
            return kubernetes_job.submit(manifest, self.apis(), write, on_facts)
        service = kubernetes.build_service(manifest, shape)
        return kubernetes_job.submit_workers(manifest, service, self.apis(), write, on_facts, shape.timeout_s)

    def settings(self, shape: workers.Shape = workers.ONE) -> Dict[str, object]:
        values = {key: value for key, value in asdict(self.options).items() if value is not None}
        if self.kube_context:
            values["kube_context"] = self.kube_context
        return with_shape(dict(values, backend=self.name), shape, workers.WIRING_KUBERNETES)


def _secret_names(hidden: Sequence[str]) -> Tuple[str, ...]:
    """Names whose values go through a Secret. MLFLOW_RUN_ID is hidden in a preview only
    because it is not known yet: it is no secret."""
    return tuple(name for name in hidden if name != "MLFLOW_RUN_ID")
