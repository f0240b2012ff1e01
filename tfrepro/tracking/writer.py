"""The background writer: the training thread only does a put_nowait; two threads do the rest.

    training thread --put_nowait--> bounded queue --spooler thread--> spool file (append)
                    (queue full: the training thread appends to the spool itself)
    spool file --uploader thread--> tracking server (log_batch), "uploaded up to" marker

Everything passes through the spool, so nothing waits on the network and nothing is
dropped: the spooler hands lines to the OS at least every FLUSH_INTERVAL s, so a killed
process loses at most the points of that last interval (~0.2 s); the uploader reads the
spool in bounded chunks, so memory stays bounded at any logging rate. While the server is
down the uploader backs off (0.5 s doubling to 30 s), then resumes from its marker, first
re-reading the server's history to skip points a failed call may already have delivered."""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from typing import List, Optional

from tfrepro.redact import strip_url_credentials
from tfrepro.tracking import spool
from tfrepro.tracking.backend import Retryable
from tfrepro.tracking.pointqueue import PointQueue
from tfrepro.tracking.threads import join_started, start_later

log = logging.getLogger(__name__)

QUEUE_SIZE = 10000  # log calls, not points
SPOOL_INTERVAL = 0.05  # how often the spooler drains the queue
FLUSH_INTERVAL = 0.2  # max age of lines not yet handed to the OS
UPLOAD_INTERVAL = 1.0  # pace of uploads while the server is up: fewer, bigger batches
MAX_BACKOFF = 30.0
STATE_INTERVAL = 1.0
_STOP = object()


