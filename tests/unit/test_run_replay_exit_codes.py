"""Every exit code `tfrepro run` and `tfrepro replay` can give (tfrepro/cli/status.py), and the
recorded-launch pipeline they share (launch/pipeline.py), end to end in-process: main([...]), a
real sqlite MLflow store in tmp, a real git repository, and a fake engine in place of Docker
that logs metrics the way the callback in a container would."""

import io
import json
import shutil
import socket

import pytest

from tests.helpers import host
from tests.helpers.git_repos import git, make_repo
from tfrepro.cli import main, status
from tfrepro.errors import DockerError
from tfrepro.launch import docker, engines

IMAGE = "registry.example.com/team/train:1"
DIGEST = "registry.example.com/team/train@sha256:" + "ab" * 32


class FakeEngine:
    """The engine interface (engines.py) with no daemon: run() logs `metrics` on the run the
    launcher created, as the callback inside the container would, and exits with `exit_status`."""

    name = "docker"

    def __init__(self, metrics=None, exit_status=0, fail=None, fail_resolve=None):
        self.metrics = metrics or {"loss": [1.0, 0.5]}
        self.exit_status = exit_status
        self.fail = fail
        self.fail_resolve = fail_resolve
        self.specs = []

    def check(self, job):
        pass

    def preview(self, job):
        return "fake-run %s %s" % (job.spec.image, " ".join(job.spec.command))

    announce = preview

    def resolve(self, ref):
        if self.fail_resolve:
            raise self.fail_resolve
        return docker.Resolved(ref, DIGEST, "sha256:" + "cd" * 32)

    def prepare(self, image):
        pass

    def image_env(self, image):
        return {}

    def settings(self, shape=None):
        return {"backend": "docker"}

    def run(self, job, on_facts, write):
        from mlflow.tracking import MlflowClient

        spec = job.spec
        self.specs.append(spec)
        on_facts({"job_id": "fake-1"})
        write(b"training\n")
        if self.fail:
            raise self.fail
        client = MlflowClient(spec.env["MLFLOW_TRACKING_URI"])
        for key, values in self.metrics.items():
            for step, value in enumerate(values):
                client.log_metric(spec.env["MLFLOW_RUN_ID"], key, value, step=step)
        return self.exit_status


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """A migrated sqlite store, made once: creating one costs seconds."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("template")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # the default experiment's artifacts go beside it
        MlflowClient("sqlite:///%s" % (root / "mlflow.db")).search_experiments()
    return root / "mlflow.db"


@pytest.fixture
def store(tmp_path, monkeypatch, empty_store):
    from mlflow.tracking import MlflowClient

    (tmp_path / "store").mkdir()
    shutil.copyfile(str(empty_store), str(tmp_path / "store" / "mlflow.db"))
    uri = "sqlite:///%s" % (tmp_path / "store" / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("TFREPRO_SIGNING_KEY", raising=False)
    return uri, MlflowClient(uri)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no signing key from the user's git config
    return repo


@pytest.fixture
def engine(monkeypatch):
    """engines.get() answers with the FakeEngine the test sets in holder[0]."""
    holder = [FakeEngine()]
    monkeypatch.setattr(engines, "get", lambda name, options: holder[0])
    return holder


def run(store, *args):
    return main(["run", "--image", IMAGE, "--tracking-uri", store[0], *args, "--", "python", "train.py"])


def only_run(client, experiment="0"):
    found = client.search_runs([experiment])
    assert len(found) == 1
    return found[0]


def test_run_records_the_launch_and_exits_0(store, repo, engine, capsys):
    assert run(store) == status.OK
    recorded = only_run(store[1])
    tags = recorded.data.tags
    assert recorded.info.status == "FINISHED"
    assert tags["tfrepro.image.digest"] == DIGEST and tags["tfrepro.git.commit"] == git(repo, "rev-parse", "HEAD")
    assert json.loads(tags["tfrepro.command"]) == ["python", "train.py"]
    assert tags["tfrepro.launch.job_id"] == "fake-1"  # the engine's facts, recorded while it ran
    assert tags["tfrepro.launch.backend"] == "docker"
    spec = engine[0].specs[0]
    assert spec.env["MLFLOW_RUN_ID"] == recorded.info.run_id and spec.labels == {"tfrepro.run_id": recorded.info.run_id}
    assert [m.kind for m in spec.mounts] == ["repo", "tracking", "hook"]
    artifacts = {a.path for a in store[1].list_artifacts(recorded.info.run_id, "tfrepro")}
    assert "tfrepro/launch.json" in artifacts
    captured = capsys.readouterr()
    assert captured.out == "training\n"  # the job's output, and nothing else, on stdout
    assert "tfrepro: run %s exited with status 0" % recorded.info.run_id in captured.err


def test_a_container_that_exits_non_zero_is_job_failed(store, repo, engine, capsys):
    engine[0] = FakeEngine(exit_status=3)
    assert run(store) == status.JOB_FAILED
    assert only_run(store[1]).info.status == "FAILED"
    assert "tfrepro: error: container exited with status 3" in capsys.readouterr().err


def test_an_interrupted_launch_closes_its_run(store, repo, engine):
    engine[0] = FakeEngine(fail=KeyboardInterrupt())
    assert run(store) == status.INTERRUPTED
    assert only_run(store[1]).info.status == "FAILED"


def test_an_engine_that_cannot_launch_creates_no_run(store, repo, engine, capsys):
    engine[0] = FakeEngine(fail_resolve=DockerError("cannot reach the Docker daemon"))
    assert run(store) == status.ENGINE
    assert store[1].search_runs(["0"]) == []


def test_a_bad_option_is_a_usage_error(store, repo, engine):
    assert run(store, "--gpus", "lots") == status.USAGE


def test_dry_run_creates_nothing(store, repo, engine, capsys):
    assert run(store, "--dry-run") == status.OK
    assert store[1].search_runs(["0"]) == []
    assert "fake-run %s python train.py" % DIGEST in capsys.readouterr().out


# -- replay ------------------------------------------------------------------------------------


@pytest.fixture
def original(store, repo, engine, capsys):
    assert run(store) == status.OK
    capsys.readouterr()
    return only_run(store[1]).info.run_id


def replay(run_id, *args):
    return main(["replay", run_id, *args])


def test_a_replay_that_reproduces_exits_0(store, original, engine, capsys):
    assert replay(original, "--yes") == status.OK
    out = capsys.readouterr().out
    assert out.splitlines()[-1].endswith(": identical: 2 metric values match bit for bit")
    replay_run = [r for r in store[1].search_runs(["0"]) if r.info.run_id != original][0]
    assert replay_run.data.tags["tfrepro.replay_of"] == original
    assert replay_run.data.tags["tfrepro.image.digest"] == DIGEST  # the launcher's image tags, as on the run
    assert replay_run.data.tags["tfrepro.replay.verdict"] == "identical"
    assert store[1].get_run(original).data.tags["tfrepro.replayed_by"] == replay_run.info.run_id
    spec = engine[0].specs[-1]
    assert spec.mounts[0].kind == "repo" and spec.mounts[0].source != "<checkout>"  # the materialised checkout


def test_a_replay_that_diverges_exits_1(store, original, engine):
    engine[0] = FakeEngine(metrics={"loss": [1.0, 0.75]})
    assert replay(original, "--yes") == status.DIVERGED


def test_replay_json_is_one_object_on_stdout(store, original, engine, capsys):
    engine[0] = FakeEngine(metrics={"loss": [1.0, 0.75]})
    assert replay(original, "--yes", "--json") == status.DIVERGED
    captured = capsys.readouterr()
    data = json.loads(captured.out)  # the whole of stdout: the plan and the job's output are on stderr
    assert data["original_run"] == original and len(data["replay_runs"]) == 1
    assert (data["verdict"], data["reproduced"], data["exit_code"]) == ("diverged", False, status.DIVERGED)
    assert data["metrics"] == [
        {"metric": "loss", "original": 0.5, "replay": 0.75, "steps": 2, "max_difference": 0.25, "status": "diverged"}
    ]
    assert all(set(cause) == {"key", "line", "fix"} for cause in data["causes"])
    assert "training" in captured.err and "replay of run %s" % original in captured.err


def test_replay_json_of_a_failed_job(store, original, engine, capsys):
    engine[0] = FakeEngine(exit_status=2)
    assert replay(original, "--yes", "--json") == status.JOB_FAILED
    data = json.loads(capsys.readouterr().out)
    assert (data["verdict"], data["exit_code"]) == ("failed", status.JOB_FAILED)
    assert "container exited with status 2" in data["error"]


def test_replay_json_of_a_refusal(store, repo, capsys):
    assert replay("0123456789abcdef0123456789abcdef", "--yes", "--json") == status.REFUSED
    data = json.loads(capsys.readouterr().out)
    assert data["exit_code"] == status.REFUSED and "no run" in data["error"]


def test_a_replay_this_host_cannot_run_is_refused(store, repo, engine, capsys):
    wanted = str(host.gpu_count() + 1) if host.gpu_count() else "all"
    assert run(store, "--gpus", wanted) == status.OK
    original = only_run(store[1]).info.run_id
    assert replay(original, "--yes") == status.REFUSED
    assert "--gpus none" in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_declined_prompt_is_refused(store, original, engine, monkeypatch):
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert replay(original) == status.REFUSED
    assert len(store[1].search_runs(["0"])) == 1  # nothing ran


def test_no_terminal_and_no_yes_is_refused(store, original, engine):
    assert replay(original) == status.REFUSED


def test_a_bad_tolerance_is_a_usage_error(store, original):
    assert replay(original, "--tolerance", "-1") == status.USAGE


def test_an_unreachable_tracking_server(repo, capsys):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert replay("0123456789abcdef0123456789abcdef", "--tracking-uri", "http://127.0.0.1:%d" % port) == (
        status.TRACKING
    )
    assert "cannot reach the tracking server" in capsys.readouterr().err


def test_a_replay_records_the_launchers_tags_as_its_original_did(store, repo, engine):
    assert run(store, "--seed", "7") == status.OK
    original_id = only_run(store[1]).info.run_id
    assert replay(original_id, "--yes") == status.OK
    runs = {r.info.run_id: r.data.tags for r in store[1].search_runs(["0"])}
    replayed = [tags for run_id, tags in runs.items() if run_id != original_id][0]
    for key in ("tfrepro.command", "tfrepro.workdir", "tfrepro.seed", "tfrepro.launch.seed", "tfrepro.image.digest"):
        assert replayed[key] == runs[original_id][key], key
    assert replayed["tfrepro.seed"] == "7"
