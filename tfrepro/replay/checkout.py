"""Materialise the recorded source: the commit in a standalone temporary checkout, the patch applied.

The checkout's `.git` is a real directory with its own objects (no worktree link, no
alternates), so git inside the replay container sees a repository and the in-container
fingerprint records the commit and patch itself. The commit comes from a local repository
that has it (a depth-1 fetch by sha, protocol v2), else from the recorded remote.
argv lists only; the remote is untrusted (ordinary transports only, never read as an option).
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
# never prompt: the user's own credential helper or SSH agent answers, or the clone fails at once
GIT_ENV = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": "http:https:ssh:git:file"}
NO_CREDENTIALS_RE = re.compile(
    r"could not read (Username|Password)|Authentication failed|"
    r"Permission denied \(publickey|HTTP Basic: Access denied"
)
PLACEHOLDER = "<checkout>"  # shown for the repository mount before it exists


def _git(args: List[str], cwd: Optional[str] = None, timeout: int = 600, stdin: Optional[bytes] = None):
    env = dict(os.environ, **GIT_ENV)
    try:
        return subprocess.run(
            ["git", "-c", "protocol.ext.allow=never"] + args,
            cwd=cwd,
            env=env,
            input=stdin,
            capture_output=True,
            timeout=timeout,
        )
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
    """Apply to the work tree and the index: files the original had staged as new must be
    tracked again, or `git diff HEAD` in the replay would leave them out."""
    if not patch.strip():
        return
    data = patch.encode("utf-8", "surrogateescape")
    if not data.endswith(b"\n"):
        data += b"\n"
    proc = _git(["apply", "--index", "--binary", "--whitespace=nowarn", "-"], cwd=directory, stdin=data, timeout=120)
    if proc.returncode != 0:
        raise SourceError("the recorded patch does not apply to %s: %s" % (commit[:12], _first_line(proc)))


@contextlib.contextmanager
def materialise(
    commit: str,
    patch: str,
    local_candidates: Sequence[str],
    remote: Optional[str],
    log=lambda message: None,
    keep: bool = False,
) -> Iterator[str]:
    """Yield a directory holding `commit` with `patch` applied; remove it afterwards unless `keep`."""
    local = find_local(commit, local_candidates)
    parent = tempfile.mkdtemp(prefix="tfrepro-replay-")
    path = os.path.join(parent, "src")
    try:
        if local:
            log("source: %s at %s (standalone checkout)" % (local, commit[:12]))
            _from_local(local, commit, path)
        else:
            _clone(commit, remote, path, local_candidates, log)
        _checkout(path, commit, remote)
        apply_patch(path, patch, commit)
        yield path
    finally:
        if keep:
            log("source: checkout kept at %s" % path)
        else:
            shutil.rmtree(parent, ignore_errors=True)


def _from_local(local: str, commit: str, path: str) -> None:
    """Only the commit's tree (depth 1): protocol v2 serves any sha the repository has, even
    one no ref reaches. An older git falls back to a full local clone (no --shared)."""
    init = _git(["init", "--quiet", path])
    if init.returncode != 0:
        raise SourceError("git init failed: %s" % _first_line(init))
    fetch = _git(
        ["-c", "protocol.version=2", "fetch", "--quiet", "--no-tags", "--depth", "1", "--", local, commit], cwd=path
    )
    if fetch.returncode == 0 and has_commit(path, commit):
        return
    shutil.rmtree(path, ignore_errors=True)
    clone = _git(["clone", "--quiet", "--no-checkout", "--no-hardlinks", "--", local, path])
    if clone.returncode != 0 or not has_commit(path, commit):
        raise SourceError("cannot copy commit %s out of %s: %s" % (commit[:12], local, _first_line(fetch)))
    _git(["remote", "remove", "origin"], cwd=path, timeout=30)  # it names a host path


def _checkout(path: str, commit: str, remote: Optional[str]) -> None:
    proc = _git(["checkout", "--quiet", "--detach", commit], cwd=path)
    if proc.returncode != 0:
        raise SourceError("git checkout %s failed: %s" % (commit[:12], _first_line(proc)))
    try:
        os.remove(os.path.join(path, ".git", "FETCH_HEAD"))  # it names the host repository
    except OSError:
        pass
    has_origin = _git(["config", "--get", "remote.origin.url"], cwd=path, timeout=30).returncode == 0
    if remote and not has_origin and _safe_remote(remote):
        # so the replay's own record names the same remote as the original's
        _git(["config", "remote.origin.url", remote], cwd=path, timeout=30)


def _safe_remote(remote: str) -> bool:
    return bool(REMOTE_RE.match(remote)) and not remote.startswith("-") and "\n" not in remote


def _clone(commit: str, remote: Optional[str], path: str, searched: Sequence[str], log) -> None:
    where = ", ".join(p for p in searched if p) or "no local repository"
    if not remote:
        raise SourceError("commit %s is not in %s and the run recorded no remote" % (commit[:12], where))
    if not _safe_remote(remote):
        raise SourceError("refusing to clone the recorded remote %.100r (unsupported transport)" % remote)
    log("source: cloning %s at %s" % (remote, commit[:12]))
    proc = _git(["clone", "--quiet", "--no-checkout", "--", remote, path])
    if proc.returncode != 0:
        if NO_CREDENTIALS_RE.search(proc.stderr.decode("utf-8", "replace")):
            raise SourceError(
                "cloning %s needs credentials that git did not find (it never prompts here): "
                "set up your git credential helper or SSH agent for it" % remote
            )
        raise SourceError(
            "commit %s is not in %s, and cloning %s failed: %s" % (commit[:12], where, remote, _first_line(proc))
        )
    if not has_commit(path, commit):
        _git(["fetch", "--quiet", "origin", commit], cwd=path)  # servers allowing any reachable sha1
    if not has_commit(path, commit):
        raise SourceError("commit %s is in neither %s nor the remote %s" % (commit[:12], where, remote))
