"""Drift between the recorded GPU environment and this host. Pure.

Only what can change a replay's result or stop it is compared: GPU model, count, driver,
and whether this host's driver supports the image's CUDA.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Mapping, Optional, Tuple

from tfrepro.environment import Environment, GpuInfo


@dataclass(frozen=True)
class Drift:
    name: str
    recorded: str
    host: str
    blocking: bool = False  # refuse unless --allow-drift
    differs: Optional[bool] = None  # None: recorded != host

    def __post_init__(self):
        if self.differs is None:
            object.__setattr__(self, "differs", self.recorded != self.host)

    def line(self) -> str:
        mark = "!" if self.blocking else ("*" if self.differs else " ")
        return "  %s %-12s %-28s %s" % (mark, self.name, self.recorded, self.host)


def cuda_tuple(text: Optional[str]) -> Optional[Tuple[int, int]]:
    """"11.7", "11.7.0.022", "11070" (NVML integer) -> (11, 7)."""
    if not text:
        return None
    text = str(text).strip()
    if text.isdigit() and len(text) >= 4:
        value = int(text)
        return value // 1000, (value % 1000) // 10
    match = re.match(r"^(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def image_cuda(tags: Mapping[str, str], env: Optional[Environment]) -> Optional[str]:
    """The CUDA the image was built for: NGC's CUDA_VERSION, else TensorFlow's build info."""
    if env and env.container and env.container.ngc.get("CUDA_VERSION"):
        return env.container.ngc["CUDA_VERSION"]
    return tags.get("tfrepro.cuda.build") or None


def recorded_gpus(tags: Mapping[str, str], env: Optional[Environment]) -> Tuple[int, str, str]:
    """(count, model names, driver) as recorded."""
    if env and env.gpu:
        names = ", ".join(sorted({d.name for d in env.gpu.devices})) or "none"
        return env.gpu.count, names, env.gpu.driver_version or "none"
    count = tags.get("tfrepro.gpu.count", "0")
    return (int(count) if count.isdigit() else 0, tags.get("tfrepro.gpu.name") or "none",
            tags.get("tfrepro.gpu.driver") or "none")


def compare(tags: Mapping[str, str], env: Optional[Environment], host: Optional[GpuInfo],
            gpus_requested: Optional[str]) -> List[Drift]:
    host = host or GpuInfo(count=0)
    count, names, driver = recorded_gpus(tags, env)
    host_names = ", ".join(sorted({d.name for d in host.devices})) or "none"
    items = [
        Drift("gpu model", names, host_names),
        Drift("gpu count", str(count), str(host.count)),
        Drift("driver", driver, host.driver_version or "none"),
    ]
    needed = cuda_tuple(image_cuda(tags, env))
    have = cuda_tuple(str(host.cuda_driver_version)) if host.cuda_driver_version else None
    needed_text = "%d.%d" % needed if needed else "unknown"
    if gpus_requested is None:
        items.append(Drift("image cuda", needed_text, "not needed (no GPU requested)", differs=False))
    elif needed and have and have < needed:
        # minor-version compatibility runs most 11.x code on an 11.0+ driver; another major does not
        blocking = have[0] < needed[0]
        items.append(Drift("image cuda", needed_text, "driver supports only %d.%d" % have, blocking, True))
    else:
        supported = "%d.%d" % have if have else "unknown"
        items.append(Drift("image cuda", needed_text, "driver supports %s" % supported, False, have is None))
    return items


def render(items: List[Drift]) -> str:
    head = "  %s %-12s %-28s %s" % (" ", "", "recorded", "this host")
    return "\n".join([head] + [i.line() for i in items])
