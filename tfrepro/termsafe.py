"""safe(text): a string from a record, made harmless to print on a terminal. Pure.

Run records are written by anyone with access to the tracking server. Printed raw, ESC
sequences, OSC, a carriage return or a newline can redraw what the user sees (a fake
`docker run` line above the real prompt), and bidi overrides can reorder it. Every one of
those characters is shown as a visible escape instead: "\\x1b", "\\r", "\\n", "\\u202e".
"""

from __future__ import annotations

_BIDI = [0x061C, 0x200E, 0x200F] + list(range(0x202A, 0x202F)) + list(range(0x2066, 0x206A))
_OTHER = [0x2028, 0x2029]  # line and paragraph separators: some terminals break lines on them
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _table():
    table = {}
    for code in list(range(0x00, 0x20)) + [0x7F] + list(range(0x80, 0xA0)):
        table[code] = _NAMED.get(chr(code), "\\x%02x" % code)
    for code in _BIDI + _OTHER:
        table[code] = "\\u%04x" % code
    return table


_TABLE = _table()


def safe(text) -> str:
    """text (any value; None -> "") with every control and bidi character escaped visibly."""
    if text is None:
        return ""
    return str(text).translate(_TABLE)


def safe_lines(text) -> str:
    """safe() for each line of a multi-line text that tfrepro composed from record strings."""
    return "\n".join(safe(line) for line in str(text or "").split("\n"))


def _needs_ansi_c(word: str) -> bool:
    return word != word.translate(_TABLE)


def shell_quote(word) -> str:
    """shlex.quote, except that a word holding a control or bidi character is ANSI-C quoted
    ($'a\\nb', as bash, zsh and ksh read it), so a recorded newline can never start a line."""
    import shlex

    word = str(word)
    if not _needs_ansi_c(word):
        return shlex.quote(word)
    out = []
    for char in word:
        code = ord(char)
        if char in "\\'":
            out.append("\\" + char)
        elif code in _TABLE:
            named = _NAMED.get(char)
            out.append(named if named else ("\\x%02x" % code if code < 0x100 else "\\u%04x" % code))
        else:
            out.append(char)
    return "$'" + "".join(out) + "'"


def shell_join(words) -> str:
    """shlex.join with shell_quote: one line, whatever the words hold."""
    return " ".join(shell_quote(word) for word in words)
