"""Git source: commit, branch, remote, dirty flag, the uncommitted patch and untracked files.

Uses the `git` CLI (one `status --porcelain=v2` answers commit, branch, dirty and untracked;
`diff HEAD` runs only when the tree is dirty). Python 3.8 compatible.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any, Dict, Iterator, List, Optional, Tuple

from tfrepro import schema
from tfrepro.environment import GitInfo
from tfrepro.fingerprint import NotApplicable, first_values
from tfrepro.redact import strip_url_credentials

TIMEOUT = 30  # seconds per git call; a huge repo on a slow disk should still finish
MAX_PATHSPEC = 1000  # beyond this many changed paths, diff the whole tree


def start(git: str, args: List[str], cwd: str, extra_env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    # LC_ALL=C keeps messages parseable; GIT_OPTIONAL_LOCKS=0 stops status from writing the index.
    env = dict(os.environ, LC_ALL="C", GIT_OPTIONAL_LOCKS="0", **(extra_env or {}))
    # An absolute executable, no cwd= and close_fds=False let Python 3.8 use posix_spawn
    # instead of fork(): forking a process that holds TensorFlow costs tens of ms per call.
    return subprocess.Popen(
        [git, "-C", cwd] + args, env=env, close_fds=False, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def finish(proc: subprocess.Popen, timeout: float = TIMEOUT) -> Tuple[int, bytes, bytes]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


def trust_config(directory: Optional[str]) -> Optional[str]:
    """A temporary XDG_CONFIG_HOME whose git/config has `safe.directory = <directory>`.

    `tfrepro run`/`replay` set TFREPRO_SAFE_DIRECTORY to the mount point of the checkout
    they mounted (often owned by another uid than the container's user). Only these git
    calls trust it. A global-scope file because git before 2.36 (bullseye's 2.30, focal's
    2.25) ignores safe.directory from `-c` and GIT_CONFIG_COUNT; ~/.gitconfig still applies.
    """
    if not directory or not directory.startswith("/") or any(c in directory for c in '\n"\\'):
        return None
    import tempfile

    try:
        home = tempfile.mkdtemp(prefix="tfrepro-git-")
        os.mkdir(os.path.join(home, "git"))
        with open(os.path.join(home, "git", "config"), "w") as fh:
            fh.write('[safe]\n\tdirectory = "%s"\n' % directory)
        return home
    except OSError:
        return None


def query(cwd: Optional[str] = None) -> Dict[str, object]:
    """Run the few git commands needed (the first three at once); return their raw outputs."""
    import shutil

    cwd = cwd or os.getcwd()
    git = shutil.which("git")
    if not git:
        raise NotApplicable("git not installed")
    xdg = trust_config(os.environ.get(schema.ENV_SAFE_DIRECTORY))  # set by the launcher
    try:
        return _query(git, cwd, {"XDG_CONFIG_HOME": xdg} if xdg else None)
    finally:
        if xdg:
            shutil.rmtree(xdg, ignore_errors=True)


def _query(git: str, cwd: str, extra_env: Optional[Dict[str, str]]) -> Dict[str, object]:
    top = start(git, ["rev-parse", "--show-toplevel", "--show-prefix"], cwd, extra_env)
    status = start(
        git,
        ["-c", "status.renames=false", "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"],
        cwd,
        extra_env,
    )
    remotes = start(git, ["config", "--get-regexp", r"^remote\..*\.url$"], cwd, extra_env)
    code, out, err = finish(top)
    status_result, remotes_result = finish(status), finish(remotes)
    if code != 0:
        message = err.decode("utf-8", "replace").strip()
        if "not a git repository" in message:
            raise NotApplicable("not a git repository: %s" % cwd)
        dubious = re.search(r"dubious ownership in repository at '(.*)'", message)
        if dubious:  # typical for a checkout bind-mounted into a container
            raise NotApplicable(
                "git refuses %s (owned by another user): run `git config --global --add "
                "safe.directory %s` first" % (dubious.group(1), dubious.group(1))
            )
        raise NotApplicable("git failed: %s" % first_line(err))
    if status_result[0] != 0:
        raise NotApplicable("git status failed: %s" % first_line(status_result[2]))
    lines = out.decode("utf-8", "surrogateescape").split("\n")
    raw: Dict[str, Any] = {
        "cwd": cwd,
        "root": lines[0],
        "prefix": lines[1] if len(lines) > 1 else "",
        "status": status_result[1].decode("utf-8", "surrogateescape"),
        "remotes": remotes_result[1].decode("utf-8", "replace"),
        "patch": "",
    }
    commit, _, changed, _ = parse_status(raw["status"])
    if changed and commit:
        paths = changed_paths(raw["status"])
        # naming the changed paths spares git a second stat of the whole tree
        spec = ["--"] + [":(literal)" + p for p in paths] if len(paths) <= MAX_PATHSPEC else []
        diff = finish(
            start(git, ["diff", "HEAD", "--binary", "--no-color", "--no-ext-diff"] + spec, lines[0], extra_env)
        )
        raw["patch"] = diff[1].decode("utf-8", "surrogateescape")
        if diff[0] != 0:
            raw["error"] = "git diff failed, patch missing: %s" % first_line(diff[2])
    return raw


def first_line(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[0] if lines else "?"


FIELDS_BEFORE_PATH = {"1": 8, "2": 9, "u": 10}  # porcelain v2: ordinary, rename/copy, unmerged


def _status_entries(text: str) -> Iterator[Tuple[str, Optional[str]]]:
    """A porcelain v2 -z status's entries, each with the original path that follows a
    rename/copy entry (else None)."""
    entries = iter(text.split("\0"))
    for entry in entries:
        yield entry, next(entries, None) if entry.startswith("2 ") else None


def changed_paths(text: str) -> List[str]:
    """Tracked paths in a porcelain v2 -z status (both sides of a rename)."""
    paths: List[str] = []
    for entry, original in _status_entries(text):
        fields = FIELDS_BEFORE_PATH.get(entry[:1]) if entry[1:2] == " " else None
        if fields:
            paths.append(entry.split(" ", fields)[-1])
            if original is not None:
                paths.append(original)
    return paths


def parse_status(text: str) -> Tuple[Optional[str], Optional[str], bool, Tuple[str, ...]]:
    """`git status --porcelain=v2 --branch -z` -> (commit, branch, tracked changes?, untracked)."""
    commit = branch = None
    changed = False
    untracked = []
    for entry, _original in _status_entries(text):
        if entry.startswith("# branch.oid "):
            oid = entry[len("# branch.oid ") :]
            commit = None if oid == "(initial)" else oid
        elif entry.startswith("# branch.head "):
            head = entry[len("# branch.head ") :]
            branch = None if head == "(detached)" else head
        elif entry.startswith("? "):
            untracked.append(entry[2:])
        elif entry[:2] in ("1 ", "2 ", "u "):
            changed = True
    return commit, branch, changed, tuple(sorted(untracked))


def pick_remote(config_output: str) -> Optional[str]:
    """`git config --get-regexp remote.*.url` -> origin's URL, else the first remote's."""
    values = first_values(config_output, " ")
    urls = [url for key, url in values.items() if url and re.match(r"remote\..+\.url$", key)]
    return values.get("remote.origin.url") or (urls[0] if urls else None)


def parse(raw: Dict[str, object]) -> GitInfo:
    commit, branch, changed, untracked = parse_status(str(raw.get("status") or ""))
    patch = str(raw.get("patch") or "")
    remote = pick_remote(str(raw.get("remotes") or ""))
    prefix = str(raw.get("prefix") or "").rstrip("/")
    digest = None
    if patch:
        import hashlib  # loads OpenSSL: only when there is a patch to hash

        digest = hashlib.sha256(patch.encode("utf-8", "surrogateescape")).hexdigest()
    return GitInfo(
        commit=commit,
        branch=branch,
        remote_url=strip_url_credentials(remote, keep_user=True) if remote else None,
        dirty=changed,
        patch_sha256=digest,
        untracked=untracked,
        root=str(raw.get("root") or "") or None,
        workdir=prefix or ".",
        patch=patch,
    )


def collect():
    """GitInfo, or (GitInfo, reason) when the patch could not be taken."""
    raw = query()
    info = parse(raw)
    return (info, raw["error"]) if raw.get("error") else info
