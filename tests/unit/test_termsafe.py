"""safe(): what a record may not do to a terminal."""

import pytest

from tfrepro.termsafe import safe

pytestmark = pytest.mark.py38


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("plain text /workspace", "plain text /workspace"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("\x1b[2K\x1b[1Afake", "\\x1b[2K\\x1b[1Afake"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # OSC ... BEL
        ("\x9b31m\x9d8;;http://x\x9c", "\\x9b31m\\x9d8;;http://x\\x9c"),  # C1 CSI / OSC / ST
        ("\x00\x7f", "\\x00\\x7f"),
        ("evil\u202etxt.exe\u2066\u2069\u200e\u200f\u061c", "evil\\u202etxt.exe\\u2066\\u2069\\u200e\\u200f\\u061c"),
        ("line\u2028sep", "line\\u2028sep"),
        ("ünïcödé ✓ 漢字", "ünïcödé ✓ 漢字"),
    ],
)
def test_safe(raw, shown):
    assert safe(raw) == shown


def test_no_control_character_survives():
    every = "".join(chr(c) for c in range(0x0, 0x3000))
    out = safe(every)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in out)
    assert not any(c in out for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def test_non_strings():
    assert safe(None) == "" and safe(3) == "3" and safe(["a\n"]) == repr(["a\n"])
