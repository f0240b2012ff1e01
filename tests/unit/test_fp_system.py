"""System source: os-release, cpuinfo and meminfo parsers on recorded files."""

import json
from pathlib import Path

from tfrepro.fingerprint import system

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
S = FIXTURES / "system"
PROBE = json.loads((FIXTURES / "gpu" / "h200-driver580" / "probe.json").read_text())


def test_os_release():
    assert system.parse_os_release(PROBE["os_release"]["stdout"])["PRETTY_NAME"] == "Ubuntu 24.04.3 LTS"
    fields = system.parse_os_release((S / "os-release-debian.txt").read_text())
    assert fields["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)" and fields["VERSION_ID"] == "12"
    assert system.parse_os_release("# comment\nNAME='Alpine Linux'\nBROKEN=\"x\n") == {
        "NAME": "Alpine Linux",
        "BROKEN": '"x',
    }


def test_cpuinfo():
    assert system.parse_cpuinfo((S / "cpuinfo-x86.txt").read_text()) == "AMD EPYC"
    assert system.parse_cpuinfo((S / "cpuinfo-aarch64.txt").read_text()) == "CPU implementer 0x41, part 0xd4f"
    assert system.parse_cpuinfo("") is None


def test_meminfo():
    assert system.parse_meminfo((S / "meminfo.txt").read_text()) == 24684092 * 1024
    assert system.parse_meminfo("MemFree: 1 kB\n") is None


def test_parse_from_a_recorded_root(tmp_path, monkeypatch):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text(PROBE["os_release"]["stdout"])
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text((S / "cpuinfo-x86.txt").read_text())
    monkeypatch.setattr(system, "ROOT", str(tmp_path))
    info = system.collect()
    assert info.os == "Ubuntu 24.04.3 LTS" and info.cpu_model == "AMD EPYC"
    assert info.memory_bytes is None  # no meminfo in this root: unknown, not an error
    assert info.hostname and info.kernel and info.machine and info.cpu_count >= 1