class Writer:
    def __init__(
        self,
        spool_file,
        uploader=None,
        queue_size: int = QUEUE_SIZE,
        upload_interval: float = UPLOAD_INTERVAL,
        online: bool = True,
    ):
        self.spool = spool_file
        self.uploader = uploader  # None: spool only (no server at all)
        self.queue = PointQueue(queue_size)  # queue.Queue's interface, a deque underneath (pointqueue.py)
        self.upload_interval = upload_interval
        self.errors: List[str] = []
        self.spilled = 0  # log calls written by the training thread because the queue was full
        state = spool.load_state(spool_file.path)
        self.confirmed = state.get("offset", 0)
        if uploader is not None and state.get("run_id") and not uploader.run_id:
            uploader.run_id = state["run_id"]
        self.online = online and uploader is not None  # False: probe before the first upload
        self.tried = False  # an upload was attempted (so `online` is known)
        self.live_points = 0  # metric points this writer uploaded (the rest is left to `sync`)
        self._dedupe = False
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._flush_requested = False
        self._closed = False
        self._state_saved = 0.0
        self._spooler = threading.Thread(target=self._spool_loop, name="tfrepro-spooler", daemon=True)
        self._uploader = threading.Thread(target=self._upload_loop, name="tfrepro-uploader", daemon=True)
        self._started = start_later(self._spooler, self._uploader if uploader is not None else None)
        atexit.register(self._at_exit)

    # -- training thread -------------------------------------------------------------
    def put(self, item) -> None:
        """(step, ts_ms, {key: value}) for metrics, (None, record) for anything else."""
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            line = self._encode(item)
            if line:
                self.spool.write([line])
                self.spilled += 1

    # -- spooler thread --------------------------------------------------------------
    def _encode(self, item) -> Optional[bytes]:
        if item[0] is None:
            return spool.encode(item[1])
        metrics = {}
        for k, v in item[2].items():
            try:
                metrics[str(k)] = float(v)  # tensors/numpy convert here, off the training thread
            except Exception as exc:
                self._error("metric %s: %s" % (k, exc))
        if not metrics:
            return None
        return spool.encode_metrics(int(item[0]), item[1], metrics)

    def _drain_queue(self):
        lines, events, stop = [], [], False
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
            elif isinstance(item, threading.Event):
                events.append(item)
            else:
                line = self._encode(item)
                if line:
                    lines.append(line)
                if len(lines) >= 1000:
                    self.spool.write(lines)
                    lines = []
        if lines:
            self.spool.write(lines)
        return events, stop

    def _spool_loop(self):
        last_flush = time.monotonic()
        while True:
            self._wake.wait(SPOOL_INTERVAL)
            self._wake.clear()
            try:
                events, stop = self._drain_queue()
                now = time.monotonic()
                if events or stop or (self.spool.dirty and now - last_flush >= FLUSH_INTERVAL):
                    self.spool.flush()
                    last_flush = now
                    with self._cond:
                        if events:  # someone flushes: upload now, not at the next pace
                            self._flush_requested = True
                        self._cond.notify_all()
            except Exception as exc:  # disk full, ...: keep going, training must not notice
                events, stop = [], False
                self._error("spool: %s" % exc)
            for event in events:
                event.set()
            if stop:
                return

    # -- uploader thread -------------------------------------------------------------
    def _upload_loop(self):
        handle = open(self.spool.path, "rb")
        backoff, next_try = 0.0, 0.0
        try:
            while not self._closed:
                with self._cond:
                    if not self._flush_requested:
                        self._cond.wait(0.25)
                    urgent = self._flush_requested
                if self._closed:
                    return
                pending = self.spool.flushed > self.confirmed
                if not pending or (time.monotonic() < next_try and not urgent):
                    self._attempt_done(urgent)
                    continue
                try:
                    self._upload_pending(handle)
                    self.online, backoff = True, 0.0
                    next_try = time.monotonic() + self.upload_interval
                except Retryable as exc:
                    self._down(exc)
                    backoff = min(max(backoff * 2, 0.5), MAX_BACKOFF)
                    next_try = time.monotonic() + backoff
                except Exception as exc:  # a bug or an odd store: never kill training for it
                    self._error("upload: %s" % exc)
                    self.online, self._dedupe = False, True
                    backoff = min(max(backoff * 2, 0.5), MAX_BACKOFF)
                    next_try = time.monotonic() + backoff
                self.tried = True
                self._save_state()
                self._attempt_done(urgent)
        finally:
            handle.close()

    def _down(self, exc):
        if self.online or not self.tried:
            log.warning(
                "tfrepro: tracking server unreachable (%s); spooling to %s and retrying",
                exc,
                self.spool.path,
            )
        self.online, self._dedupe = False, True

    @property
    def down(self) -> bool:
        """The last upload attempt failed to reach the server."""
        return self.uploader is None or (self.tried and not self.online)

    def wait_for_run(self, timeout: float) -> Optional[str]:
        """The real run id, asking for an upload now (which creates the run of a local id);
        None when the server fails that attempt or `timeout` s pass."""
        if self.uploader is None:
            return None
        deadline = time.monotonic() + timeout
        self.flush(0, wait=False)
        with self._cond:
            while not self.uploader.run_id and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.tried and not self.online and not self._flush_requested):
                    break
                self._cond.wait(min(remaining, 0.05))
        return self.uploader.run_id

    def _attempt_done(self, urgent):
        with self._cond:
            if urgent and (self.confirmed >= self.spool.flushed or not self.online):
                self._flush_requested = False  # done, or the server failed a fresh try
            self._cond.notify_all()

    def _upload_pending(self, handle):
        if not self.online and not self.uploader.backend.reachable():
            raise Retryable("no answer from %s" % strip_url_credentials(self.uploader.backend.tracking_uri))
        if not self.uploader.run_id:
            self.uploader.ensure_run()
            self._save_state(force=True)  # the local id -> real run mapping, before any upload
            with self._cond:
                self._cond.notify_all()  # wait_for_run()
        while not self._closed and self.confirmed < self.spool.flushed:
            records, end = spool.read(self.spool.path, self.confirmed, self.spool.flushed, handle=handle)
            if end == self.confirmed:
                return
            self.live_points += self.uploader.upload(records, dedupe=self._dedupe)
            self._dedupe = False
            if not self._closed:
                self.confirmed = end
            self._save_state()

    def _save_state(self, force=False):
        now = time.monotonic()
        if self._closed or not (force or now - self._state_saved >= STATE_INTERVAL):
            return
        self._state_saved = now
        self._write_marker()

    def _write_marker(self):
        """The spool's "uploaded up to" marker, with the real run id once there is one."""
        state = {"offset": self.confirmed}
        if self.uploader is not None and self.uploader.run_id:
            state["run_id"] = self.uploader.run_id
        try:
            spool.save_state(self.spool.path, state)
        except OSError as exc:
            self._error("spool marker: %s" % exc)

    # -- any thread ------------------------------------------------------------------
    def _error(self, message):
        if not self.errors:
            log.warning("tfrepro: tracking problem (%s); training goes on", message)
        if len(self.errors) < 100:
            self.errors.append(message)

    def flush(self, timeout: float, wait: bool = True, spooled_only: bool = False) -> bool:
        """Wait (at most `timeout` s) until everything logged so far is spooled and uploaded,
        or the server failed a fresh attempt. True when all is uploaded. wait=False only
        starts the upload now; spooled_only=True waits only until it is in the spool file
        (and starts the upload)."""
        deadline = time.monotonic() + max(timeout, 0.0)
        marker = threading.Event()
        try:
            self.queue.put(marker, timeout=max(timeout, 0.001))
        except queue.Full:
            return False
        self._wake.set()
        if not wait:
            return False
        marker.wait(max(deadline - time.monotonic(), 0.0))
        self._started.wait(max(deadline - time.monotonic(), 0.0))
        if spooled_only or self.uploader is None or not self._uploader.is_alive():
            return False
        target = self.spool.flushed
        with self._cond:
            while self.confirmed < target and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (not self._flush_requested and not self.online):
                    break
                self._cond.wait(min(remaining, 0.05))
        return self.confirmed >= target

    def close(self, timeout: float) -> bool:
        """Final flush, stop the threads, fsync the spool; delete it when all was uploaded.
        Returns True when nothing is left for `tfrepro sync`."""
        done = self.flush(timeout)
        try:
            self.queue.put(_STOP, timeout=1)
        except queue.Full:
            pass
        self._wake.set()
        join_started(self._started, self._spooler, 2)
        done = done and self.confirmed >= self.spool.flushed
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._uploader.is_alive():
            join_started(self._started, self._uploader, 1)
        self._drain_queue()  # anything put after the stop marker
        self.spool.close()
        atexit.unregister(self._at_exit)
        if done and self.confirmed >= self.spool.flushed and not self._uploader.is_alive():
            spool.remove(self.spool.path)
            return True
        self._write_marker()
        return False

    def _at_exit(self):
        """The process exits without close(): keep every queued point on disk."""
        try:
            self._drain_queue()
            self.spool.close()
        except Exception:
            pass
