"""worktree.py: commit + patch materialised from real git repos in temp dirs."""
import os
import subprocess

import pytest

from tests.conftest import git
from tfrepro.errors import SourceError
from tfrepro.replay import worktree as W


def patch_of(repo):
    return subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=str(repo), capture_output=True,
                          text=True, check=True).stdout


def test_worktree_from_the_local_repo_with_the_patch(dirty_repo):
    commit = git(dirty_repo, "rev-parse", "HEAD")
    patch = patch_of(dirty_repo)
    with W.materialise(commit, patch, [str(dirty_repo)], None) as path:
        assert open(os.path.join(path, "train.py")).read() == "print('hello, dirty')\n"
        assert open(os.path.join(path, "staged.py")).read() == "x = 1\n"
        assert not os.path.exists(os.path.join(path, "notes.txt"))  # untracked: not restored
    assert not os.path.exists(path)
    assert str(path) not in git(dirty_repo, "worktree", "list")
    # the user's checkout is untouched
    assert (dirty_repo / "notes.txt").exists() and git(dirty_repo, "rev-parse", "HEAD") == commit


def test_clone_from_the_remote_when_no_local_repo_has_it(git_repo, tmp_path):
    commit = git(git_repo, "rev-parse", "HEAD")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with W.materialise(commit, "", [str(elsewhere)], str(git_repo)) as path:
        assert open(os.path.join(path, "train.py")).read() == "print('hello')\n"
        assert git(path, "rev-parse", "HEAD") == commit


def test_commit_missing_everywhere(git_repo, tmp_path):
    with pytest.raises(SourceError, match="is in neither"):
        with W.materialise("f" * 40, "", [str(git_repo)], str(git_repo)):
            pass
    with pytest.raises(SourceError, match="no remote"):
        with W.materialise("f" * 40, "", [str(git_repo)], None):
            pass


def test_patch_that_does_not_apply(git_repo):
    commit = git(git_repo, "rev-parse", "HEAD")
    bad = ("diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n"
           "@@ -1 +1 @@\n-print('something else')\n+print('x')\n")
    with pytest.raises(SourceError, match="does not apply"):
        with W.materialise(commit, bad, [str(git_repo)], None):
            pass
    assert "tfrepro-replay" not in git(git_repo, "worktree", "list")


@pytest.mark.parametrize("remote", ["ext::sh -c touch% /tmp/pwned", "-uhelp", "--upload-pack=touch /tmp/x"])
def test_unsafe_remotes_are_refused(tmp_path, remote):
    with pytest.raises(SourceError, match="refusing"):
        with W.materialise("f" * 40, "", [str(tmp_path)], remote):
            pass
