"""checkout.py: commit + patch materialised from real git repos in temp dirs."""

import os
import subprocess

import pytest

from tests.helpers.git_repos import git
from tfrepro.errors import SourceError
from tfrepro.replay import checkout as C


def patch_of(repo):
    return subprocess.run(
        ["git", "diff", "HEAD", "--binary"], cwd=str(repo), capture_output=True, text=True, check=True
    ).stdout


def mentions(directory, text):
    """Files under `directory` whose bytes contain `text`."""
    found = []
    for folder, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                if text.encode() in fh.read():
                    found.append(os.path.join(folder, name))
    return found


def test_standalone_checkout_from_the_local_repo_with_the_patch(dirty_repo):
    commit = git(dirty_repo, "rev-parse", "HEAD")
    patch = patch_of(dirty_repo)
    with C.materialise(commit, patch, [str(dirty_repo)], "https://example.com/team/project.git") as path:
        assert open(os.path.join(path, "train.py")).read() == "print('hello, dirty')\n"
        assert open(os.path.join(path, "staged.py")).read() == "x = 1\n"
        assert not os.path.exists(os.path.join(path, "notes.txt"))  # untracked: not restored
        # a repository of its own: git in a container sees it, and it names no host path
        assert os.path.isdir(os.path.join(path, ".git"))
        assert not os.path.exists(os.path.join(path, ".git", "objects", "info", "alternates"))
        assert mentions(os.path.join(path, ".git"), str(dirty_repo)) == []
        # the in-container fingerprint will record the same commit and the same patch
        assert git(path, "rev-parse", "HEAD") == commit
        assert patch_of(path) == patch
        assert git(path, "config", "remote.origin.url") == "https://example.com/team/project.git"
    assert not os.path.exists(path)
    assert git(dirty_repo, "worktree", "list").count("\n") == 0
    # the user's checkout is untouched
    assert (dirty_repo / "notes.txt").exists() and git(dirty_repo, "rev-parse", "HEAD") == commit
    assert patch_of(dirty_repo) == patch


def test_a_commit_no_ref_reaches_is_found(git_repo):
    (git_repo / "train.py").write_text("print('amended away')\n")
    git(git_repo, "commit", "-q", "-am", "second")
    orphan = git(git_repo, "rev-parse", "HEAD")
    git(git_repo, "reset", "-q", "--hard", "HEAD~1")  # the test's own repo, not the project's
    with C.materialise(orphan, "", [str(git_repo)], None) as path:
        assert open(os.path.join(path, "train.py")).read() == "print('amended away')\n"


def test_full_local_clone_when_the_fetch_by_sha_fails(dirty_repo, monkeypatch):
    real = C._git

    def no_fetch(args, *a, **kw):  # an old git without protocol v2
        if "fetch" in args:
            args = ["fetch", "--no-such-option"]
        return real(args, *a, **kw)

    monkeypatch.setattr(C, "_git", no_fetch)
    commit = git(dirty_repo, "rev-parse", "HEAD")
    patch = patch_of(dirty_repo)
    with C.materialise(commit, patch, [str(dirty_repo)], None) as path:
        assert git(path, "rev-parse", "HEAD") == commit and patch_of(path) == patch
        assert git(path, "remote") == ""  # the clone's origin named a host path
        assert not os.path.exists(os.path.join(path, ".git", "objects", "info", "alternates"))


def test_keep_leaves_the_checkout(git_repo):
    commit = git(git_repo, "rev-parse", "HEAD")
    lines = []
    with C.materialise(commit, "", [str(git_repo)], None, log=lines.append, keep=True) as path:
        pass
    try:
        assert os.path.isfile(os.path.join(path, "train.py"))
        assert any(path in line for line in lines)
    finally:
        import shutil

        shutil.rmtree(os.path.dirname(path))


def test_clone_from_the_remote_when_no_local_repo_has_it(git_repo, tmp_path):
    commit = git(git_repo, "rev-parse", "HEAD")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with C.materialise(commit, "", [str(elsewhere)], str(git_repo)) as path:
        assert open(os.path.join(path, "train.py")).read() == "print('hello')\n"
        assert git(path, "rev-parse", "HEAD") == commit


def test_commit_missing_everywhere(git_repo, tmp_path):
    with pytest.raises(SourceError, match="is in neither"):
        with C.materialise("f" * 40, "", [str(git_repo)], str(git_repo)):
            pass
    with pytest.raises(SourceError, match="no remote"):
        with C.materialise("f" * 40, "", [str(git_repo)], None):
            pass


def test_patch_that_does_not_apply(git_repo, monkeypatch, tmp_path):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    commit = git(git_repo, "rev-parse", "HEAD")
    bad = (
        "diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n"
        "@@ -1 +1 @@\n-print('something else')\n+print('x')\n"
    )
    with pytest.raises(SourceError, match="does not apply"):
        with C.materialise(commit, bad, [str(git_repo)], None):
            pass
    assert not [p for p in os.listdir(str(tmp_path)) if p.startswith("tfrepro-replay-")]


@pytest.mark.parametrize("remote", ["ext::sh -c touch% /tmp/pwned", "-uhelp", "--upload-pack=touch /tmp/x"])
def test_unsafe_remotes_are_refused(tmp_path, remote):
    with pytest.raises(SourceError, match="refusing"):
        with C.materialise("f" * 40, "", [str(tmp_path)], remote):
            pass
