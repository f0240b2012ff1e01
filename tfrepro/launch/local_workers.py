"""N workers on one host (docker, podman), followed as one job.

    status = supervise(workers, write, timeout_s)

Each worker's output is copied to write() line by line, each line prefixed with its worker
(`[worker 1] ...`); lines of different workers interleave as they come, never inside a line.
The job ends when every worker has exited 0, or at the first worker that exits non-zero: the
others are stopped and that worker's status is returned (logged as "worker 1 exited with
status 3"). Ctrl-C or SIGTERM stops every worker and re-raises KeyboardInterrupt; past
`timeout_s` every worker is stopped and one SchedulerError says so (MultiWorkerMirroredStrategy
waits for ever for a worker that never joins).

The engine starts the workers and removes what is left of them afterwards; a worker is any
object with `index`, `chunks()` (its output until it exits), `wait()` and `stop()`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Tuple

from tfrepro.errors import SchedulerError
from tfrepro.launch import signals

log = logging.getLogger(__name__)

POLL = 0.2  # seconds between looks at the clock and at Ctrl-C
JOIN = 30.0  # seconds to wait for a stopped worker's output to end


class Worker(Protocol):
    index: int

    def chunks(self) -> Iterable[bytes]: ...

    def wait(self) -> int: ...

    def stop(self) -> None: ...


Ended = Tuple[int, Optional[int], Optional[BaseException]]  # (index, exit status, error)


def supervise(
    workers: Sequence[Worker],
    write: Callable[[bytes], None],
    timeout_s: Optional[float] = None,
    clock: Callable[[], float] = time.monotonic,
    on_facts: Optional[Callable[[Dict[str, object]], None]] = None,
) -> int:
    lock = threading.Lock()
    ended: "queue.Queue[Ended]" = queue.Queue()

    def locked_write(data: bytes) -> None:
        with lock:
            write(data)

    threads = [
        threading.Thread(
            target=_follow, args=(worker, locked_write, ended), daemon=True, name="worker-%d" % worker.index
        )
        for worker in workers
    ]
    for thread in threads:
        thread.start()
    deadline = clock() + timeout_s if timeout_s else None
    running = {worker.index: worker for worker in workers}
    with signals.terminating():
        try:
            while running:
                try:
                    index, status, error = ended.get(timeout=POLL)
                except queue.Empty:
                    if deadline is not None and clock() >= deadline:
                        _stop(running.values(), threads)
                        raise SchedulerError(
                            "the %d workers did not finish within %g s (one never joined?): all were stopped"
                            % (len(workers), timeout_s)
                        ) from None
                    continue
                running.pop(index, None)
                if error is not None:
                    _stop(running.values(), threads)
                    raise error
                if status:
                    if on_facts is not None:  # the run's tags name the worker that failed the job
                        on_facts({"failed_worker": str(index), "failed_worker_status": str(status)})
                    if running:
                        log.warning("worker %d exited with status %d: stopping the other workers", index, status)
                    else:
                        log.warning("worker %d exited with status %d", index, status)
                    _stop(running.values(), threads)
                    return status
            return 0
        except KeyboardInterrupt:
            log.info("stopping the %d workers", len(workers))
            _stop(running.values(), threads)
            raise


def _follow(worker: Worker, write: Callable[[bytes], None], ended: "queue.Queue[Ended]") -> None:
    prefix = b"[worker %d] " % worker.index
    pending = b""
    try:
        for chunk in worker.chunks():
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            if lines:
                write(b"".join(prefix + line + b"\n" for line in lines))
        if pending:
            write(prefix + pending + b"\n")
        ended.put((worker.index, worker.wait(), None))
    except BaseException as exc:  # the engine's error, raised again by supervise()
        ended.put((worker.index, None, exc))


def _stop(workers: Iterable[Worker], threads: List[threading.Thread]) -> None:
    """Stop the workers all at once (each may take its runtime's grace period), then let their
    output run out."""
    stoppers = [threading.Thread(target=_stop_one, args=(worker,), daemon=True) for worker in workers]
    for stopper in stoppers:
        stopper.start()
    for thread in stoppers + threads:
        thread.join(JOIN)


def _stop_one(worker: Worker) -> None:
    try:
        worker.stop()
    except Exception as exc:  # the engine removes what is left afterwards
        log.warning("could not stop worker %d: %s", worker.index, exc)
