"""Kubernetes I/O, kept thin: submit the Job with the user's kubeconfig, wait for its pod,
stream the logs, return the training container's exit code; Ctrl-C/SIGTERM deletes the Job.
N workers (submit_workers): the headless Service, then the Indexed Job; every pod's logs
followed as local_workers follows containers (lines prefixed by worker), the Job and the
Service deleted at the first worker that fails, past the timeout, or on Ctrl-C/SIGTERM.

Not run against a live cluster (none can run here): tested against the official client
talking to a local HTTP server that answers with recorded API responses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from typing import Any, Iterator, List, Optional, Tuple

from tfrepro.errors import SchedulerError
from tfrepro.launch import local_workers, signals
from tfrepro.launch.job import OnJobFacts, WriteOutput, no_facts
from tfrepro.launch.kubernetes import _client
from tfrepro.launch.kubernetes_pod import CONTAINER, INIT_CONTAINER

log = logging.getLogger(__name__)

POLL = 1.0
# a pod that waits for one of these will not start by itself
STUCK = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError")


def connect(kubeconfig: Optional[str] = None, context: Optional[str] = None) -> Tuple[object, object]:
    """(BatchV1Api, CoreV1Api) from the user's kubeconfig ($KUBECONFIG, ~/.kube/config), or in-cluster."""
    _client()
    from kubernetes import client, config

    # the client reads $KUBECONFIG once, at import: read it now
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
    try:
        config.load_kube_config(config_file=kubeconfig, context=context)
    except Exception as kube_exc:
        try:
            config.load_incluster_config()
        except Exception:
            raise SchedulerError("no Kubernetes configuration: %s" % _one_line(kube_exc)) from None
    api = client.ApiClient()
    return client.BatchV1Api(api), client.CoreV1Api(api)


