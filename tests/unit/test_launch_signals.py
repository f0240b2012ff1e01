"""signals.terminating(): SIGTERM takes Ctrl-C's path, in the main thread only; the handlers come back."""

import os
import signal
import threading
import time

import pytest

from tfrepro.launch import signals


def test_sigterm_raises_keyboard_interrupt_and_the_handlers_come_back():
    before = {signum: signal.getsignal(signum) for signum in signals.SIGNALS}
    with pytest.raises(KeyboardInterrupt):
        with signals.terminating():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
    assert {signum: signal.getsignal(signum) for signum in signals.SIGNALS} == before


def test_ctrl_c_still_raises_keyboard_interrupt():
    with pytest.raises(KeyboardInterrupt):
        with signals.terminating():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)


def test_outside_the_main_thread_nothing_changes():
    seen = []

    def worker():
        with signals.terminating():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before]
