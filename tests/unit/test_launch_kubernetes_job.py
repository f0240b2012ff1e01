"""Kubernetes engine, the I/O half: the official client, configured from a kubeconfig, against a
local HTTP server that answers with recorded API responses (no live cluster can run here)."""

import json
import logging
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tfrepro.errors import SchedulerError
from tfrepro.launch import kubernetes, kubernetes_job, workers
from tfrepro.launch.spec import LaunchSpec, Mount

pytest.importorskip("kubernetes", reason="pip install 'tfrepro[test]'")

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "kubernetes"
RUN_ID = "0123456789abcdef0123456789abcdef"
NAME = "tfrepro-" + RUN_ID
POD = NAME + "-x7k2p"
JOBS = "/apis/batch/v1/namespaces/ml-team/jobs"
PODS = "/api/v1/namespaces/ml-team/pods"


def recorded(name):
    return (RECORDED / name).read_bytes()


class FakeApiServer:
    """Answers each (method, path[, container]) with its queued responses; the last one repeats."""

    def __init__(self):
        self.routes, self.requests = {}, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append((self.command, url.path, query, body, self.headers.get("Authorization")))
                key = (self.command, url.path) + tuple(query.get("container", []))
                queue = server.routes.get(key) or [(404, b'{"kind":"Status","code":404}')]
                status, payload = queue.pop(0) if len(queue) > 1 else queue[0]
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if url.path.endswith("/log") else "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def on(self, method, path, *responses, container=None):
        key = (method, path) + ((container,) if container else ())
        self.routes[key] = [(200, r) if isinstance(r, bytes) else r for r in responses]

    def seen(self, method, path):
        return [r for r in self.requests if r[0] == method and r[1] == path]


@pytest.fixture
def api_server(tmp_path, monkeypatch):
    server = FakeApiServer()
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "test", "cluster": {"server": server.url}}],
                "users": [{"name": "alice", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "alice"}}],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    yield server
    server.httpd.shutdown()


@pytest.fixture
def logged():
    """The lines the engine logs (the CLI shows them as `tfrepro: ...`)."""
    lines, logger = [], logging.getLogger("tfrepro.launch.kubernetes_job")
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def the_job():
    spec = LaunchSpec(
        image="registry.example/ml/tf@sha256:" + "ab" * 32,
        command=("python", "train.py"),
        mounts=(Mount("<checkout>", "/workspace", False, "repo"),),
        env={"MLFLOW_TRACKING_URI": "http://mlflow:5000"},
        labels={"tfrepro.run_id": RUN_ID},
    )
    return kubernetes.build_job(
        spec,
        kubernetes.Source("https://git.example/x.git", "a" * 40),
        kubernetes.KubernetesOptions(namespace="ml-team"),
    )


def submit(server, write=None):
    out, facts = [], {}
    status = kubernetes_job.submit(the_job(), kubernetes_job.connect(), write or out.append, facts.update, poll=0.01)
    return status, b"".join(out), facts


def test_submit_wait_stream_and_exit_code(api_server, logged):
    api_server.on("POST", JOBS, (201, recorded("job-created.json")))
    api_server.on("GET", PODS, recorded("pods-none.json"), recorded("pods-pending.json"), recorded("pods-running.json"))
    api_server.on("GET", PODS + "/" + POD + "/log", b"tfrepro: checked out aaaa\n", container="checkout")
    api_server.on("GET", PODS + "/" + POD + "/log", b"epoch 1/2\nepoch 2/2\n", container="train")
    api_server.on("GET", PODS + "/" + POD, recorded("pod-running.json"), recorded("pod-succeeded.json"))
    status, out, facts = submit(api_server)
    assert status == 0
    assert out == b"tfrepro: checked out aaaa\nepoch 1/2\nepoch 2/2\n"
    assert facts == {
        "namespace": "ml-team",
        "job_name": NAME,
        "job_id": "3c1d9a8e-5b2f-4e7a-9d0c-2f6b8e1a4c77",
        "pod": POD,
        "nodes": "gpu-node-7",
    }
    assert logged[0] == "created Job ml-team/" + NAME and "is Pending" in logged[1]
    method, path, query, body, auth = api_server.seen("POST", JOBS)[0]
    assert auth == "Bearer t0ken" and json.loads(body) == kubernetes.to_dict(the_job())
    _, _, query, _, _ = api_server.seen("GET", PODS)[0]
    assert query["labelSelector"] == ["job-name=" + NAME]
    follow = [r for r in api_server.seen("GET", PODS + "/" + POD + "/log") if r[2]["container"] == ["train"]]
    assert follow[0][2]["follow"] == ["True"]  # Go's ParseBool takes it
    assert not api_server.seen("DELETE", JOBS + "/" + NAME)


