"""Slurm I/O, kept thin: check the controller, submit with `sbatch --parsable --wait`,
stream the job's output file while it runs, report the job's facts, scancel on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable, Dict, Mapping, Optional

from tfrepro.errors import SchedulerError
from tfrepro.launch.slurm import SUBMIT

PING_TIMEOUT = 20  # seconds; a missing slurm.conf makes scontrol retry for a minute
POLL = 0.25  # seconds between reads of the output file
CHECK = 1.0  # seconds between `scontrol show job`
TERMINAL = (
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
)


def _run(argv, timeout=PING_TIMEOUT, env=None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except FileNotFoundError:
        raise SchedulerError("%s not found: install Slurm's client commands (slurm-client)" % argv[0]) from None
    except subprocess.TimeoutExpired:
        raise SchedulerError("%s did not answer within %d s" % (" ".join(argv), timeout)) from None


def _first_line(text: str) -> str:
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "no output")[:300]


def check_controller(environ: Optional[Mapping[str, str]] = None) -> None:
    """Refuse before submitting anything when no slurmctld answers."""
    result = _run(["scontrol", "ping"], env=dict(environ) if environ is not None else None)
    if result.returncode != 0 or " is UP" not in result.stdout:
        raise SchedulerError(
            "no Slurm controller reachable (scontrol ping: %s)"
            % _first_line(result.stdout + "\n" + result.stderr).rstrip("*").strip()
        )


def parse_show_job(text: str) -> Dict[str, str]:
    """`scontrol show job -o ID`: one line of Key=Value pairs (values have no spaces
    except in the last fields, which we do not read)."""
    fields = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def job_facts(fields: Mapping[str, str]) -> Dict[str, str]:
    """The facts tfrepro records about the job, once Slurm has placed it."""
    facts = {
        "job_id": fields.get("JobId"),
        "partition": fields.get("Partition"),
        "nodes": fields.get("NodeList"),
        "cluster": fields.get("ClusterName"),
        "account": fields.get("Account"),
        "state": fields.get("JobState"),
        "exit_code": fields.get("ExitCode"),
    }
    return {k: v for k, v in facts.items() if v and v != "(null)"}


def show_job(job_id: str, env=None) -> Dict[str, str]:
    try:
        result = _run(["scontrol", "show", "job", "-o", job_id], timeout=10, env=env)
    except SchedulerError:
        return {}
    return parse_show_job(result.stdout) if result.returncode == 0 else {}


def cluster_name(env=None) -> Optional[str]:
    """ClusterName from the controller's configuration (not in `show job` on 22.05)."""
    try:
        result = _run(["scontrol", "show", "config"], timeout=10, env=env)
    except SchedulerError:
        return None
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ClusterName":
            return value.strip() or None
    return None


class _Terminated(Exception):
    pass


def _raise_terminated(signum, frame):
    raise _Terminated()


