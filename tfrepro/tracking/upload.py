"""Turning spooled records into server calls, idempotently. Shared by the writer and `sync`.

plan() (pure) groups records into calls within MLflow's log_batch limits; unseen() (pure)
drops points the server already has, keyed by (metric, step, timestamp, value) within the
run; RunUploader makes the calls and, for a run that only has a local id, creates the
real run first.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from tfrepro import schema
from tfrepro.tracking.backend import Rejected, Retryable, history_key

MAX_METRICS = 1000  # MLflow log_batch limits (and <= 1000 entities in all)
MAX_PARAMS = 100
MAX_TAGS = 100
MAX_PARAM_VALUE = 6000
LOCAL_PREFIX = "local-"
LOCAL_ID_TAG = schema.LOCAL_RUN_ID  # on a run `sync` created for a session's local id


def is_local(run_id: Optional[str]) -> bool:
    return run_id is not None and run_id.startswith(LOCAL_PREFIX)


def _chunks(items: Dict, size: int):
    keys = list(items)
    for i in range(0, len(keys), size):
        yield {k: items[k] for k in keys[i : i + size]}


def plan(records: Iterable[Dict]) -> List[Tuple[str, object]]:
    """Records in file order -> [(kind, payload)] in the same order, each call within limits.

    Consecutive records of one kind are merged (later params/tags override earlier ones).
    """
    calls: List[Tuple[str, Any]] = []  # (kind, payload): the payload's type depends on the kind

    def extend(kind, payload):
        if calls and calls[-1][0] == kind and kind in ("metrics", "params", "tags"):
            calls[-1] = (kind, _merge(kind, calls[-1][1], payload))
        else:
            calls.append((kind, payload))

    for r in records:
        if "metrics" in r:
            step, ts = int(r.get("step", 0)), int(r.get("ts", 0))
            extend("metrics", [(k, float(v), ts, step) for k, v in r["metrics"].items()])
        elif "params" in r:
            extend("params", {k: str(v)[:MAX_PARAM_VALUE] for k, v in r["params"].items()})
        elif "tags" in r:
            extend("tags", {k: str(v)[: schema.MAX_TAG_VALUE] for k, v in r["tags"].items()})
        elif "text" in r:
            calls.append(("text", (r["text"], r["file"])))
        elif "artifacts" in r:
            calls.append(("artifacts", (r["artifacts"], r.get("path"))))
        elif "inputs" in r:
            calls.append(("inputs", list(r["inputs"])))
        elif "end" in r:
            calls.append(("end", (r["end"], int(r.get("end_time") or time.time() * 1000))))
    out: List[Tuple[str, object]] = []
    for kind, payload in calls:  # split to the limits
        if kind == "metrics":
            out.extend((kind, payload[i : i + MAX_METRICS]) for i in range(0, len(payload), MAX_METRICS))
        elif kind in ("params", "tags"):
            out.extend((kind, c) for c in _chunks(payload, MAX_PARAMS if kind == "params" else MAX_TAGS))
        else:
            out.append((kind, payload))
    return out


def _merge(kind, a, b):
    if kind == "metrics":
        a.extend(b)  # in place: plan() made `a`, and a + b per record is quadratic in a chunk
        return a
    merged = dict(a)
    merged.update(b)
    return merged


def unseen(points: List[Tuple[str, float, int, int]], history: Dict[str, Set]) -> List:
    """Points not in `history` ({key: {history_key}}), each once; adds them to `history`."""
    fresh = []
    for key, value, ts, step in points:
        seen = history.setdefault(key, set())
        ident = history_key(step, ts, value)
        if ident not in seen:
            seen.add(ident)
            fresh.append((key, value, ts, step))
    return fresh


class RunUploader:
    """Uploads records of one spooled run. Retryable errors propagate (the caller backs off);
    a call the server rejects is recorded in `errors` and skipped."""

    def __init__(self, backend, header: Dict, run_id: Optional[str] = None):
        self.backend = backend
        self.header = header
        self.run_id = run_id or (None if is_local(header.get("run_id")) else header.get("run_id"))
        self.errors: List[str] = []
        self.counts = {"points": 0, "skipped": 0, "params": 0, "tags": 0, "files": 0, "inputs": 0}
        self._history: Dict[str, Set] = {}
        self.experiment_id: Optional[str] = None  # of the run, once ensure_run() resolved it

    def ensure_run(self) -> Tuple[str, bool]:
        """The real run id, creating the run for a local id. Returns (run_id, created)."""
        if self.run_id:
            return self.run_id, False
        h = self.header
        experiment_id = h.get("experiment_id")
        if not experiment_id:
            name = h.get("experiment_name")
            experiment_id = self.backend.experiment_id(name) if name else "0"
        self.experiment_id = str(experiment_id)
        # a create whose answer was lost, or a lost marker, must not make a second run
        found = self.backend.find_run(str(experiment_id), LOCAL_ID_TAG, h.get("run_id", ""))
        if found:
            self.run_id = found
            return found, False
        tags = {k: str(v)[: schema.MAX_TAG_VALUE] for k, v in (h.get("tags") or {}).items()}
        tags[LOCAL_ID_TAG] = h.get("run_id", "")
        start = int(h.get("start_time") or time.time() * 1000)
        self.run_id = self.backend.create_run(str(experiment_id), h.get("run_name"), start, tags)
        return self.run_id, True

    def upload(self, records: List[Dict], dedupe: bool, timeout: Optional[float] = None) -> int:
        """Upload `records` in order; returns the number of metric points sent. `timeout`
        bounds each log_batch call (the backend's default when None)."""
        run_id = self.ensure_run()[0]
        sent = self.counts["points"]
        for kind, payload in plan(records):
            try:
                self._call(run_id, kind, payload, dedupe, timeout)
            except Rejected as exc:
                self.errors.append("%s: %s" % (kind, exc))
            except Retryable:
                self._history = {}  # a failed call may have landed: fetch the history again
                raise
        return self.counts["points"] - sent

    def _call(self, run_id, kind, payload, dedupe, timeout=None):
        b = self.backend
        if kind == "metrics":
            points = payload
            if dedupe:
                for key in {p[0] for p in points} - set(self._history):
                    self._history[key] = b.metric_history(run_id, key)
                points = unseen(points, self._history)
                self.counts["skipped"] += len(payload) - len(points)
            if points:
                if timeout is None:
                    b.log_batch(run_id, metrics=points)
                else:
                    b.log_batch(run_id, metrics=points, timeout=timeout)
            self.counts["points"] += len(points)
        elif kind == "params":
            b.log_batch(run_id, params=payload)
            self.counts["params"] += len(payload)
        elif kind == "tags":
            local = self.header.get("run_id")
            if is_local(local) and schema.MLFLOW_NOTE in payload:  # the card's replay line: the real id
                payload = dict(payload, **{schema.MLFLOW_NOTE: payload[schema.MLFLOW_NOTE].replace(local, run_id)})
            b.log_batch(run_id, tags=payload)
            self.counts["tags"] += len(payload)
        elif kind == "text":
            b.log_text(run_id, payload[0], payload[1])
            self.counts["files"] += 1
        elif kind == "artifacts":
            import os

            if not os.path.isdir(payload[0]):
                raise Rejected("artifact directory %s is gone" % payload[0])
            b.log_artifacts(run_id, payload[0], payload[1])
            self.counts["files"] += 1
        elif kind == "inputs":
            b.log_inputs(run_id, payload)
            self.counts["inputs"] += len(payload)
        elif kind == "end":
            b.set_terminated(run_id, payload[0], payload[1])
