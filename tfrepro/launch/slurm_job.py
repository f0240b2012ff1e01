"""Slurm I/O, kept thin: check the controller, submit with `sbatch --parsable --wait`,
stream the job's output file while it runs, report the job's facts, scancel on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from typing import Callable, Dict, Mapping, Optional

from tfrepro import schema
from tfrepro.errors import SchedulerError
from tfrepro.launch import commands, signals
from tfrepro.launch.job import OnJobFacts, WriteOutput, no_facts
from tfrepro.launch.slurm import SUBMIT

log = logging.getLogger(__name__)

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


def _missing(tool: str) -> str:
    return "%s not found: install Slurm's client commands (slurm-client)" % tool


def _slurm(argv, timeout=PING_TIMEOUT, env=None) -> subprocess.CompletedProcess:
    return commands.run(argv, timeout, _missing(argv[0]), env)


def check_controller(environ: Optional[Mapping[str, str]] = None) -> None:
    """Refuse before submitting anything when no slurmctld answers."""
    result = _slurm(["scontrol", "ping"], env=environ)
    if result.returncode != 0 or " is UP" not in result.stdout:
        raise SchedulerError(
            "no Slurm controller reachable (scontrol ping: %s)"
            % commands.first_line(result.stdout + "\n" + result.stderr).rstrip("*").strip()
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
    job = {
        "job_id": fields.get("JobId"),
        "partition": fields.get("Partition"),
        "nodes": fields.get("NodeList"),
        "cluster": fields.get("ClusterName"),
        "account": fields.get("Account"),
        "state": fields.get("JobState"),
        "exit_code": fields.get("ExitCode"),
    }
    return {key: value for key, value in job.items() if value and value != "(null)"}


def show_job(job_id: str, env=None) -> Dict[str, str]:
    try:
        result = _slurm(["scontrol", "show", "job", "-o", job_id], timeout=10, env=env)
    except SchedulerError:
        return {}
    return parse_show_job(result.stdout) if result.returncode == 0 else {}


def cluster_name(env=None) -> Optional[str]:
    """ClusterName from the controller's configuration (not in `show job` on 22.05)."""
    try:
        result = _slurm(["scontrol", "show", "config"], timeout=10, env=env)
    except SchedulerError:
        return None
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ClusterName":
            return value.strip() or None
    return None


def submit(
    script: str, env: Mapping[str, str], output_pattern: str, write: WriteOutput, on_facts: OnJobFacts = no_facts
) -> int:
    """Submit, stream the output file until the job ends, return the job's exit code.

    on_facts() gets the job id at once, then partition, node list and cluster once the job
    runs. Ctrl-C or SIGTERM cancels the job (scancel), waits for it to end, and re-raises
    KeyboardInterrupt.
    """
    check_controller(env)
    os.makedirs(os.path.dirname(output_pattern), exist_ok=True)
    sbatch = commands.start(
        SUBMIT, _missing("sbatch"), env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    sbatch.stdin.write(script.encode("utf-8"))
    sbatch.stdin.close()
    answer = sbatch.stdout.readline().decode("utf-8", "replace").strip()
    job_id = answer.split(";", 1)[0]
    if not job_id.isdigit():
        sbatch.wait()
        refusal = commands.first_line(sbatch.stderr.read().decode("utf-8", "replace"))
        raise SchedulerError("sbatch refused the job: %s" % refusal)
    cluster = answer.split(";", 1)[1] if ";" in answer else cluster_name(env)
    on_facts({"job_id": job_id, "cluster": cluster} if cluster else {"job_id": job_id})
    log.info("submitted Slurm job %s", job_id)
    follower = _Follower(sbatch, job_id, output_pattern.replace("%j", job_id), write, cluster, dict(env))
    with signals.terminating():
        try:
            status = follower.follow(on_facts)
        except KeyboardInterrupt:
            log.info("cancelling Slurm job %s (scancel)", job_id)
            _slurm(["scancel", job_id], timeout=30, env=env)
            follower.follow(lambda facts: None)
            raise
    final = job_facts(show_job(job_id, dict(env)))
    log.info("Slurm job %s: %s, exit code %s", job_id, final.get("state", "ended"), final.get("exit_code", status))
    return status


class _Follower:
    """Copies new bytes of the job's output file to write() until the job ends.

    The end is seen in `scontrol show job` (asked every CHECK seconds): sbatch --wait notices
    it only at its next poll, seconds later. sbatch's own exit status is the fallback, for a
    controller that forgot the job.
    """

    def __init__(self, sbatch, job_id, output_path, write, cluster, env):
        self.sbatch, self.job_id, self.output_path, self.write = sbatch, job_id, output_path, write
        self.cluster, self.env = cluster, env
        self.offset, self.placed, self.last_check = 0, False, 0.0

    def follow(self, on_facts) -> int:
        while True:
            done = self.sbatch.poll() is not None
            self.offset = _copy_new(self.output_path, self.offset, self.write)
            if time.monotonic() - self.last_check >= CHECK:
                self.last_check = time.monotonic()
                fields = show_job(self.job_id, self.env)
                self._placed(fields, on_facts)
                if fields.get("JobState") in TERMINAL:
                    self.offset = _copy_new(self.output_path, self.offset, self.write)
                    if not done:
                        self.sbatch.terminate()  # the job has ended: stop waiting for sbatch --wait's poll
                        self.sbatch.wait()
                    return exit_status(fields.get("ExitCode"), self.sbatch.returncode)
            if done:
                self.offset = _copy_new(self.output_path, self.offset, self.write)
                return self.sbatch.returncode
            time.sleep(POLL)

    def _placed(self, fields, on_facts) -> None:
        placed = job_facts(fields)
        if not self.placed and placed.get("nodes"):
            self.placed = True
            placed.pop("state", None), placed.pop("exit_code", None)
            if self.cluster:
                placed.setdefault("cluster", self.cluster)
            on_facts(placed)


def exit_status(exit_code: Optional[str], fallback: int) -> int:
    """scontrol's ExitCode "status:signal" -> a shell's exit status (a signal N gives 128+N)."""
    status, _, signal_number = (exit_code or "").partition(":")
    if not status.isdigit() or not signal_number.isdigit():
        return fallback
    return 128 + int(signal_number) if int(signal_number) else int(status)


def _copy_new(path: str, offset: int, write: Callable[[bytes], None]) -> int:
    try:
        with open(path, "rb") as output_file:
            output_file.seek(offset)
            chunk = output_file.read()
    except OSError:
        return offset  # not created yet (the job is pending)
    if chunk:
        write(chunk)
    return offset + len(chunk)


def output_pattern() -> str:
    """Where job output files go: $TFREPRO_SLURM_DIR, else ~/.cache/tfrepro/slurm. On a real
    cluster it must be on a filesystem the compute nodes and this host share."""
    path = os.environ.get(schema.ENV_SLURM_DIR) or os.path.expanduser("~/.cache/tfrepro/slurm")
    return os.path.join(os.path.abspath(path), "tfrepro-%j.out")
