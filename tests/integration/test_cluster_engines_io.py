"""Engine I/O on real tools: podman resolves and runs the test image by digest; the Kubernetes
Job's init container, as generated, checks out the commit, applies the patch and writes the launch hook (run here
with Docker, since no Kubernetes can run on these machines)."""

import subprocess

import pytest

from tests.helpers.git_repos import git, make_repo
from tfrepro.launch import hooks, kubernetes
from tfrepro.launch import podman as podman_cli  # `podman` is the fixture
from tfrepro.launch.spec import LaunchSpec, Mount

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_podman_resolves_pulls_and_runs_by_digest(podman, test_image):
    resolved = podman_cli.resolve(test_image.ref)
    assert resolved.digest == test_image.digest_ref  # the registry's digest, as docker sees it
    podman_cli.ensure_image(resolved.digest)
    # podman, unlike docker, refuses a working directory the image lacks: tfrepro always mounts it
    spec = LaunchSpec(
        image=resolved.digest,
        command=("sh", "-c", "echo $GREETING; exit 5"),
        workdir="/tmp",
        env={"GREETING": "hello from podman"},
        labels={"tfrepro.test": "1"},
    )
    chunks = []
    assert podman_cli.run(podman_cli.podman_argv(spec), chunks.append) == 5
    assert b"".join(chunks) == b"hello from podman\n"


def test_podman_missing_image_is_one_error(podman):
    with pytest.raises(Exception, match="podman could not pull 127.0.0.1:5555/tfrepro-nosuch:latest"):
        podman_cli.resolve("127.0.0.1:5555/tfrepro-nosuch:latest")


def test_the_jobs_init_container_checks_out_commit_and_patch(test_image, docker_cleanup, tmp_path):
    repo = make_repo(tmp_path / "repo")
    commit = git(repo, "rev-parse", "HEAD")
    (repo / "train.py").write_text("print('patched')\n")
    patch = git(repo, "diff", "HEAD", "--binary") + "\n"
    git(repo, "checkout", "--", "train.py")
    (repo / "later.py").write_text("x = 2\n")  # a later commit must not leak in
    git(repo, "add", "later.py")
    git(repo, "commit", "-q", "-m", "later")
    spec = LaunchSpec(
        image=test_image.digest_ref,
        command=("python", "train.py"),
        mounts=(Mount("<checkout>", "/workspace", False, "repo"), Mount("<hook>", hooks.HOOK_DIR, True, "hook")),
    )
    job = kubernetes.to_dict(
        kubernetes.build_job(
            spec,
            kubernetes.Source("file:///src", commit, patch),
            kubernetes.KubernetesOptions(),
            hook=hooks.hook_source(),
        )
    )
    init = job["spec"]["template"]["spec"]["initContainers"][0]
    out, hook = tmp_path / "workspace", tmp_path / "hook"
    out.mkdir()
    hook.mkdir()
    argv = [
        "docker",
        "run",
        "--rm",
        "--network",
        "none",
        "--label",
        "tfrepro.test=1",
        "-v",
        "%s:/src:ro" % repo,
        "-v",
        "%s:/workspace" % out,
        "-v",
        "%s:%s" % (hook, hooks.HOOK_DIR),
    ]
    for item in init["env"]:
        argv += ["-e", "%s=%s" % (item["name"], item["value"])]
    result = subprocess.run(argv + [init["image"]] + init["command"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tfrepro: checked out %s with the recorded patch" % commit
    assert (out / "train.py").read_text() == "print('patched')\n" and not (out / "later.py").exists()
    assert (hook / "sitecustomize.py").read_text() == hooks.hook_source()
