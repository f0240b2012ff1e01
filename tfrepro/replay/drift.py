"""Drift between the recorded GPU environment and this host. Pure.

Only what can change a replay's result or stop it is compared: GPU model, count and driver
(as `tfrepro diff` compares them: inspect/compare.py), and whether this host's driver
supports the image's CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from tfrepro.environment import Environment, GpuInfo
from tfrepro.inspect import compare as environment_compare
from tfrepro.termsafe import safe
from tfrepro.versions import cuda_tuple

GPU_ROWS = (("gpu model", "model"), ("gpu count", "count"), ("driver", "driver"))  # (label, compare's field)


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
        return "  %s %-12s %-28s %s" % (mark, safe(self.name), safe(self.recorded), safe(self.host))


def image_cuda(env: Environment) -> Optional[str]:
    """The CUDA the image was built for: NGC's CUDA_VERSION, else TensorFlow's build info."""
    if env.container and env.container.ngc.get("CUDA_VERSION"):
        return env.container.ngc["CUDA_VERSION"]
    return env.tensorflow.cuda_build if env.tensorflow else None


def compare(recorded: Environment, host: Optional[GpuInfo], gpus_requested: Optional[str]) -> List[Drift]:
    """The GPU rows of `tfrepro diff` (recorded run vs this host), then whether this host's
    driver can run the image's CUDA."""
    host = host or GpuInfo(count=0)
    gpu_rows = {
        d.field: d
        for d in environment_compare.compare(recorded, Environment(gpu=host), include_equal=True)
        if d.group == "gpu"
    }
    items = [Drift(label, gpu_rows[name].a or "none", gpu_rows[name].b or "none") for label, name in GPU_ROWS]
    needed = cuda_tuple(image_cuda(recorded))
    have = cuda_tuple(host.cuda_driver_version)
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


def shape_rows(
    recorded_workers: int, workers: int, gpus_per_worker: Optional[str], host_gpus: Optional[int]
) -> List[Drift]:
    """The job's shape: the worker count (recorded, replayed), and, when the workers run on
    this host (host_gpus not None), a blocking row if it has too few GPUs for them all."""
    if recorded_workers == 1 and workers == 1:
        return []
    items = [Drift("workers", str(recorded_workers), str(workers))]
    if host_gpus is not None and gpus_per_worker not in (None, "none", "all"):
        needed = workers * int(gpus_per_worker)  # type: ignore[arg-type]
        if needed > host_gpus:
            items.append(
                Drift("worker gpus", "%d x %s" % (workers, gpus_per_worker), "%d on this host" % host_gpus, True, True)
            )
    return items
