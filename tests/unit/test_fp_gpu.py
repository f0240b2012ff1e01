"""GPU source: parse() on the recorded H200 probe and nvidia-smi XML; query() with no driver."""

import json
import sys
import types
from pathlib import Path

import pytest

from tfrepro.fingerprint import gpu

H200 = Path(__file__).resolve().parents[1] / "fixtures" / "gpu" / "h200-driver580"
PROBE = json.loads((H200 / "probe.json").read_text())
UUID = "GPU-00000000-1111-2222-3333-444444444444"


def test_parse_recorded_nvml_probe():
    info = gpu.parse(dict(PROBE["pynvml"], env={"NVIDIA_VISIBLE_DEVICES": "0"}))
    assert info.count == 1 and info.reason is None
    assert info.driver_version == "580.159.04"
    assert info.cuda_driver_version == 13000 and info.cuda_driver == "13.0"
    assert info.nvml_version == "13.580.159.04"
    assert info.nvidia_visible_devices == "0" and info.cuda_visible_devices is None
    (device,) = info.devices
    assert (device.index, device.name, device.uuid) == (0, "NVIDIA H200", UUID)
    assert device.memory_total_bytes == 150754820096
    assert device.compute_capability == "9.0"
    assert device.mig_mode == "disabled"
    assert device.pci_bus_id == "00000000:00:06.0"


def test_parse_agrees_with_nvidia_smi_on_the_same_machine():
    # nvidia-smi --query-gpu, recorded on the same box: name, uuid, driver, bus id, MiB, cc, MIG
    row = PROBE["nvidia_smi_query"]["stdout"].splitlines()[1].split(", ")
    (device,) = gpu.parse(PROBE["pynvml"]).devices
    assert [device.name, device.uuid, device.pci_bus_id, device.compute_capability] == [row[1], row[2], row[4], row[6]]
    assert device.memory_total_bytes // (1 << 20) == int(row[5].split()[0])


def test_tfrepro_env_on_a_real_h200_matches_its_nvidia_smi():
    # read on a lent H200 (tests/fixtures/gpu/README.md): tfrepro env --json vs nvidia-smi -q -x
    device_run = H200.parent / "h200-device-20261130"
    recorded = json.loads((device_run / "tfrepro-env.json").read_text())["gpu"]
    smi = gpu.parse(gpu.parse_smi_xml((device_run / "nvidia-smi-q.xml").read_text())).to_dict()
    for key in ("count", "driver_version", "cuda_driver_version"):
        assert recorded[key] == smi[key], key
    for ours, theirs in zip(recorded["devices"], smi["devices"]):
        for key in ("index", "name", "uuid", "memory_total_bytes", "mig_mode", "pci_bus_id"):
            assert ours[key] == theirs[key], key
    assert recorded["devices"][0]["compute_capability"] == "9.0"  # NVML only: not in the XML


def test_mig_enabled_and_unsupported():
    raw = {"devices": [{"name": "A100", "mig_mode": [1, 1]}, {"name": "T4", "mig_mode": None}]}
    assert [d.mig_mode for d in gpu.parse(raw).devices] == ["enabled", None]


def test_parse_nvidia_smi_xml_gives_the_same_record():
    raw = gpu.parse_smi_xml((H200 / "nvidia-smi-q.xml").read_text())
    info = gpu.parse(raw)
    (device,) = info.devices
    assert (info.driver_version, info.cuda_driver_version) == ("580.159.04", 13000)
    assert (device.name, device.uuid, device.pci_bus_id, device.mig_mode) == (
        "NVIDIA H200",
        UUID,
        "00000000:00:06.0",
        "disabled",
    )
    assert device.memory_total_bytes == 143771 * (1 << 20)  # nvidia-smi rounds to MiB
    assert device.compute_capability is None  # the XML does not carry it


class ReplayNvml(types.ModuleType):
    """pynvml replaying probe.json, call by call; old bindings returned bytes."""

    class NVMLError(Exception):
        pass

    def __init__(self, probe, as_bytes=False, mig_supported=True):
        super().__init__("pynvml")
        self.p, self.b, self.mig = probe, as_bytes, mig_supported
        self.calls = []

    def _s(self, value):
        return value.encode() if self.b else value

    def nvmlInit(self):
        self.calls.append("init")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlSystemGetDriverVersion(self):
        return self._s(self.p["driver_version"])

    def nvmlSystemGetNVMLVersion(self):
        return self._s(self.p["nvml_version"])

    def nvmlSystemGetCudaDriverVersion(self):
        return self.p["cuda_driver_version"]

    def nvmlDeviceGetCount(self):
        return self.p["device_count"]

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.p["devices"][i]

    def nvmlDeviceGetName(self, h):
        return self._s(h["name"])

    def nvmlDeviceGetUUID(self, h):
        return self._s(h["uuid"])

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(total=h["memory_total"])

    def nvmlDeviceGetPciInfo(self, h):
        return types.SimpleNamespace(busId=self._s(h["pci_bus_id"]))

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return tuple(h["compute_capability"])

    def nvmlDeviceGetMigMode(self, h):
        if not self.mig:
            raise self.NVMLError("Not Supported")
        return tuple(h["mig_mode"])


@pytest.mark.parametrize("as_bytes", [False, True])
def test_query_replaying_the_probe(monkeypatch, as_bytes):
    fake = ReplayNvml(PROBE["pynvml"], as_bytes=as_bytes, mig_supported=not as_bytes)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    info = gpu.collect()
    assert info.driver_version == "580.159.04" and info.devices[0].uuid == UUID
    assert info.devices[0].mig_mode == (None if as_bytes else "disabled")
    assert info.cuda_visible_devices == "0"
    assert fake.calls == ["init", "shutdown"]


def test_this_machine_never_raises():
    info = gpu.collect()  # real pynvml: a reason where there is no driver, devices where there is
    if info.count == 0:
        assert info.devices == () and info.reason
    else:
        assert info.driver_version and info.devices[0].uuid.startswith(("GPU-", "MIG-"))


def test_pynvml_missing_and_no_nvidia_smi(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    monkeypatch.setenv("PATH", "/nonexistent")
    info = gpu.collect()
    assert info.count == 0 and "pynvml not installed and no nvidia-smi" in info.reason


def test_pynvml_missing_falls_back_to_nvidia_smi(monkeypatch, tmp_path):
    smi = tmp_path / "nvidia-smi"  # stands in for the binary: prints the recorded XML
    smi.write_text("#!/bin/sh\nexec /bin/cat '%s'\n" % (H200 / "nvidia-smi-q.xml"))
    smi.chmod(0o755)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setenv("PATH", str(tmp_path))
    info = gpu.collect()
    assert info.count == 1 and info.devices[0].name == "NVIDIA H200"


def test_an_nvml_error_after_init_is_not_called_a_missing_driver(monkeypatch):
    fake = ReplayNvml(PROBE["pynvml"])

    def lost(handle):
        raise fake.NVMLError("GPU is lost")

    fake.nvmlDeviceGetUUID = lost
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    info = gpu.collect()
    assert info.count == 0 and info.reason == "NVML failed: NVMLError: GPU is lost"
    assert fake.calls == ["init", "shutdown"]
