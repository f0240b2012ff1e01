"""Run `tfrepro` on a real pseudo-terminal and answer its prompts, as a user at a keyboard would."""

import os
import pty
import select
import subprocess
import sys
import time


def run_on_tty(args, answers=(), env=None, cwd=None, timeout=300):
    """Run `python -m tfrepro ARGS` with stdin/stdout/stderr on a pty. `answers` is a list of
    (text seen in the output, reply to type). Returns (exit code, everything the terminal got)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfrepro"] + list(args),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=cwd,
        close_fds=True,
        start_new_session=True,
    )
    os.close(slave)
    seen, pending, deadline, answered_at = b"", list(answers), time.time() + timeout, 0
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            while pending and pending[0][0].encode() in seen[answered_at:]:
                os.write(master, pending.pop(0)[1].encode() + b"\n")
                answered_at = len(seen)
            if proc.poll() is not None and not ready:
                break
        else:
            proc.kill()
        return proc.wait(timeout=30), seen.decode("utf-8", "replace")
    finally:
        os.close(master)
