"""drift.py: recorded GPU environment vs this host (recorded H200 outputs, no GPU needed)."""

from tfrepro.environment import ContainerInfo, Environment, GpuDevice, GpuInfo
from tfrepro.replay import drift as D

H200 = GpuInfo(
    count=1, driver_version="580.159.04", cuda_driver_version=13000, devices=(GpuDevice(index=0, name="NVIDIA H200"),)
)
RECORDED = Environment(gpu=H200, container=ContainerInfo(ngc={"CUDA_VERSION": "11.7.0.022"}))


def by_name(items):
    return {i.name: i for i in items}


def test_no_gpu_host_shows_every_difference():
    items = by_name(D.compare(RECORDED, None, None))
    assert items["gpu model"].recorded == "NVIDIA H200" and items["gpu model"].host == "none"
    assert items["gpu count"].differs and items["driver"].recorded == "580.159.04"
    assert not items["image cuda"].blocking and "not needed" in items["image cuda"].host


def test_old_driver_blocks_a_newer_major_cuda():
    old = GpuInfo(
        count=1, driver_version="450.80.02", cuda_driver_version=11000, devices=(GpuDevice(name="NVIDIA H200"),)
    )
    recorded = Environment(gpu=H200, container=ContainerInfo(ngc={"CUDA_VERSION": "12.2.0"}))
    item = by_name(D.compare(recorded, old, "all"))["image cuda"]
    assert item.blocking and "11.0" in item.host
    # same major: minor-version compatibility, shown but not blocking
    item = by_name(D.compare(RECORDED, old, "all"))["image cuda"]
    assert item.differs and not item.blocking


def test_same_host_has_no_drift():
    items = D.compare(RECORDED, H200, "all")
    assert not any(i.differs for i in items)
    assert "recorded" in D.render(items)


def test_tags_only_record():
    tags = {
        "tfrepro.gpu.count": "2",
        "tfrepro.gpu.name": "NVIDIA A100",
        "tfrepro.gpu.driver": "515.65.01",
        "tfrepro.cuda.build": "11.2",
    }
    items = by_name(D.compare(Environment.from_tags(tags), None, None))
    assert items["gpu count"].recorded == "2" and items["image cuda"].recorded == "11.2"
    assert items["gpu model"].recorded == "NVIDIA A100" and items["driver"].recorded == "515.65.01"
