"""PointQueue: the writer's bounded queue, at a deque's price on the hot path.

queue.Queue takes a Condition (a Python-level lock dance) on every put and get: ~1.1 us
each on this project's 2-core machine, paid twice a logged step, once by the training
thread and once by the spooler (benchmarks/README.md, "the cost of a point"). A deque's
append and popleft are atomic under the GIL and cost ~0.07 us. PointQueue keeps
queue.Queue's interface as the writer uses it (put_nowait, put with a timeout, get_nowait,
raising queue.Full / queue.Empty), so it is a drop-in for `queue.Queue(maxsize)`.

The bound is kept by a length check before the append: two threads putting at once may go
one item over it, which is harmless (it bounds memory, it is no protocol). A put() with a
timeout (the writer's flush marker, its stop) waits for room by polling every 5 ms: only
when the queue is full, which the spooler drains every 0.05 s.
"""

from __future__ import annotations

import collections
import queue
import time
from typing import Any, Optional

POLL = 0.005  # s between looks for room in a blocking put()


class PointQueue:
    def __init__(self, maxsize: int = 0):
        self.maxsize = maxsize
        self._items: "collections.deque" = collections.deque()

    def put_nowait(self, item: Any) -> None:
        if self.maxsize > 0 and len(self._items) >= self.maxsize:
            raise queue.Full
        self._items.append(item)

    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        if not block:
            self.put_nowait(item)
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                self.put_nowait(item)
                return
            except queue.Full:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                time.sleep(POLL)

    def get_nowait(self) -> Any:
        try:
            return self._items.popleft()
        except IndexError:
            raise queue.Empty from None

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return self.maxsize > 0 and len(self._items) >= self.maxsize