def submit(
    script: str,
    env: Mapping[str, str],
    output_pattern: str,
    write: Callable[[bytes], None],
    on_facts: Callable[[Dict[str, str]], None] = lambda facts: None,
    log: Callable[[str], None] = lambda line: None,
) -> int:
    """Submit, stream the output file until the job ends, return the job's exit code.

    on_facts() gets the job id at once, then partition, node list and cluster once the job
    runs. Ctrl-C or SIGTERM cancels the job (scancel), waits for it to end, and re-raises
    as KeyboardInterrupt.
    """
    check_controller(env)
    os.makedirs(os.path.dirname(output_pattern), exist_ok=True)
    try:
        proc = subprocess.Popen(
            list(SUBMIT),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            start_new_session=True,
        )  # a terminal Ctrl-C reaches us, not sbatch
    except FileNotFoundError:
        raise SchedulerError("sbatch not found: install Slurm's client commands (slurm-client)") from None
    proc.stdin.write(script.encode("utf-8"))
    proc.stdin.close()
    answer = proc.stdout.readline().decode("utf-8", "replace").strip()
    job_id = answer.split(";", 1)[0]
    if not job_id.isdigit():
        proc.wait()
        raise SchedulerError("sbatch refused the job: %s" % _first_line(proc.stderr.read().decode("utf-8", "replace")))
    cluster = answer.split(";", 1)[1] if ";" in answer else cluster_name(env)
    on_facts({"job_id": job_id, "cluster": cluster} if cluster else {"job_id": job_id})
    log("submitted Slurm job %s" % job_id)
    output = output_pattern.replace("%j", job_id)
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if _main_thread() else None
    follower = _Follower(proc, job_id, output, write, cluster, dict(env))
    try:
        status = follower.follow(on_facts)
    except (KeyboardInterrupt, _Terminated):
        log("cancelling Slurm job %s (scancel)" % job_id)
        _run(["scancel", job_id], timeout=30, env=dict(env))
        follower.follow(lambda facts: None)
        raise KeyboardInterrupt() from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    final = job_facts(show_job(job_id, dict(env)))
    log("Slurm job %s: %s, exit code %s" % (job_id, final.get("state", "ended"), final.get("exit_code", status)))
    return status


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class _Follower:
    """Copies new bytes of the job's output file to write() until the job ends.

    The end is seen in `scontrol show job` (asked every CHECK seconds): sbatch --wait notices
    it only at its next poll, seconds later. sbatch's own exit status is the fallback, for a
    controller that forgot the job.
    """

    def __init__(self, proc, job_id, output, write, cluster, env):
        self.proc, self.job_id, self.output, self.write = proc, job_id, output, write
        self.cluster, self.env = cluster, env
        self.offset, self.placed, self.last_check = 0, False, 0.0

    def follow(self, on_facts) -> int:
        while True:
            done = self.proc.poll() is not None
            self.offset = _copy_new(self.output, self.offset, self.write)
            if time.monotonic() - self.last_check >= CHECK:
                self.last_check = time.monotonic()
                fields = show_job(self.job_id, self.env)
                self._placed(fields, on_facts)
                if fields.get("JobState") in TERMINAL:
                    self.offset = _copy_new(self.output, self.offset, self.write)
                    if not done:
                        self.proc.terminate()  # the job has ended: stop waiting for sbatch --wait's poll
                        self.proc.wait()
                    return exit_status(fields.get("ExitCode"), self.proc.returncode)
            if done:
                self.offset = _copy_new(self.output, self.offset, self.write)
                return self.proc.returncode
            time.sleep(POLL)

    def _placed(self, fields, on_facts) -> None:
        facts = job_facts(fields)
        if not self.placed and facts.get("nodes"):
            self.placed = True
            facts.pop("state", None), facts.pop("exit_code", None)
            if self.cluster:
                facts.setdefault("cluster", self.cluster)
            on_facts(facts)


def exit_status(exit_code: Optional[str], fallback: int) -> int:
    """scontrol's ExitCode "status:signal" -> a shell's exit status (a signal N gives 128+N)."""
    status, _, signal_number = (exit_code or "").partition(":")
    if not status.isdigit() or not signal_number.isdigit():
        return fallback
    return 128 + int(signal_number) if int(signal_number) else int(status)


def _copy_new(path: str, offset: int, write: Callable[[bytes], None]) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
    except OSError:
        return offset  # not created yet (the job is pending)
    if chunk:
        write(chunk)
    return offset + len(chunk)


def output_pattern() -> str:
    """Where job output files go: $TFREPRO_SLURM_DIR, else ~/.cache/tfrepro/slurm. On a real
    cluster it must be on a filesystem the compute nodes and this host share."""
    path = os.environ.get("TFREPRO_SLURM_DIR") or os.path.expanduser("~/.cache/tfrepro/slurm")
    return os.path.join(os.path.abspath(path), "tfrepro-%j.out")