def test_the_training_containers_exit_code_is_returned(api_server):
    api_server.on("POST", JOBS, (201, recorded("job-created.json")))
    api_server.on("GET", PODS, recorded("pods-running.json"))
    api_server.on("GET", PODS + "/" + POD + "/log", b"Traceback...\n", container="train")
    api_server.on("GET", PODS + "/" + POD, recorded("pod-failed-exit3.json"))
    assert submit(api_server)[0] == 3


def test_a_failed_checkout_returns_its_status(api_server):
    api_server.on("POST", JOBS, (201, recorded("job-created.json")))
    api_server.on("GET", PODS, recorded("pods-checkout-failed.json"))
    api_server.on("GET", PODS + "/" + POD + "/log", b"fatal: couldn't find remote ref\n", container="checkout")
    status, out, _ = submit(api_server)
    assert status == 128 and b"couldn't find remote ref" in out


def test_an_image_that_cannot_be_pulled_is_one_error_and_the_job_is_deleted(api_server):
    api_server.on("POST", JOBS, (201, recorded("job-created.json")))
    api_server.on("GET", PODS, recorded("pods-image-pull-backoff.json"))
    api_server.on("DELETE", JOBS + "/" + NAME, recorded("status-deleted.json"))
    with pytest.raises(SchedulerError, match="ImagePullBackOff: Back-off pulling image"):
        submit(api_server)
    _, _, query, _, _ = api_server.seen("DELETE", JOBS + "/" + NAME)[0]
    assert query["propagationPolicy"] == ["Background"]  # the pod goes with the Job


def ctrl_c():
    raise KeyboardInterrupt()


def sigterm():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the handler raises here


@pytest.mark.parametrize("stop", [ctrl_c, sigterm])
def test_ctrl_c_or_sigterm_deletes_the_job(api_server, logged, stop):
    api_server.on("POST", JOBS, (201, recorded("job-created.json")))
    api_server.on("GET", PODS, recorded("pods-running.json"))
    api_server.on("GET", PODS + "/" + POD + "/log", b"epoch 1/2\n", container="train")
    api_server.on("DELETE", JOBS + "/" + NAME, recorded("status-deleted.json"))
    before = signal.getsignal(signal.SIGTERM)

    def interrupted(chunk):
        if b"epoch" in chunk:
            stop()

    with pytest.raises(KeyboardInterrupt):
        submit(api_server, interrupted)
    assert len(api_server.seen("DELETE", JOBS + "/" + NAME)) == 1
    assert logged[-1] == "deleting Job ml-team/" + NAME
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_refusal_is_one_line(api_server):
    api_server.on("POST", JOBS, (403, recorded("status-forbidden.json")))
    with pytest.raises(SchedulerError, match='403 Forbidden: jobs.batch .* is forbidden: User "alice" cannot create'):
        submit(api_server)


def test_no_api_server_is_one_line(api_server):
    api_server.httpd.shutdown()
    api_server.httpd.server_close()
    with pytest.raises(SchedulerError, match="Kubernetes did not take Job ml-team/" + NAME):
        submit(api_server)


def test_no_configuration_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(SchedulerError, match="no Kubernetes configuration"):
        kubernetes_job.connect()


# -- N workers: the headless Service, the Indexed Job, every pod followed ----------------

SERVICES = "/api/v1/namespaces/ml-team/services"


def indexed_pods(*indexes):
    """The recorded running pod, once per index, named and annotated as the Job controller does."""
    listing = json.loads(recorded("pods-running.json"))
    template = listing["items"][0]
    items = []
    for index in indexes:
        pod = json.loads(json.dumps(template))
        pod["metadata"]["name"] = "%s-%d-x7k2p" % (NAME, index)
        pod["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": str(index)}
        items.append(pod)
    return json.dumps(dict(listing, items=items)).encode()


def two_workers_job():
    spec = LaunchSpec(
        image="registry.example/ml/tf@sha256:" + "ab" * 32,
        command=("python", "train.py"),
        mounts=(Mount("<checkout>", "/workspace", False, "repo"),),
        labels={"tfrepro.run_id": RUN_ID},
    )
    shape = workers.Shape(workers=2)
    job = kubernetes.build_job(
        spec,
        kubernetes.Source("https://git.example/x.git", "a" * 40),
        kubernetes.KubernetesOptions(namespace="ml-team"),
        shape=shape,
    )
    return job, kubernetes.build_service(job, shape)


