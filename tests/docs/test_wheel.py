"""An installed wheel, no source tree: follow docs/getting-started.md and docs/team-server.md.

The wheel is built from this checkout and installed with --no-deps into a fresh virtual
environment made from the base interpreter (no --system-site-packages). Its third-party
packages (TensorFlow, MLflow, psycopg2: what `pip install 'tfrepro[server]'` brings) are
borrowed from the running venv through a .pth line placed after the fresh venv's own
site-packages, so the 500 MB TensorFlow wheel is not installed again; tfrepro itself comes only
from the wheel, which the first test asserts. Every command runs from a temp directory outside
the checkout, with PYTHONPATH unset.

The commands come from the pages themselves: the `train.py` block, the `python train.py` and
`tfrepro show` lines of Getting started, and the `mlflow server ...` command of Team server.
The database the Team server page asks for is a throwaway PostgreSQL cluster (tests/postgres.py).
The replay needs Docker and the test image: it skips without them, and fails under
TFREPRO_REQUIRE_DOCKER=1 (tests/conftest.py).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.mlflow_server import postgres_cluster
from tests.helpers.ports import free_port
from tests.helpers.requirements import missing

ROOT = Path(__file__).resolve().parent.parent.parent
GETTING_STARTED = ROOT / "docs" / "getting-started.md"
TEAM_SERVER = ROOT / "docs" / "team-server.md"

pytestmark = pytest.mark.slow


def fenced_blocks(page: Path):
    """(info string, text) of each fenced code block of a page."""
    blocks, info, lines = [], None, []
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if info is None:
                info, lines = line[3:].strip(), []
            else:
                blocks.append((info, "\n".join(lines)))
                info = None
        elif info is not None:
            lines.append(line)
    return blocks


def page_command(page: Path, prefix: str) -> str:
    """The first command line of the page's shell blocks starting with `prefix`, continuation
    lines joined and the trailing comment dropped."""
    for info, text in fenced_blocks(page):
        if not info.startswith("bash"):
            continue
        joined = re.sub(r"\\\n\s*", " ", text)
        for line in joined.splitlines():
            if line.startswith(prefix):
                return line.split("  #", 1)[0].strip()
    raise AssertionError("%s has no `%s ...` command" % (page.name, prefix))


def train_script() -> str:
    for info, text in fenced_blocks(GETTING_STARTED):
        if info.startswith("python") and 'title="train.py"' in info:
            return text + "\n"
    raise AssertionError("docs/getting-started.md has no train.py block")


class Wheel:
    """A fresh venv with the built wheel; run(...) runs a page's command in it."""

    def __init__(self, root: Path):
        self.root = root
        self.venv = root / "venv"
        self.work = root / "work"
        self.work.mkdir()

    def build_and_install(self):
        dist = self.root / "dist"
        clean = self.env()  # no PYTHONPATH: pip must not see the checkout as installed
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                str(dist),
                str(ROOT),
            ],
            check=True,
            capture_output=True,
            env=clean,
        )
        (wheel,) = dist.glob("tfrepro-*.whl")
        base = Path(sys.base_prefix, "bin", "python%d.%d" % sys.version_info[:2])  # not this venv's
        subprocess.run([str(base), "-m", "venv", "--without-pip", str(self.venv)], check=True, env=clean)
        python = self.venv / "bin" / "python"
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
            check=True,
            capture_output=True,
            env=clean,
        )
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        # after the venv's own site-packages: the wheel's tfrepro wins over the borrowed editable one
        Path(site, "zz_borrowed_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        # the console script pip would have written for the borrowed mlflow
        script = self.venv / "bin" / "mlflow"
        script.write_text("#!%s\nimport sys\nfrom mlflow.cli import cli\nsys.exit(cli())\n" % python)
        script.chmod(0o755)
        return wheel

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "VIRTUAL_ENV")}
        env.update(PATH="%s:%s" % (self.venv / "bin", env.get("PATH", "")), HOME=str(self.root / "home"))
        env.update(TFREPRO_SPOOL_DIR=str(self.root / "spool"), TF_CPP_MIN_LOG_LEVEL="2", **extra)
        return env

    def run(self, command: str, timeout=300, **env) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.work,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, "%s: exit %d\n%s\n%s" % (command, done.returncode, done.stdout, done.stderr)
        return done


