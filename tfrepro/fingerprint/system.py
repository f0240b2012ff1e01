"""System source: OS, kernel, CPU, memory and hostname, read from /etc and /proc."""

from __future__ import annotations

import os
import shlex
from typing import Any, Dict, Optional

from tfrepro.environment import SystemInfo
from tfrepro.fingerprint import first_values, read_text

ROOT = "/"  # tests point this at a folder holding recorded files


def _read(path: str) -> str:
    return read_text(ROOT, path) or ""


def query() -> Dict[str, object]:
    uname = os.uname()
    return {
        "os_release": _read("/etc/os-release") or _read("/usr/lib/os-release"),
        "cpuinfo": _read("/proc/cpuinfo"),
        "meminfo": _read("/proc/meminfo"),
        "kernel": uname.release,
        "machine": uname.machine,
        "cpu_count": os.cpu_count(),
        "hostname": uname.nodename,
    }


def parse_os_release(text: str) -> Dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            words = [value]
        fields[key] = words[0] if words else ""
    return fields


def parse_cpuinfo(text: str) -> Optional[str]:
    """The CPU model: x86 "model name", POWER "cpu", else ARM's implementer and part codes."""
    fields = first_values(text, ":")
    for key in ("model name", "Hardware", "Model", "cpu"):
        if fields.get(key):
            return fields[key]
    if fields.get("CPU implementer"):
        return "CPU implementer %s, part %s" % (fields["CPU implementer"], fields.get("CPU part", "?"))
    return None


def parse_meminfo(text: str) -> Optional[int]:
    """MemTotal in bytes."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            try:
                return int(parts[1]) * (1024 if parts[2:3] == ["kB"] else 1)
            except (IndexError, ValueError):
                return None
    return None


def parse(raw: Dict[str, Any]) -> SystemInfo:
    release = parse_os_release(str(raw.get("os_release") or ""))
    return SystemInfo(
        os=release.get("PRETTY_NAME") or release.get("NAME") or None,
        kernel=raw.get("kernel") or None,
        machine=raw.get("machine") or None,
        cpu_model=parse_cpuinfo(str(raw.get("cpuinfo") or "")),
        cpu_count=raw.get("cpu_count") or None,
        memory_bytes=parse_meminfo(str(raw.get("meminfo") or "")),
        hostname=raw.get("hostname") or None,
    )


def collect() -> SystemInfo:
    return parse(query())