def _one_line(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    if status and body:
        try:
            return "%s %s: %s" % (status, reason, json.loads(body).get("message", ""))[:300]
        except (ValueError, AttributeError):
            pass
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def submit(job, apis, write: WriteOutput, on_facts: OnJobFacts = no_facts, poll: float = POLL) -> int:
    """Create the Job, wait for its pod, stream the checkout's then the training's logs to
    `write`, return the training container's exit code (the checkout's when it failed).
    Ctrl-C or SIGTERM deletes the Job and re-raises KeyboardInterrupt."""
    batch, core = apis
    namespace, name = job.metadata.namespace, job.metadata.name
    created = _create_job(batch, job)
    on_facts({"namespace": namespace, "job_name": name, "job_id": created.metadata.uid})
    log.info("created Job %s/%s", namespace, name)
    with signals.terminating(), _deleted_on_error(batch, namespace, name, say_interrupted=True):
        pod = _wait_for_pod(core, namespace, name, poll)
        on_facts({"pod": pod.metadata.name, "nodes": pod.spec.node_name or ""})
        _copy_logs(core, namespace, pod.metadata.name, INIT_CONTAINER, write, follow=False)
        checkout_status = _terminated(pod, INIT_CONTAINER, init=True)
        if checkout_status not in (None, 0):
            return checkout_status
        _copy_logs(core, namespace, pod.metadata.name, CONTAINER, write, follow=True)
        return _exit_code(core, namespace, pod.metadata.name, poll)


@contextlib.contextmanager
def _deleted_on_error(
    batch, namespace: str, name: str, errors=(KeyboardInterrupt, SchedulerError), say_interrupted: bool = False
) -> Iterator[None]:
    """Delete the Job when the block raises one of `errors` (Ctrl-C/SIGTERM, the job lost), then re-raise."""
    try:
        yield
    except errors as exc:
        if say_interrupted and isinstance(exc, KeyboardInterrupt):
            log.info("deleting Job %s/%s", namespace, name)
        _delete(batch, namespace, name)
        raise


def _create_job(batch, job):
    namespace, name = job.metadata.namespace, job.metadata.name
    try:
        return batch.create_namespaced_job(namespace, job)
    except Exception as exc:  # ApiException (refused) or urllib3's MaxRetryError (unreachable)
        raise SchedulerError("Kubernetes did not take Job %s/%s: %s" % (namespace, name, _one_line(exc))) from None


def _delete(batch, namespace: str, name: str) -> None:
    try:
        batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
    except Exception:
        pass  # ttlSecondsAfterFinished removes it in the end


def _status(pod, container: str, init: bool = False):
    statuses = (pod.status.init_container_statuses if init else pod.status.container_statuses) or []
    return next((status for status in statuses if status.name == container), None)


def _terminated(pod, container: str, init: bool = False) -> Optional[int]:
    status = _status(pod, container, init)
    if status and status.state and status.state.terminated:
        return int(status.state.terminated.exit_code)
    return None


def _started(pod) -> bool:
    """The pod's training container runs, or the pod has ended; SchedulerError when one of its
    containers is stuck (an image that does not pull, a config that does not create)."""
    for container, init in ((INIT_CONTAINER, True), (CONTAINER, False)):
        status = _status(pod, container, init)
        waiting = status.state.waiting if status and status.state else None
        if waiting and waiting.reason in STUCK:
            raise SchedulerError("pod %s: %s: %s" % (pod.metadata.name, waiting.reason, (waiting.message or "")[:200]))
    status = _status(pod, CONTAINER)
    return pod.status.phase in ("Succeeded", "Failed") or bool(
        status and status.state and (status.state.running or status.state.terminated)
    )


def _wait_for_pod(core, namespace: str, name: str, poll: float):
    """The Job's pod once its training container runs, or once the pod has ended."""
    phase_logged = None
    while True:
        pods = core.list_namespaced_pod(namespace, label_selector="job-name=%s" % name).items
        pod = pods[0] if pods else None
        if pod is not None:
            if _started(pod):
                return pod
            if pod.status.phase != phase_logged:
                phase_logged = pod.status.phase
                log.info("pod %s is %s", pod.metadata.name, phase_logged)
        time.sleep(poll)


def _copy_logs(core, namespace: str, pod: str, container: str, write, follow: bool) -> None:
    for chunk in _log_chunks(core, namespace, pod, container, follow):
        write(chunk)


def _log_chunks(core, namespace: str, pod: str, container: str, follow: bool):
    """The container's output, as the API server streams it; an unreadable log is a SchedulerError
    when following it, else nothing."""
    try:
        response = core.read_namespaced_pod_log(
            pod, namespace, container=container, follow=follow, _preload_content=False
        )
    except Exception as exc:
        if follow:
            raise SchedulerError("cannot read the logs of pod %s: %s" % (pod, _one_line(exc))) from None
        return
    try:
        for chunk in response.stream(4096):
            yield chunk
    finally:
        response.release_conn()


def _exit_code(core, namespace: str, pod: str, poll: float, stopped: Optional[threading.Event] = None) -> int:
    """The training container's exit code, once the kubelet has reported it (STOPPED once
    `stopped` is set before that)."""
    while True:
        reported = core.read_namespaced_pod(pod, namespace)
        code = _terminated(reported, CONTAINER)
        if code is not None:
            return code
        if reported.status.phase == "Failed":
            return 1
        if stopped is not None and stopped.is_set():
            return STOPPED
        time.sleep(poll)


INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
STOPPED = 143  # a worker pod deleted with its Job: SIGTERM's status


def submit_workers(
    job,
    service,
    apis,
    write: WriteOutput,
    on_facts: OnJobFacts = no_facts,
    timeout_s: Optional[float] = None,
    poll: float = POLL,
) -> int:
    """Create the headless Service and the Indexed Job, wait for its N pods, follow them as one
    job and return 0 or the status of the first worker that failed. The Service goes with the
    job's end; the Job itself is deleted when a worker failed, past `timeout_s`, on
    Ctrl-C/SIGTERM (KeyboardInterrupt re-raised), and stays for ttlSecondsAfterFinished when
    all succeeded."""
    batch, core = apis
    namespace, name, count = job.metadata.namespace, job.metadata.name, job.spec.completions
    try:
        core.create_namespaced_service(namespace, service)
    except Exception as exc:
        raise SchedulerError("Kubernetes did not take Service %s/%s: %s" % (namespace, name, _one_line(exc))) from None
    try:
        created = _create_job(batch, job)
        on_facts({"namespace": namespace, "job_name": name, "job_id": created.metadata.uid, "workers": str(count)})
        log.info("created Service and Indexed Job %s/%s (%d workers)", namespace, name, count)
        started = time.monotonic()
        with signals.terminating(), _deleted_on_error(batch, namespace, name):
            pods = _wait_for_pods(core, namespace, name, count, poll, timeout_s)
        if timeout_s is not None:
            timeout_s = max(0.001, timeout_s - (time.monotonic() - started))
        on_facts({"pod": pods[0].metadata.name, "nodes": ",".join(sorted({pod.spec.node_name or "" for pod in pods}))})
        _copy_logs(core, namespace, pods[0].metadata.name, INIT_CONTAINER, write, follow=False)
        followed = [_PodWorker(core, batch, namespace, name, pod, poll) for pod in pods]
        with _deleted_on_error(batch, namespace, name, errors=BaseException):
            status = local_workers.supervise(followed, write, timeout_s, on_facts=on_facts)
        if status:
            _delete(batch, namespace, name)
        return status
    finally:
        _delete_service(core, namespace, name)


def _index(pod) -> int:
    return int((pod.metadata.annotations or {}).get(INDEX_ANNOTATION, "0"))


class _PodWorker:
    """One pod of the Indexed Job, for local_workers.supervise(); stopping one stops the Job."""

    def __init__(self, core, batch, namespace: str, job_name: str, pod, poll: float):
        self.core, self.batch, self.namespace, self.job_name, self.poll = core, batch, namespace, job_name, poll
        self.pod = pod.metadata.name
        self.index = _index(pod)
        self.checkout = _terminated(pod, INIT_CONTAINER, init=True)
        self.stopped = threading.Event()

    def chunks(self):
        if self.checkout not in (None, 0):
            return
        yield from _log_chunks(self.core, self.namespace, self.pod, CONTAINER, follow=True)

    def wait(self) -> int:
        """The training container's exit code once reported; once stopped, what it is by then."""
        if self.checkout not in (None, 0):
            return self.checkout
        return _exit_code(self.core, self.namespace, self.pod, self.poll, self.stopped)

    def stop(self) -> None:
        self.stopped.set()
        _delete(self.batch, self.namespace, self.job_name)


def _wait_for_pods(
    core, namespace: str, name: str, count: int, poll: float, timeout_s: Optional[float] = None
) -> List[Any]:
    """The Job's `count` pods, by index, once each training container runs or each pod has ended
    (or those there are once one has failed: the Job stops the others); SchedulerError past `timeout_s`."""
    phases_logged = None
    deadline = time.monotonic() + timeout_s if timeout_s is not None else None
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            raise SchedulerError(
                "the %d workers did not finish within %g s (a pod never started): the Job was deleted"
                % (count, timeout_s)
            )
        pods = core.list_namespaced_pod(namespace, label_selector="job-name=%s" % name).items
        ready = []
        for pod in pods:
            if _started(pod):
                ready.append(pod)
        if len(ready) >= count or any(pod.status.phase == "Failed" for pod in ready):  # a failure ends the Job
            return sorted(ready, key=_index)
        phases = ", ".join(sorted("%s %s" % (pod.metadata.name, pod.status.phase) for pod in pods))
        if phases != phases_logged:
            phases_logged = phases
            log.info("%d of %d worker pods started%s", len(ready), count, (": " + phases) if phases else "")
        time.sleep(poll)


def _delete_service(core, namespace: str, name: str) -> None:
    try:
        core.delete_namespaced_service(name, namespace)
    except Exception:
        log.warning("could not delete Service %s/%s (kubectl delete service %s)", namespace, name, name)
