"""versions.py: CUDA's text and NVML integer forms, package version tuples."""

import pytest

from tfrepro.versions import cuda_int, cuda_text, cuda_tuple, version_tuple


@pytest.mark.parametrize(
    "value,expected",
    [
        ("11.7.0.022", (11, 7)),
        ("13000", (13, 0)),
        (11070, (11, 7)),
        ("11.2", (11, 2)),
        ("12", (12, 0)),
        ("garbage", None),
        (None, None),
        ("", None),
        (0, None),
    ],
)
def test_cuda_tuple(value, expected):
    assert cuda_tuple(value) == expected


def test_cuda_int_and_text_round_trip():
    assert cuda_int("11.2") == 11020 and cuda_int("13.0") == 13000 and cuda_int("Not Found") is None
    assert cuda_text(cuda_int("12.2")) == "12.2" and cuda_text(11070) == "11.7"


def test_version_tuple():
    assert version_tuple("1.23.5") == (1, 23, 5) and version_tuple("3.19.6rc1") == (3, 19, 6)
    assert version_tuple(None) == () and version_tuple("x") == ()
