"""A killed training process loses at most the last second of points (here: none older)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.helpers.ports import free_port
from tfrepro.tracking import spool

pytestmark = [pytest.mark.slow, pytest.mark.py38]

CHILD = textwrap.dedent("""
    import sys, time
    from tfrepro.tracking.session import TrackingSession
    session = TrackingSession.open("killed")
    print("spool", session.spool_path, flush=True)
    step = 0
    while True:
        session.log_metrics({"loss": 1.0 / (step + 1)}, step)
        if step % 50 == 0:
            print("step", step, flush=True)
        step += 1
        time.sleep(0.0005)
""")


def test_sigkill_loses_nothing_older_than_a_second(tmp_path):
    env = dict(os.environ, TFREPRO_SPOOL_DIR=str(tmp_path), MLFLOW_TRACKING_URI="http://127.0.0.1:%d" % free_port())
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    seen = []  # (time printed, step logged before it)
    try:
        path = child.stdout.readline().split()[1]
        for line in child.stdout:
            seen.append((time.monotonic(), int(line.split()[1])))
            if seen[-1][1] >= 3000 and seen[-1][0] - seen[0][0] > 1.5:
                break
        killed_at = time.monotonic()
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    steps = sorted(r["step"] for r in spool.iter_records(path) if "metrics" in r)
    must_have = max(step for t, step in seen if t <= killed_at - 1.0)
    assert steps == list(range(len(steps)))  # no gaps, no duplicates
    assert steps[-1] >= must_have
