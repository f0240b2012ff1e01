"""Git source on real repositories in temp dirs (conftest's git_repo / dirty_repo)."""

import hashlib
import os
import subprocess
import sys

import pytest

from tests.helpers.git_repos import git
from tfrepro.fingerprint import NotApplicable, collect
from tfrepro.fingerprint import git as git_source


def test_clean_repo(git_repo, monkeypatch):
    monkeypatch.chdir(git_repo)
    info = git_source.collect()
    assert info.commit == git(git_repo, "rev-parse", "HEAD")
    assert info.branch == "main" and info.dirty is False
    assert info.remote_url == "https://example.com/team/project.git"  # credentials stripped
    assert info.patch == "" and info.patch_sha256 is None and info.untracked == ()
    assert info.root == os.path.realpath(str(git_repo)) and info.workdir == "."


def test_dirty_repo_patch_applies_to_the_commit(dirty_repo, monkeypatch, tmp_path):
    monkeypatch.chdir(dirty_repo)
    info = git_source.collect()
    assert info.dirty is True and info.untracked == ("notes.txt",)
    assert "staged.py" in info.patch and "hello, dirty" in info.patch
    assert info.patch_sha256 == hashlib.sha256(info.patch.encode()).hexdigest()
    # the patch recreates the working tree on a fresh clone of the commit
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(dirty_repo), str(clone)], check=True)
    git(clone, "checkout", "-q", info.commit)
    subprocess.run(["git", "apply", "--binary", "-"], cwd=str(clone), input=info.patch.encode(), check=True)
    assert (clone / "train.py").read_text() == (dirty_repo / "train.py").read_text()
    assert (clone / "staged.py").read_text() == "x = 1\n"


def test_binary_change_round_trips(git_repo, monkeypatch, tmp_path):
    (git_repo / "weights.bin").write_bytes(bytes(range(256)) * 4)
    git(git_repo, "add", "weights.bin")
    monkeypatch.chdir(git_repo)
    info = git_source.collect()
    assert "GIT binary patch" in info.patch
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(git_repo), str(clone)], check=True)
    subprocess.run(["git", "apply", "--binary", "-"], cwd=str(clone), input=info.patch.encode(), check=True)
    assert (clone / "weights.bin").read_bytes() == (git_repo / "weights.bin").read_bytes()


def test_subdirectory_detached_head_and_untracked_only(git_repo, monkeypatch):
    sub = git_repo / "src" / "pkg"
    sub.mkdir(parents=True)
    (sub / "new module.py").write_text("y = 2\n")
    git(git_repo, "checkout", "-q", "--detach")
    monkeypatch.chdir(sub)
    info = git_source.collect()
    assert info.workdir == "src/pkg" and info.branch is None
    assert info.dirty is False and info.untracked == ("src/pkg/new module.py",)


def test_repo_without_commits(tmp_path, monkeypatch):
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "a.py").write_text("")
    monkeypatch.chdir(tmp_path)
    info = git_source.collect()
    assert info.commit is None and info.branch == "main" and info.untracked == ("a.py",)


def test_not_a_git_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    with pytest.raises(NotApplicable, match="not a git repository: " + str(tmp_path)):
        git_source.query()
    env = collect(["git"])
    assert env.git is None and env.reasons["git"].startswith("not a git repository")


def test_git_not_installed(git_repo, monkeypatch):
    monkeypatch.chdir(git_repo)
    monkeypatch.setenv("PATH", "/nonexistent")
    env = collect(["git"])
    assert env.git is None and env.reasons == {"git": "git not installed"}


def test_whole_collect_in_a_subprocess_without_git_on_path(git_repo):
    code = "import tfrepro, json; e = tfrepro.collect_environment(); print(json.dumps(dict(e.reasons)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=str(git_repo),
        env=dict(os.environ, PATH="/nonexistent"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"git": "git not installed"' in out.stdout


def test_glob_characters_and_many_changes(git_repo, monkeypatch):
    odd = ["[abc].py", "*.py", "space name.py", ":(top)x.py"]
    for name in odd:
        (git_repo / name).write_text("a = 1\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "odd names")
    for name in odd:
        (git_repo / name).write_text("a = 2\n")
    monkeypatch.chdir(git_repo)
    info = git_source.collect()
    assert all("b/%s" % name in info.patch for name in odd)
    monkeypatch.setattr(git_source, "MAX_PATHSPEC", 2)  # the whole-tree diff gives the same patch
    assert git_source.collect().patch == info.patch


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown the repo to another user")
def test_repo_owned_by_another_user_gives_the_fix(git_repo, monkeypatch):
    for folder, _, files in os.walk(str(git_repo)):
        for name in [folder] + [os.path.join(folder, f) for f in files]:
            os.lchown(name, 4321, 4321)
    monkeypatch.chdir(git_repo)
    monkeypatch.setenv("HOME", str(git_repo.parent))  # no global safe.directory from this machine
    env = collect(["git"])
    assert "safe.directory" in env.reasons["git"] and env.git is None
