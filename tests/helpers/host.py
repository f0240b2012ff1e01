"""What this host has, found without tfrepro's own code, so tests assert against the machine
they run on (a CPU box, a GPU box, NVIDIA's image) instead of assuming a CPU-only host."""

import functools
import shutil
import subprocess


@functools.lru_cache(maxsize=None)
def gpu_count() -> int:
    """NVIDIA GPUs NVML sees here (NVML itself, else `nvidia-smi -L`); 0 without a driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no nvidia-ml-py, or no driver library
        pass
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU ")) if out.returncode == 0 else 0
