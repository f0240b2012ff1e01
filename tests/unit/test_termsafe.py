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


def test_shell_join_keeps_a_recorded_newline_on_one_line():
    from tfrepro.termsafe import shell_join

    argv = ["python", "train.py", "x\n  FAKE LINE C: tfrepro: all checks passed", "it's", "\x1b[2J", "a\u202eb"]
    line = shell_join(argv)
    assert "\n" not in line and "\x1b" not in line and "\u202e" not in line
    assert line == (
        "python train.py $'x\\n  FAKE LINE C: tfrepro: all checks passed' 'it'\"'\"'s' $'\\x1b[2J' $'a\\u202eb'"
    )


def test_shell_join_means_the_same_words_to_bash(tmp_path):
    import subprocess

    from tfrepro.termsafe import shell_join

    argv = ["a\nb", "tab\there", "quote'\\", "plain words", "\x7f\x01", "bidi\u2066x"]
    script = "for w in %s; do printf '%%s\\0' \"$w\"; done" % shell_join(argv)
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True).stdout
    assert out.decode("utf-8").split("\0")[:-1] == argv
