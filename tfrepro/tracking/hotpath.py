"""What the fluent hooks read on every taken call, at a dict lookup's price.

After a training step has evicted the CPU's caches, each Python-level call costs a few us
(benchmarks/README.md, "gradient_tape.py"), and a routed `mlflow.log_metric` used to make a
dozen: MLflow's thread-local reads (each with an os.getpid() system call),
`threading.current_thread().name`, `name in os.environ` (which encodes the name first).
These read the same state directly, falling back to the public call wherever the state is
not where MLflow 3 keeps it (MLflow 2.17's active-run stack is a plain list: its own
active_run() then).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Optional

_pid = os.getpid()
_main_thread = threading.main_thread().ident


def _after_fork() -> None:
    global _pid, _main_thread
    _pid = os.getpid()
    _main_thread = threading.main_thread().ident


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def thread_reader(variable: Any) -> Optional[Callable[[], Any]]:
    """A reader of an mlflow.utils.thread_utils.ThreadLocalVariable's value in this thread,
    as its get() gives it, without the getpid() call; None for anything else."""
    local = getattr(variable, "thread_local", None)
    get = getattr(variable, "get", None)
    if local is None or get is None:
        return None

    def read():
        try:
            value, pid = local.value
        except (AttributeError, TypeError, ValueError):  # not set in this thread yet
            return get()
        return value if pid == _pid else get()

    return read


def active_run_reader(fluent_module: Any) -> Callable[[], Any]:
    """mlflow.active_run(), reading MLflow 3's thread-local stack directly."""
    read = thread_reader(getattr(fluent_module, "_active_run_stack", None))
    if read is None:
        return fluent_module.active_run

    def active_run():
        runs = read()
        return runs[-1] if runs else None

    return active_run


def active_model_reader(fluent_module: Any) -> Optional[Callable[[], Any]]:
    """mlflow.get_active_model_id() (MLflow 3; None before), reading its context directly."""
    public = getattr(fluent_module, "get_active_model_id", None)
    read = thread_reader(getattr(fluent_module, "_ACTIVE_MODEL_CONTEXT", None))
    if public is None or read is None:
        return public

    def active_model_id():
        return getattr(read(), "model_id", None)

    return active_model_id


def script_thread() -> bool:
    """Not one of tfrepro's own threads (their calls go to MLflow as they are)."""
    return threading.get_ident() == _main_thread or not threading.current_thread().name.startswith("tfrepro-")


def env_reader(name: str) -> Callable[[], bool]:
    """`name in os.environ`, as one dict lookup where os.environ keeps its encoded data."""
    data = getattr(os.environ, "_data", None)
    encode = getattr(os.environ, "encodekey", None)
    if not isinstance(data, dict) or encode is None:
        return lambda: name in os.environ
    key = encode(name)
    return lambda: key in data