def run_id_of(output: str) -> str:
    match = re.search(r"^run_id: ([0-9a-f]{32})$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


@pytest.fixture(scope="module")
def wheel():
    root = Path(tempfile.mkdtemp(prefix="tfrepro-wheel-"))
    installed = Wheel(root)
    installed.build_and_install()
    (installed.work / "train.py").write_text(train_script())
    yield installed
    shutil.rmtree(root, ignore_errors=True)


def test_the_wheel_installs_tfrepro_and_its_command(wheel):
    where = wheel.run("python -c 'import tfrepro, tfrepro_mlflow; print(tfrepro.__file__, tfrepro_mlflow.__file__)'")
    assert all(path.startswith(str(wheel.venv)) for path in where.stdout.split()), where.stdout
    version = wheel.run("tfrepro --version")
    assert "tfrepro" in version.stdout


def test_getting_started_records_a_run_into_sqlite(wheel):
    export = page_command(GETTING_STARTED, "export MLFLOW_TRACKING_URI=")
    train = page_command(GETTING_STARTED, "python train.py")
    show = page_command(GETTING_STARTED, "tfrepro show RUN_ID")
    assert export == "export MLFLOW_TRACKING_URI=sqlite:///mlflow.db"
    trained = wheel.run("%s && %s" % (export, train))
    run_id = run_id_of(trained.stdout)
    shown = wheel.run("%s && %s" % (export, show.replace("RUN_ID", run_id)))
    assert run_id in shown.stdout and "TensorFlow" in shown.stdout


@pytest.fixture(scope="module")
def team_server(wheel):
    cluster = postgres_cluster()
    port = free_port()
    command = page_command(TEAM_SERVER, "mlflow server")
    assert "--port 5080" in command and '"$PG_URI"' in command and '"$ARTIFACTS"' in command
    command = command.replace("--port 5080", "--port %d" % port)
    artifacts = wheel.root / "artifacts"
    env = wheel.env(PG_URI=cluster.uri, ARTIFACTS=str(artifacts), MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    log = open(wheel.root / "server.log", "wb")
    server = subprocess.Popen(
        ["bash", "-c", "exec " + command],
        cwd=wheel.work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = "http://127.0.0.1:%d" % port
    try:
        deadline = time.time() + 180  # the first start creates the schema
        while True:
            assert server.poll() is None, (wheel.root / "server.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(uri + "/health", timeout=1).read()
                break
            except OSError:
                assert time.time() < deadline, "mlflow server did not answer on %s" % uri
                time.sleep(0.5)
        yield uri, artifacts
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        log.close()
        cluster.cleanup()


def test_team_server_from_the_wheel_records_a_run(wheel, team_server):
    uri, artifacts = team_server
    trained = wheel.run(page_command(GETTING_STARTED, "python train.py"), MLFLOW_TRACKING_URI=uri)
    run_id = run_id_of(trained.stdout)
    shown = wheel.run(
        page_command(TEAM_SERVER, "tfrepro show RUN_ID").replace("RUN_ID", run_id), MLFLOW_TRACKING_URI=uri
    )
    assert run_id in shown.stdout
    # proxied artifacts: the record reached the server's --artifacts-destination over HTTP
    assert list(artifacts.rglob("%s/artifacts/tfrepro/environment.json" % run_id)), sorted(artifacts.rglob("*"))


@pytest.mark.docker
def test_team_server_run_and_replay_from_the_wheel(wheel, team_server):
    image = os.environ.get("TFREPRO_TEST_IMAGE")
    if not image or shutil.which("docker") is None:
        missing("Docker and the test image (source /tmp/tfrepro-docker.env)")
    uri, _ = team_server
    for git in ("init -q", "add train.py", "-c user.name=t -c user.email=t@example.com commit -qm train"):
        wheel.run("git " + git)
    run = page_command(GETTING_STARTED, "tfrepro run")
    run = run.replace("nvcr.io/nvidia/tensorflow:22.07-tf2-py3", shlex.quote(image)).replace(
        "--gpus all", "--gpus none"
    )
    launched = wheel.run(run, timeout=600, MLFLOW_TRACKING_URI=uri)
    match = re.search(r"tfrepro: run ([0-9a-f]{32})", launched.stderr + launched.stdout)
    assert match, launched.stderr
    replay = page_command(GETTING_STARTED, "tfrepro replay").replace("RUN_ID", match.group(1))
    replayed = wheel.run(replay + " --yes --gpus none", timeout=600, MLFLOW_TRACKING_URI=uri)
    assert ": identical:" in replayed.stdout + replayed.stderr, replayed.stdout[-2000:] + replayed.stderr[-2000:]
