"""GPU source: driver, the highest CUDA the driver supports, and each visible device.

query() asks NVML (pynvml, imported only there) and returns a plain dict shaped like the
"pynvml" block of a recorded probe; `nvidia-smi -q -x` is the fallback when pynvml is missing.
No driver is not an error: count=0 and a reason. Python 3.8 compatible.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any, Dict, List, Mapping, Optional

from tfrepro.environment import GpuDevice, GpuInfo
from tfrepro.versions import cuda_int

VISIBLE_ENV = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
SMI_TIMEOUT = 10


def _text(value: Any) -> Any:
    # nvidia-ml-py < 11.515 returns bytes, later versions str
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _query_nvml(pynvml) -> Dict[str, Any]:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:  # LibraryNotFound, DriverNotLoaded, NoPermission...
        return {"error": "no NVIDIA driver (NVML: %s)" % exc}
    try:
        raw = {
            "driver_version": _text(pynvml.nvmlSystemGetDriverVersion()),
            "nvml_version": _text(pynvml.nvmlSystemGetNVMLVersion()),
            "cuda_driver_version": pynvml.nvmlSystemGetCudaDriverVersion(),
            "device_count": pynvml.nvmlDeviceGetCount(),
            "devices": [],
        }
        for index in range(raw["device_count"]):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            device = {
                "name": _text(pynvml.nvmlDeviceGetName(handle)),
                "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
                "memory_total": pynvml.nvmlDeviceGetMemoryInfo(handle).total,
                "pci_bus_id": _text(pynvml.nvmlDeviceGetPciInfo(handle).busId),
            }
            for key, call in (
                ("compute_capability", "nvmlDeviceGetCudaComputeCapability"),
                ("mig_mode", "nvmlDeviceGetMigMode"),
            ):
                try:
                    device[key] = list(getattr(pynvml, call)(handle))
                except (pynvml.NVMLError, AttributeError):  # NotSupported, or an old pynvml
                    device[key] = None
            raw["devices"].append(device)
        return raw
    finally:
        pynvml.nvmlShutdown()


def _query_smi() -> Dict[str, Any]:
    import shutil

    smi = shutil.which("nvidia-smi")
    if not smi:
        return {"error": "no NVIDIA driver: pynvml not installed and no nvidia-smi on PATH"}
    try:
        out = subprocess.run(
            [smi, "-q", "-x"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=SMI_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": "nvidia-smi failed: %s" % exc}
    if out.returncode != 0:
        message = (out.stdout + out.stderr).decode("utf-8", "replace").strip().splitlines()
        return {"error": "nvidia-smi failed: %s" % (message[0] if message else out.returncode)}
    return parse_smi_xml(out.stdout.decode("utf-8", "replace"))


def query() -> Dict[str, Any]:
    env = {name: os.environ[name] for name in VISIBLE_ENV if name in os.environ}
    try:
        import pynvml
    except ImportError:
        raw = _query_smi()
    else:
        try:
            raw = _query_nvml(pynvml)
        except Exception as exc:  # a GPU fallen off the bus must not hide the rest
            raw = {"error": "NVML failed: %s: %s" % (type(exc).__name__, exc)}
    raw["env"] = env
    return raw


def _version_pair(value: Optional[List[int]]) -> Optional[str]:
    if not value or len(value) < 2:
        return None
    return "%d.%d" % (value[0], value[1])


def _mig(value: Optional[List[int]]) -> Optional[str]:
    # nvmlDeviceGetMigMode -> [current, pending]; NVML_DEVICE_MIG_ENABLE == 1
    if not value:
        return None
    return "enabled" if value[0] == 1 else "disabled"


def parse(raw: Mapping[str, Any]) -> GpuInfo:
    """A pynvml-shaped dict (see query()) -> GpuInfo."""
    env = raw.get("env") or {}
    visible: Dict[str, Any] = dict(
        cuda_visible_devices=env.get("CUDA_VISIBLE_DEVICES"), nvidia_visible_devices=env.get("NVIDIA_VISIBLE_DEVICES")
    )
    if raw.get("error"):
        return GpuInfo(count=0, reason=str(raw["error"]), **visible)
    devices = tuple(
        GpuDevice(
            index=index,
            name=_text(d.get("name")) or "",
            uuid=_text(d.get("uuid")) or "",
            memory_total_bytes=d.get("memory_total"),
            compute_capability=_version_pair(d.get("compute_capability")),
            mig_mode=_mig(d.get("mig_mode")),
            pci_bus_id=_text(d.get("pci_bus_id")),
        )
        for index, d in enumerate(raw.get("devices") or ())
    )
    cuda = raw.get("cuda_driver_version")
    return GpuInfo(
        count=len(devices),
        driver_version=_text(raw.get("driver_version")),
        cuda_driver_version=int(cuda) if cuda else None,
        nvml_version=_text(raw.get("nvml_version")),
        devices=devices,
        reason=None if devices else "NVML sees no GPU",
        **visible,
    )


_UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def _smi_bytes(text: Optional[str]) -> Optional[int]:
    number, _, unit = (text or "").partition(" ")
    try:
        return int(number) * _UNITS[unit.strip()]
    except (ValueError, KeyError):
        return None


def parse_smi_xml(text: str) -> Dict[str, Any]:
    """`nvidia-smi -q -x` -> the pynvml-shaped dict (no NVML version or compute capability).

    nvidia-smi reports memory in MiB, so memory_total is rounded down to a MiB.
    """
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.fromstring(text)
    devices = []
    for gpu in root.findall("gpu"):
        mig = (gpu.findtext("mig_mode/current_mig") or "").strip().lower()
        devices.append(
            {
                "name": (gpu.findtext("product_name") or "").strip(),
                "uuid": (gpu.findtext("uuid") or "").strip(),
                "memory_total": _smi_bytes(gpu.findtext("fb_memory_usage/total")),
                "compute_capability": None,
                "mig_mode": [1, 1] if mig == "enabled" else [0, 0] if mig == "disabled" else None,
                "pci_bus_id": gpu.findtext("pci/pci_bus_id") or gpu.get("id"),
            }
        )
    return {
        "driver_version": (root.findtext("driver_version") or "").strip() or None,
        "nvml_version": None,
        "cuda_driver_version": cuda_int(root.findtext("cuda_version")),
        "device_count": len(devices),
        "devices": devices,
        "source": "nvidia-smi",
    }


def collect() -> GpuInfo:
    return parse(query())
