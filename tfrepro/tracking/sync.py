"""Upload what sessions left in the spool (server down, process killed). Idempotent.

Each file resumes from its "uploaded up to" marker, and points are checked against the
server's metric history, so running sync twice, or after a writer that got further than
its marker, uploads nothing twice. A local run id is mapped to a new run in the recorded
experiment; the mapping is saved before any upload, so an interrupted sync reuses it.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

from tfrepro.errors import TrackingError
from tfrepro.tracking import spool as spool_mod
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
        self.removed = False
        self.failure: Optional[str] = None


def resolve_uri(uri: Optional[str], cwd: Optional[str]) -> Optional[str]:
    """A relative sqlite/file URI recorded by a session is relative to its working directory."""
    if uri and cwd:
        for prefix in ("sqlite:///", "file:"):
            if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
                return prefix + os.path.join(cwd, uri[len(prefix):])
    return uri


def sync_file(path: str, tracking_uri: Optional[str] = None, backends: Optional[Dict] = None) -> FileResult:
    result = FileResult(path)
    with open(path, "rb") as lock:
        if not spool_mod.try_lock(lock):
            result.skipped_reason = "in use by a running session"
            return result
        header = spool_mod.read_header(path)
        if not header.get("run_id"):
            raise TrackingError("%s is not a tfrepro spool file (no run header)" % path)
        state = spool_mod.load_state(path)
        uri = tracking_uri or resolve_uri(header.get("tracking_uri"), header.get("cwd"))
        if not uri:
            import mlflow

            uri = mlflow.get_tracking_uri()
        backends = {} if backends is None else backends
        if uri not in backends:
            backends[uri] = backend_for(uri)
        backend = backends[uri]
        if not backend.reachable():
            raise TrackingError("tracking server %s is unreachable; nothing uploaded from %s" % (uri, path))
        uploader = RunUploader(backend, header, run_id=state.get("run_id"))
        offset = state.get("offset", 0)
        ended = state.get("ended", False)
        try:
            result.run_id, result.created = uploader.ensure_run()
            if result.created:
                spool_mod.save_state(path, {"offset": offset, "run_id": result.run_id})
            while True:
                records, end = spool_mod.read(path, offset)
                if end == offset:
                    break
                uploader.upload(records, dedupe=True)
                ended = ended or any("end" in r for r in records)
                offset = end
                spool_mod.save_state(path, {"offset": offset, "run_id": result.run_id, "ended": ended})
            if is_local(header.get("run_id")) and not ended:  # its process died before close()
                uploader.upload([{"end": "KILLED"}], dedupe=False)
        except Retryable as exc:
            raise TrackingError("upload from %s stopped (%s); run sync again" % (path, exc))
        finally:
            result.counts = dict(uploader.counts)
            result.errors = list(uploader.errors)
        spool_mod.remove(path)  # all of it is on the server now (or rejected by it: see errors)
        result.removed = True
    return result


def sync_all(directory: Optional[str] = None, paths: Optional[List[str]] = None,
             tracking_uri: Optional[str] = None) -> List[FileResult]:
    directory = spool_mod.spool_dir(directory)
    paths = paths if paths is not None else spool_mod.pending_files(directory)
    backends: Dict = {}
    results = []
    for p in paths:
        try:
            results.append(sync_file(p, tracking_uri, backends))
        except (TrackingError, OSError) as exc:  # one bad file or server must not stop the rest
            failed = FileResult(p)
            failed.failure = str(exc)
            results.append(failed)
    return results
