"""`tfrepro env`: readable text, JSON, and no TensorFlow/MLflow import."""

import json
import subprocess
import sys

from tests.helpers import host
from tfrepro.cli import main
from tfrepro.environment import Environment


def test_text_fits_100_columns(dirty_repo, monkeypatch, capsys):
    monkeypatch.chdir(dirty_repo)
    monkeypatch.setenv("TFREPRO_IMAGE_DIGEST", "nvcr.io/nvidia/tensorflow@sha256:" + "ab" * 32)
    monkeypatch.setenv("NVIDIA_REQUIRE_CUDA", "cuda>=11.7 " + "brand=tesla,driver>=450,driver<451 " * 20)
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    for title in ("Image", "Code", "GPU", "Python", "System", "Process", "Missing or partial"):
        assert "\n%s\n" % title in out
    assert "\n  nvcr.io/nvidia/tensorflow@sha256:" + "ab" * 32 + "\n" in out
    assert "  digest source          launcher\n" in out
    assert "https://example.com/team/project.git" in out and "s3cret" not in out
    if host.gpu_count():
        assert "\n  count             %d\n" % host.gpu_count() in out
    else:
        assert "no NVIDIA driver" in out or "NVML sees no GPU" in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_json_round_trips(git_repo, monkeypatch, capsys):
    monkeypatch.chdir(git_repo)
    assert main(["env", "--json"]) == 0
    env = Environment.from_json(capsys.readouterr().out)
    assert env.git.branch == "main" and env.python.packages
    assert env.gpu.count == host.gpu_count() and ("gpu" in env.reasons) == (host.gpu_count() == 0)


def test_bad_option_is_one_line(capsys):
    assert main(["env", "--nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfrepro: error:") and len(err.strip().splitlines()) == 1


def test_env_imports_neither_tensorflow_nor_mlflow(tmp_path):
    code = (
        "import sys, tfrepro.cli\n"
        "rc = tfrepro.cli.main(['env', '--json'])\n"
        "leaked = [m for m in ('tensorflow', 'mlflow', 'keras') if m in sys.modules]\n"
        "sys.stderr.write('LEAKED %s\\n' % leaked)\n"
        "sys.exit(rc or (3 if leaked else 0))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["tensorflow"]["imported"] is False


def test_env_tensorflow_flag_imports_it(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "tfrepro", "env", "--json", "--tensorflow"],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    tf = json.loads(out.stdout)["tensorflow"]
    assert tf["imported"] is True and tf["cuda_build"] and "/physical_device:CPU:0" in tf["devices"]


def test_render_a_recorded_h200_box():
    from pathlib import Path

    from tfrepro.fingerprint import container, gpu
    from tfrepro.inspect.render import render_environment

    probe = json.loads((Path(__file__).resolve().parents[1] / "fixtures/gpu/h200-driver580/probe.json").read_text())
    env_vars = dict(line.split("=", 1) for line in probe["env_nvidia"]["stdout"].splitlines())
    info, reason = container.resolve({"dockerenv": True, "cgroup": probe["cgroup"]["stdout"], "env": env_vars})
    env = Environment(gpu=gpu.parse(dict(probe["pynvml"], env=env_vars)), container=info, reasons={"container": reason})
    out = render_environment(env)
    assert "NVIDIA H200, 140.4 GiB, cc 9.0, MIG disabled, 00000000:00:06.0" in out
    for row in (
        "driver                 580.159.04",
        "CUDA (driver)          13.0",
        "NVML                   13.580.159.04",
        "NVIDIA_VISIBLE_DEVICES 0",
    ):
        assert "\n  %s\n" % row in out, row
    assert max(len(line) for line in out.splitlines()) <= 100
