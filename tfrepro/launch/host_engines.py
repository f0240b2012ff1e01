"""The engines that run the job on this host: Docker (docker-py) and Podman (its CLI).

Both mount the checkout, refuse a PersistentVolumeClaim, and run N workers as N containers
followed as one job (launch/local_workers.py).
"""

from __future__ import annotations

import os
from typing import Dict, List

from tfrepro import schema
from tfrepro.launch import docker, hooks, podman, settings, workers
from tfrepro.launch.job import Job, OnJobFacts, WriteOutput, caller_env, once, refuse_claims, with_shape
from tfrepro.launch.spec import docker_argv, run_kwargs
from tfrepro.termsafe import shell_join


def check_on_host(job: Job) -> None:
    """check() of the engines that run the job on this host: no claim, and the shape fits here."""
    refuse_claims(job.spec)
    workers.check_local(job.spec, workers.check_shape(job.shape))


class Docker:
    """Docker Engine on this host (docker-py); the daemon is reached on first use only."""

    name = "docker"

    def __init__(self, options: settings.Options):
        self.client = once(docker.connect)

    check = staticmethod(check_on_host)

    def preview(self, job: Job) -> str:
        shape = workers.check_shape(job.shape)
        if not shape.multi:
            return shell_join(docker_argv(job.spec, job.hidden))
        return "\n".join(shell_join(_docker_worker_argv(job, index)) for index in range(shape.workers))

    def announce(self, job: Job) -> str:
        return self.preview(job)

    def resolve(self, ref: str) -> docker.Resolved:
        return docker.resolve(self.client(), ref)

    def prepare(self, image: str) -> None:
        docker.ensure_image(self.client(), image)

    def image_env(self, image: str) -> Dict[str, str]:
        return hooks.image_env(self.client(), image)

    def run(self, job: Job, on_facts: OnJobFacts, write: WriteOutput) -> int:
        shape = workers.check_shape(job.shape)
        if not shape.multi:
            return docker.run(self.client(), run_kwargs(job.spec), write)
        self.check(job)
        kwargs_list = []
        for index in range(shape.workers):
            kwargs = run_kwargs(workers.local_worker_spec(job.spec, shape, index))
            devices = workers.worker_devices(shape, index)
            if devices is not None:
                kwargs["device_requests"] = docker.device_ids_request(devices)
            kwargs_list.append(kwargs)
        on_facts({"workers": str(shape.workers)})
        return docker.run_workers(self.client(), kwargs_list, write, shape.timeout_s, on_facts)

    def settings(self, shape: workers.Shape = workers.ONE) -> Dict[str, object]:
        return with_shape({"backend": self.name}, shape, workers.WIRING_LOCAL)


class Podman:
    """The podman CLI on this host, for sites without a Docker daemon."""

    name = "podman"

    def __init__(self, options: settings.Options):
        pass  # podman takes no options of its own

    check = staticmethod(check_on_host)

    def preview(self, job: Job) -> str:
        return "\n".join(shell_join(argv) for argv in _podman_argvs(job))

    def announce(self, job: Job) -> str:
        return self.preview(job)

    # the image is this host's: podman's own functions, as they are
    resolve = staticmethod(podman.resolve)
    prepare = staticmethod(podman.ensure_image)
    image_env = staticmethod(podman.image_env)

    def run(self, job: Job, on_facts: OnJobFacts, write: WriteOutput) -> int:
        shape = workers.check_shape(job.shape)
        on_facts({"runtime": "podman"})
        label = "%s=%s" % (schema.RUN_ID_LABEL, job.spec.labels.get(schema.RUN_ID_LABEL))
        environment = caller_env(job, os.environ)
        if not shape.multi:
            return podman.run(podman.podman_argv(job.spec, job.hidden), write, environment, label)
        self.check(job)
        on_facts({"workers": str(shape.workers)})
        labels = [[label, "%s=%d" % (workers.WORKER_LABEL, index)] for index in range(shape.workers)]
        return podman.run_workers(_podman_argvs(job), write, environment, labels, shape.timeout_s, on_facts)

    def settings(self, shape: workers.Shape = workers.ONE) -> Dict[str, object]:
        return with_shape({"backend": self.name}, shape, workers.WIRING_LOCAL)


def _docker_worker_argv(job: Job, index: int) -> List[str]:
    """`docker run ...` of worker `index`, its own GPUs named when it has a slice of them."""
    argv = docker_argv(workers.local_worker_spec(job.spec, job.shape, index), job.hidden)
    devices = workers.worker_devices(job.shape, index)
    if devices is not None:
        argv[5:5] = ["--gpus", '"device=%s"' % ",".join(devices)]  # after --network host
    return argv


def _podman_argvs(job: Job) -> List[List[str]]:
    """One `podman run` per worker."""
    shape = workers.check_shape(job.shape)
    if not shape.multi:
        return [podman.podman_argv(job.spec, job.hidden)]
    return [
        podman.podman_argv(
            workers.local_worker_spec(job.spec, shape, index), job.hidden, workers.worker_devices(shape, index)
        )
        for index in range(shape.workers)
    ]
