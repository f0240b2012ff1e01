"""Upload what sessions left in the spool (server down, process killed). Idempotent.

Each file resumes from its "uploaded up to" marker, and points are checked against the
server's metric history, so running sync twice, or after a writer that got further than
its marker, uploads nothing twice. A local run id is mapped to a new run in the recorded
experiment; the mapping is saved before any upload, so an interrupted sync reuses it.

A spool file names directories to upload. sync takes only files the user owns (the spool
file itself included), and directories under the run's recorded working directory or its
own `<run>.files/` next to the spool file: a crafted spool cannot upload ~/.docker.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from typing import Dict, List, Optional

from tfrepro.errors import TrackingError
from tfrepro.redact import strip_url_credentials
from tfrepro.tracking import spool
from tfrepro.tracking.backend import Retryable, backend_for
from tfrepro.tracking.upload import RunUploader, is_local


class FileResult:
    def __init__(self, path: str):
        self.path = path
        self.run_id: Optional[str] = None
        self.created = False
        self.skipped_reason: Optional[str] = None
        self.counts: Dict[str, int] = {}
        self.errors: List[str] = []
        self.refused: List[str] = []  # files the spool named that sync would not upload
        self.removed = False
        self.failure: Optional[str] = None


def resolve_uri(uri: Optional[str], cwd: Optional[str]) -> Optional[str]:
    """A relative sqlite/file URI recorded by a session is relative to its working directory."""
    if uri and cwd:
        for prefix in ("sqlite:///", "file:"):
            if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
                return prefix + os.path.join(cwd, uri[len(prefix) :])
    return uri


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def allowed_roots(spool_path: str, header: Dict) -> List[str]:
    roots = [os.path.realpath(spool_path[: -len(spool.SUFFIX)] + ".files")]
    cwd = header.get("cwd")
    if isinstance(cwd, str) and cwd.startswith("/") and os.path.realpath(cwd) != "/":
        roots.append(os.path.realpath(cwd))
    return roots


def stage(directory: str, roots: List[str], into: str, skipped: List[str]) -> Optional[str]:
    """A copy of `directory` in `into` with only the regular files we own, or None when the
    directory is outside `roots`. Symlinks are not followed; what was left out goes to `skipped`."""
    real = os.path.realpath(directory)
    if not any(_under(real, r) for r in roots):
        return None
    target = tempfile.mkdtemp(dir=into)
    for top, _dirs, files in os.walk(real):
        for name in files:
            src = os.path.join(top, name)
            try:
                fd = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            except OSError:
                skipped.append(src)  # a symlink, or gone
                continue
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                    skipped.append(src)
                    continue
                dest = os.path.join(target, os.path.relpath(src, real))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "wb") as out:
                    shutil.copyfileobj(f, out)
    return target


def _vetted(records: List[Dict], roots: List[str], into: str, result: FileResult) -> List[Dict]:
    out = []
    for record in records:
        if "artifacts" in record:
            skipped: List[str] = []
            staged = (
                stage(str(record["artifacts"]), roots, into, skipped) if isinstance(record["artifacts"], str) else None
            )
            if staged is None:
                result.refused.append("%s (outside the run's working directory)" % record["artifacts"])
                continue
            result.refused.extend("%s (not yours, or not a regular file)" % path for path in skipped)
            record = dict(record, artifacts=staged)
        out.append(record)
    return out


def owned_file(path: str) -> Optional[str]:
    """Why `path` must not be synced (not a regular file, another user's), or None."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return "cannot read it: %s" % exc.strerror
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid != os.geteuid():
        return "owned by another user (uid %d)" % st.st_uid
    return None


def sync_file(path: str, tracking_uri: Optional[str] = None, backends: Optional[Dict] = None) -> FileResult:
    result = FileResult(path)
    result.skipped_reason = owned_file(path)
    if result.skipped_reason:
        return result
    with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb") as lock:
        if not spool.try_lock(lock):
            result.skipped_reason = "in use by a running session"
            return result
        header = spool.read_header(path)
        if not header.get("run_id"):
            raise TrackingError("%s is not a tfrepro spool file (no run header)" % path)
        state = spool.load_state(path)
        uri = tracking_uri or resolve_uri(header.get("tracking_uri"), header.get("cwd"))
        if not uri:
            import mlflow

            uri = mlflow.get_tracking_uri()
        backends = {} if backends is None else backends
        if uri not in backends:
            backends[uri] = backend_for(uri)
        backend = backends[uri]
        if not backend.reachable():
            raise TrackingError(
                "tracking server %s is unreachable; nothing uploaded from %s" % (strip_url_credentials(uri), path)
            )
        uploader = RunUploader(backend, header, run_id=state.get("run_id"))
        offset = state.get("offset", 0)
        ended = state.get("ended", False)
        roots = allowed_roots(path, header)
        staging = tempfile.mkdtemp(prefix="tfrepro-sync-")
        try:
            result.run_id, result.created = uploader.ensure_run()
            if result.created:
                spool.save_state(path, {"offset": offset, "run_id": result.run_id})
            while True:
                records, end = spool.read(path, offset)
                if end == offset:
                    break
                uploader.upload(_vetted(records, roots, staging, result), dedupe=True)
                ended = ended or any("end" in r for r in records)
                offset = end
                spool.save_state(path, {"offset": offset, "run_id": result.run_id, "ended": ended})
            if is_local(header.get("run_id")) and not ended:  # its process died before close()
                uploader.upload([{"end": "KILLED"}], dedupe=False)
        except Retryable as exc:
            raise TrackingError("upload from %s stopped (%s); run sync again" % (path, exc)) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            result.counts = dict(uploader.counts)
            result.errors = list(uploader.errors)
        spool.remove(path)  # all of it is on the server now (or rejected by it: see errors)
        result.removed = True
    return result


def sync_all(
    directory: Optional[str] = None, paths: Optional[List[str]] = None, tracking_uri: Optional[str] = None
) -> List[FileResult]:
    directory = spool.spool_dir(directory)
    paths = paths if paths is not None else spool.pending_files(directory)
    backends: Dict = {}
    results = []
    for p in paths:
        try:
            results.append(sync_file(p, tracking_uri, backends))
        except Exception as exc:  # one bad file or server must not stop the rest
            failed = FileResult(p)
            failed.failure = (
                str(exc)
                if isinstance(exc, (TrackingError, OSError))
                else "malformed spool file (%s: %s)" % (type(exc).__name__, exc)
            )
            results.append(failed)
    return results