def submit_two(server, timeout_s=None):
    out, facts = [], {}
    job, service = two_workers_job()
    status = kubernetes_job.submit_workers(
        job, service, kubernetes_job.connect(), out.append, facts.update, timeout_s, poll=0.01
    )
    return status, b"".join(out), facts


def pod_path(index):
    return "%s/%s-%d-x7k2p" % (PODS, NAME, index)


def test_two_workers_service_then_job_every_pod_followed(api_server, logged):
    api_server.on("POST", SERVICES, (201, b'{"kind": "Service", "metadata": {"name": "%s"}}' % NAME.encode()))
    api_server.on("POST", JOBS, (201, recorded("job-created.json")))
    api_server.on("GET", PODS, indexed_pods(0), indexed_pods(1, 0))
    api_server.on("GET", pod_path(0) + "/log", b"tfrepro: checked out aaaa\n", container="checkout")
    for index in (0, 1):
        api_server.on("GET", pod_path(index) + "/log", b"epoch 1/2\n", container="train")
        api_server.on("GET", pod_path(index), recorded("pod-succeeded.json"))
    api_server.on("DELETE", SERVICES + "/" + NAME, recorded("status-deleted.json"))
    status, out, facts = submit_two(api_server)
    assert status == 0
    assert out.startswith(b"tfrepro: checked out aaaa\n")
    assert sorted(out.splitlines()[1:]) == [b"[worker 0] epoch 1/2", b"[worker 1] epoch 1/2"]
    assert facts["workers"] == "2" and facts["pod"] == NAME + "-0-x7k2p"
    assert logged[0] == "created Service and Indexed Job ml-team/%s (2 workers)" % NAME
    assert "1 of 2 worker pods started" in logged[1]
    requests = [(method, path) for method, path, _, _, _ in api_server.requests]
    assert requests.index(("POST", SERVICES)) < requests.index(("POST", JOBS))
    assert json.loads(api_server.seen("POST", SERVICES)[0][3])["spec"]["clusterIP"] == "None"
    assert len(api_server.seen("DELETE", SERVICES + "/" + NAME)) == 1  # the Service goes with the job
    assert not api_server.seen("DELETE", JOBS + "/" + NAME)  # the Job stays for its TTL


def test_a_failing_worker_deletes_the_job_and_the_service(api_server, logged):
    api_server.on("POST", SERVICES, (201, b'{"kind": "Service"}'))
    api_server.on("POST", JOBS, (201, recorded("job-created.json")))
    api_server.on("GET", PODS, indexed_pods(0, 1))
    api_server.on("GET", pod_path(0) + "/log", b"waiting for worker 1\n", container="train")
    api_server.on("GET", pod_path(0), recorded("pod-running.json"))
    api_server.on("GET", pod_path(1) + "/log", b"Traceback\n", container="train")
    api_server.on("GET", pod_path(1), recorded("pod-failed-exit3.json"))
    api_server.on("DELETE", JOBS + "/" + NAME, recorded("status-deleted.json"))
    api_server.on("DELETE", SERVICES + "/" + NAME, recorded("status-deleted.json"))
    status, out, _ = submit_two(api_server)
    assert status == 3
    assert api_server.seen("DELETE", JOBS + "/" + NAME) and api_server.seen("DELETE", SERVICES + "/" + NAME)


def test_pods_that_never_start_time_out_and_nothing_is_left(api_server):
    api_server.on("POST", SERVICES, (201, b'{"kind": "Service"}'))
    api_server.on("POST", JOBS, (201, recorded("job-created.json")))
    api_server.on("GET", PODS, indexed_pods(0), recorded("pods-pending.json"))
    api_server.on("DELETE", JOBS + "/" + NAME, recorded("status-deleted.json"))
    api_server.on("DELETE", SERVICES + "/" + NAME, recorded("status-deleted.json"))
    with pytest.raises(SchedulerError, match=r"^the 2 workers did not finish within 0.5 s \(a pod never started\)"):
        submit_two(api_server, timeout_s=0.5)
    assert api_server.seen("DELETE", JOBS + "/" + NAME) and api_server.seen("DELETE", SERVICES + "/" + NAME)


def test_a_refused_service_creates_no_job(api_server):
    api_server.on("POST", SERVICES, (403, recorded("status-forbidden.json")))
    with pytest.raises(SchedulerError, match="Kubernetes did not take Service ml-team/" + NAME):
        submit_two(api_server)
    assert not api_server.seen("POST", JOBS)
