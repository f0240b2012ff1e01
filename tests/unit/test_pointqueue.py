"""PointQueue: queue.Queue's interface as the writer uses it, on a deque."""

import queue
import threading
import time

import pytest

from tfrepro.tracking.pointqueue import PointQueue

pytestmark = pytest.mark.py38


def test_items_come_out_in_order_and_empty_raises_queue_empty():
    q = PointQueue(10)
    for i in range(5):
        q.put_nowait(i)
    assert q.qsize() == 5 and not q.empty()
    assert [q.get_nowait() for _ in range(5)] == list(range(5))
    assert q.empty()
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_put_nowait_past_the_bound_raises_queue_full():
    q = PointQueue(3)
    for i in range(3):
        q.put_nowait(i)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    assert q.qsize() == 3


def test_unbounded_when_maxsize_is_zero():
    q = PointQueue()
    for i in range(20000):
        q.put_nowait(i)
    assert q.qsize() == 20000 and not q.full()


def test_a_blocking_put_gives_up_after_its_timeout():
    q = PointQueue(1)
    q.put_nowait("a")
    started = time.monotonic()
    with pytest.raises(queue.Full):
        q.put("b", timeout=0.05)
    assert 0.04 <= time.monotonic() - started < 2
    with pytest.raises(queue.Full):
        q.put("b", block=False)


def test_a_blocking_put_goes_in_once_another_thread_makes_room():
    q = PointQueue(1)
    q.put_nowait("a")
    threading.Timer(0.05, q.get_nowait).start()
    q.put("b", timeout=5)
    assert q.get_nowait() == "b"
