"""docker.py's pure helpers (the I/O is exercised against a real daemon in tests/integration)."""

import pytest

from tfrepro.errors import DockerError
from tfrepro.launch import docker

DIGEST = "sha256:" + "ab" * 32


def test_pick_repo_digest_matches_the_repository():
    digests = ["other/repo@sha256:" + "cd" * 32, "127.0.0.1:5555/tfrepro-test@" + DIGEST]
    assert docker.pick_repo_digest(digests, "127.0.0.1:5555/tfrepro-test") == "127.0.0.1:5555/tfrepro-test@" + DIGEST
    assert docker.pick_repo_digest(digests, "127.0.0.1:5555/elsewhere") is None
    assert docker.pick_repo_digest(None, "x") is None


def test_resolved_runs_by_digest_else_by_image_id():
    assert docker.Resolved("r:1", "r@" + DIGEST, "sha256:" + "0" * 64).run_ref == "r@" + DIGEST
    assert docker.Resolved("r:1", None, "sha256:" + "0" * 64).run_ref == "sha256:" + "0" * 64


def test_pull_lines_when_not_a_terminal():
    assert docker._pull_line({"status": "Pull complete", "id": "a1b2"}) == "  a1b2: Pull complete"
    assert docker._pull_line({"status": "Downloading", "id": "a1b2", "progressDetail": {"current": 1}}) is None
    assert docker._pull_line({"status": "Digest: " + DIGEST}) == "  Digest: " + DIGEST


def test_pull_stream_errors_become_one_line():
    with pytest.raises(DockerError, match="manifest unknown"):
        docker._check({"error": "manifest unknown\nmore"}, "r@" + DIGEST)


def test_pull_refuses_a_malformed_digest_before_any_io():
    with pytest.raises(DockerError, match="malformed image digest"):
        docker.pull(None, "r:latest")
