"""Real git repositories for tests (a pytest plugin, registered in tests/conftest.py): `git()`,
`make_repo()` (the one way a test makes a repository), `example_repo()`, and the fixtures
`git_repo` and `dirty_repo`."""

import shutil
import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=str(cwd), check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path, files=None, message="first"):
    """A real git repo at `path` (made, with its parents) with `files` committed on main.

    files: {path inside the repo: its text, or a Path to copy}; by default a train.py that
    prints hello."""
    path = Path(path)
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    for name, content in (files or {"train.py": "print('hello')\n"}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copy(str(content), str(target))
        else:
            target.write_text(content)
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", message)
    return path


def example_repo(path):
    """examples/train.py committed, then changed without committing (a replay must apply it)."""
    path = make_repo(path, {"train.py": EXAMPLES / "train.py"}, message="train")
    with open(str(path / "train.py"), "a") as fh:
        fh.write("\n# an uncommitted change: replay must apply it\n")
    return path


@pytest.fixture
def git_repo(tmp_path):
    """A real, clean git repo with one commit and an https remote carrying credentials."""
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "origin", "https://user:s3cret@example.com/team/project.git")
    return repo


@pytest.fixture
def dirty_repo(git_repo):
    """git_repo with a staged change, an unstaged change and an untracked file."""
    (git_repo / "train.py").write_text("print('hello, dirty')\n")
    (git_repo / "staged.py").write_text("x = 1\n")
    git(git_repo, "add", "staged.py")
    (git_repo / "notes.txt").write_text("untracked\n")
    return git_repo
