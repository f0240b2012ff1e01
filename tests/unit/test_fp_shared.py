"""fingerprint.shared: one collection for the plugin and the callback; recorded_by_caller."""

import threading
import time

import pytest

from tfrepro import fingerprint


@pytest.fixture
def counted(monkeypatch):
    calls = []

    def collect():
        calls.append(threading.current_thread().name)
        time.sleep(0.05)  # long enough for a second thread to arrive while collecting
        return object()

    monkeypatch.setattr(fingerprint, "collect", collect)
    monkeypatch.setattr(fingerprint, "_last", None)
    return calls


def test_reused_when_recent_enough(counted):
    first = fingerprint.shared()
    assert fingerprint.shared() is first  # any age
    assert fingerprint.shared(since=time.time() - 60) is first
    assert len(counted) == 1
    fresh = fingerprint.shared(since=time.time() + 1)  # began before `since`: collect again
    assert fresh is not first and len(counted) == 2


def test_two_threads_share_one_collection(counted):
    got = []
    threads = [threading.Thread(target=lambda: got.append(fingerprint.shared())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(counted) == 1 and got[0] is got[1]


def test_recorded_by_caller_is_per_thread():
    seen = []
    with fingerprint.recorded_by_caller():
        assert fingerprint.caller_records()
        other = threading.Thread(target=lambda: seen.append(fingerprint.caller_records()))
        other.start()
        other.join()
    assert seen == [False] and not fingerprint.caller_records()


def test_the_plugin_adds_nothing_while_the_callback_opens_its_run(counted, monkeypatch):
    pytest.importorskip("mlflow")
    from tfrepro_mlflow import context

    class Env:
        def to_tags(self):
            return {"tfrepro.schema": "1"}

    monkeypatch.setattr(fingerprint, "collect", lambda: counted.append("x") or Env())
    monkeypatch.setattr(context, "_tags", None)
    with fingerprint.recorded_by_caller():
        assert context.environment_tags() == {}
    assert counted == []
    assert context.environment_tags() == {"tfrepro.schema": "1"}
    assert context.environment_tags() == {"tfrepro.schema": "1"} and counted == ["x"]
