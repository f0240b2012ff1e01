"""Replay's source on a machine without the trainer's clone: the recorded remote, cloned over
a real transport on 127.0.0.1 (git daemon; git http-backend behind Basic auth for a private
remote). The user's own credential helper is used; credentials are never written into the
checkout nor shown; a missing credential is one clear line, at once (no prompt).
"""

import os
import subprocess
import time

import pytest

from tests.helpers.git_repos import git
from tests.helpers.git_servers import GitDaemon, GitHttp, bare_clone
from tfrepro.errors import SourceError
from tfrepro.replay import checkout as C

SECRET = "tok-" + os.urandom(6).hex()


def patch_of(repo):
    return subprocess.run(
        ["git", "diff", "HEAD", "--binary"], cwd=str(repo), capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def second_machine(tmp_path, monkeypatch):
    """A different HOME (no git config, no credentials) and a working directory with no clone."""
    home = tmp_path / "home2"
    (home / "work").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    for name in ("GIT_ASKPASS", "SSH_ASKPASS", "GIT_CONFIG_GLOBAL", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(home / "work")
    return home


def grep_tree(directory, text):
    hits = []
    for folder, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                if text.encode() in fh.read():
                    hits.append(os.path.join(folder, name))
    return hits


def test_clone_over_git_daemon_at_the_commit_with_the_patch(dirty_repo, tmp_path, second_machine):
    commit, patch = git(dirty_repo, "rev-parse", "HEAD"), patch_of(dirty_repo)
    daemon = GitDaemon(tmp_path / "served").start()
    try:
        bare_clone(dirty_repo, daemon.base)
        logged = []
        with C.materialise(commit, patch, [os.getcwd()], daemon.url(), log=logged.append) as path:
            assert git(path, "rev-parse", "HEAD") == commit
            assert open(os.path.join(path, "train.py")).read() == "print('hello, dirty')\n"
            assert git(path, "config", "--get", "remote.origin.url") == daemon.url()
        assert logged == ["source: cloning %s at %s" % (daemon.url(), commit[:12])]
    finally:
        daemon.stop()


@pytest.fixture
def private_remote(git_repo, tmp_path):
    server = GitHttp(tmp_path / "private", "alice", SECRET).start()
    bare_clone(git_repo, server.base)
    yield server
    server.stop()


def test_a_missing_credential_is_one_clear_line_without_a_prompt(git_repo, private_remote, second_machine):
    commit = git(git_repo, "rev-parse", "HEAD")
    start = time.monotonic()
    with pytest.raises(SourceError) as err:
        with C.materialise(commit, "", [os.getcwd()], private_remote.url()):
            pass
    assert time.monotonic() - start < 30
    message = str(err.value)
    assert "\n" not in message and "needs credentials" in message and private_remote.url() in message
    assert "credential helper or SSH agent" in message and SECRET not in message
    assert private_remote.requests["refused"] >= 1 and private_remote.requests["authorized"] == 0


def test_the_users_credential_helper_is_used_and_nothing_is_kept(git_repo, private_remote, second_machine):
    commit = git(git_repo, "rev-parse", "HEAD")
    store = second_machine / ".git-credentials"
    store.write_text("http://alice:%s@127.0.0.1:%d\n" % (SECRET, private_remote.port))
    git(second_machine, "config", "--global", "credential.helper", "store --file=%s" % store)
    logged = []
    with C.materialise(commit, "", [os.getcwd()], private_remote.url(), log=logged.append) as path:
        assert git(path, "rev-parse", "HEAD") == commit
        assert grep_tree(path, SECRET) == []  # the container sees this tree: no credential in it
        assert git(path, "config", "--get", "remote.origin.url") == private_remote.url()
    assert private_remote.requests["authorized"] >= 1
    assert SECRET not in " ".join(logged)
