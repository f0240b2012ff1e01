"""Version text: tfrepro's own version, package versions and CUDA's two spellings (text "11.7"
and NVML's 11070).

Pure. Python 3.8 compatible: the GPU fingerprint uses it inside the containers.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple, Union

# The one place the version is written: pyproject.toml reads it (statically), the package root
# re-exports it, and each environment record carries it.
__version__ = "0.1.0"


def version_tuple(text: Optional[str]) -> Tuple[int, ...]:
    """ "1.23.5" -> (1, 23, 5); "3.19.6rc1" -> (3, 19, 6); unparsable -> ()."""
    parts = []
    for piece in (text or "").split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def cuda_tuple(value: Union[int, str, None]) -> Optional[Tuple[int, int]]:
    """(major, minor) of a CUDA version: "11.7", "11.7.0.022" (NGC's CUDA_VERSION) and
    NVML's integer 11070 (or "11070") all give (11, 7); nothing or garbage gives None."""
    if not value:
        return None
    text = str(value).strip()
    if text.isdigit() and len(text) >= 4:  # NVML: 1000 * major + 10 * minor
        number = int(text)
        return number // 1000, (number % 1000) // 10
    parts = version_tuple(text)
    if not parts:
        return None
    return parts[0], parts[1] if len(parts) > 1 else 0


def cuda_int(value: Union[int, str, None]) -> Optional[int]:
    """NVML's integer form: "11.2" -> 11020, "13.0" -> 13000."""
    found = cuda_tuple(value)
    return found[0] * 1000 + found[1] * 10 if found else None


def cuda_text(value: Union[int, str, None]) -> Optional[str]:
    """The text form: 13000 -> "13.0", 11070 -> "11.7", "11.7.0.022" -> "11.7"."""
    found = cuda_tuple(value)
    return "%d.%d" % found if found else None
