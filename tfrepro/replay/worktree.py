"""Materialise the recorded source: the commit in a temporary directory, the patch applied.

Uses a detached `git worktree` of a local repository that has the commit, else a clone
of the recorded remote. argv lists only; the remote is untrusted (only ordinary
transports are allowed and it can never be read as an option).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from typing import Iterator, List, Optional, Sequence

from tfrepro.errors import SourceError

REMOTE_RE = re.compile(r"^(https?://|ssh://|git://|file://|/|[A-Za-z0-9_.\-]+@[A-Za-z0-9_.\-]+:)")
GIT_ENV = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": "http:https:ssh:git:file"}


def _git(args: List[str], cwd: Optional[str] = None, timeout: int = 600, stdin: Optional[bytes] = None):
    env = dict(os.environ, **GIT_ENV)
    try:
        return subprocess.run(["git", "-c", "protocol.ext.allow=never"] + args, cwd=cwd, env=env,
                              input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except FileNotFoundError:
        raise SourceError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise SourceError("git %s timed out" % args[0]) from None


def _first_line(proc) -> str:
    text = proc.stderr.decode("utf-8", "replace").strip()
    return (text.splitlines() or ["git exited with status %d" % proc.returncode])[-1]


def repo_root(path: str) -> Optional[str]:
    if not os.path.isdir(path):
        return None
    proc = _git(["rev-parse", "--show-toplevel"], cwd=path, timeout=30)
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def has_commit(repo: str, commit: str) -> bool:
    return _git(["cat-file", "-e", commit + "^{commit}"], cwd=repo, timeout=30).returncode == 0


def find_local(commit: str, candidates: Sequence[str]) -> Optional[str]:
    """The first candidate directory inside a git repository that has the commit."""
    for path in candidates:
        root = repo_root(path) if path else None
        if root and has_commit(root, commit):
            return root
    return None


def apply_patch(directory: str, patch: str, commit: str) -> None:
    if not patch.strip():
        return
    data = patch.encode("utf-8", "surrogateescape")
    if not data.endswith(b"\n"):
        data += b"\n"
    proc = _git(["apply", "--binary", "--whitespace=nowarn", "-"], cwd=directory, stdin=data, timeout=120)
    if proc.returncode != 0:
        raise SourceError("the recorded patch does not apply to %s: %s" % (commit[:12], _first_line(proc)))


@contextlib.contextmanager
def materialise(commit: str, patch: str, local_candidates: Sequence[str], remote: Optional[str],
                log=lambda message: None) -> Iterator[str]:
    """Yield a directory holding `commit` with `patch` applied; remove it afterwards."""
    local = find_local(commit, local_candidates)
    parent = tempfile.mkdtemp(prefix="tfrepro-replay-")
    path = os.path.join(parent, "src")
    added_to = None
    try:
        if local:
            log("source: %s at %s (git worktree)" % (local, commit[:12]))
            proc = _git(["worktree", "add", "--detach", path, commit], cwd=local)
            if proc.returncode != 0:
                raise SourceError("git worktree add failed: %s" % _first_line(proc))
            added_to = local
        else:
            _clone(commit, remote, path, local_candidates, log)
        apply_patch(path, patch, commit)
        yield path
    finally:
        if added_to:
            _git(["worktree", "remove", "--force", path], cwd=added_to, timeout=120)
        shutil.rmtree(parent, ignore_errors=True)
        if added_to:
            _git(["worktree", "prune"], cwd=added_to, timeout=60)


def _clone(commit: str, remote: Optional[str], path: str, searched: Sequence[str], log) -> None:
    where = ", ".join(p for p in searched if p) or "no local repository"
    if not remote:
        raise SourceError("commit %s is not in %s and the run recorded no remote" % (commit[:12], where))
    if not REMOTE_RE.match(remote) or remote.startswith("-"):
        raise SourceError("refusing to clone the recorded remote %.100r (unsupported transport)" % remote)
    log("source: cloning %s at %s" % (remote, commit[:12]))
    proc = _git(["clone", "--quiet", "--no-checkout", "--", remote, path])
    if proc.returncode != 0:
        raise SourceError("commit %s is not in %s, and cloning %s failed: %s"
                          % (commit[:12], where, remote, _first_line(proc)))
    if not has_commit(path, commit):
        _git(["fetch", "--quiet", "origin", commit], cwd=path)  # servers allowing any reachable sha1
    if not has_commit(path, commit):
        raise SourceError("commit %s is in neither %s nor the remote %s" % (commit[:12], where, remote))
    proc = _git(["checkout", "--quiet", "--detach", commit], cwd=path)
    if proc.returncode != 0:
        raise SourceError("git checkout %s failed: %s" % (commit[:12], _first_line(proc)))
