"""N workers followed as one job (local_workers.supervise), with fake workers: output prefixed
line by line, the first failure stops the others and is named, the timeout, Ctrl-C/SIGTERM."""

import logging
import os
import signal
import threading
import time

import pytest

from tfrepro.errors import SchedulerError
from tfrepro.launch import local_workers


class FakeWorker:
    """Writes `chunks`, then exits with `status`, or runs until stopped (status None)."""

    def __init__(self, index, chunks, status=0, delay=0.0):
        self.index, self._chunks, self.status, self.delay = index, chunks, status, delay
        self.stopped = threading.Event()

    def chunks(self):
        for chunk in self._chunks:
            yield chunk
        if self.status is None:
            self.stopped.wait(10)
        else:
            time.sleep(self.delay)

    def wait(self):
        return 137 if self.status is None else self.status

    def stop(self):
        self.stopped.set()


def run(workers, timeout_s=None):
    out = []
    status = local_workers.supervise(workers, out.append, timeout_s)
    return status, b"".join(out)


def test_output_is_prefixed_line_by_line_and_all_succeed():
    first = FakeWorker(0, [b"epo", b"ch 1\nepoch 2\n", b"no newline"])
    second = FakeWorker(1, [b"ready\n"])
    status, out = run([first, second])
    assert status == 0
    lines = out.decode().splitlines()
    assert sorted(lines) == ["[worker 0] epoch 1", "[worker 0] epoch 2", "[worker 0] no newline", "[worker 1] ready"]


def test_the_first_failure_stops_the_others_and_names_the_worker(caplog):
    survivor = FakeWorker(0, [b"waiting\n"], status=None)
    failing = FakeWorker(1, [b"Traceback\n"], status=3, delay=0.1)
    with caplog.at_level(logging.INFO, logger="tfrepro"):
        status, out = run([survivor, failing])
    assert status == 3
    assert survivor.stopped.is_set()
    assert caplog.messages == ["worker 1 exited with status 3: stopping the other workers"]
    assert b"[worker 1] Traceback\n" in out


def test_a_worker_that_never_joins_times_out_and_every_worker_is_stopped():
    workers = [FakeWorker(0, [], status=None), FakeWorker(1, [], status=None)]
    started = time.monotonic()
    with pytest.raises(SchedulerError, match=r"^the 2 workers did not finish within 0.5 s .*: all were stopped$"):
        run(workers, timeout_s=0.5)
    assert all(worker.stopped.is_set() for worker in workers)
    assert time.monotonic() - started < 5


def test_an_engine_error_in_a_worker_stops_the_others_and_is_raised():
    class Broken(FakeWorker):
        def chunks(self):
            raise SchedulerError("cannot read the logs of pod p-1")
            yield b""

    survivor = FakeWorker(0, [], status=None)
    with pytest.raises(SchedulerError, match="cannot read the logs of pod p-1"):
        run([survivor, Broken(1, [])])
    assert survivor.stopped.is_set()


def sigterm():
    os.kill(os.getpid(), signal.SIGTERM)


def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("stop", [ctrl_c, sigterm])
def test_ctrl_c_or_sigterm_stops_every_worker(stop):
    workers = [FakeWorker(0, [], status=None), FakeWorker(1, [], status=None)]
    before = signal.getsignal(signal.SIGTERM)
    threading.Timer(0.3, stop).start()
    with pytest.raises(KeyboardInterrupt):
        run(workers)
    assert all(worker.stopped.is_set() for worker in workers)
    assert signal.getsignal(signal.SIGTERM) is before
