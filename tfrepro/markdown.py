"""Markdown that MLflow's UI shows as plain text, whatever a record holds. Pure, standard library.

Run records are written by anyone with access to the tracking server: every recorded value is
untrusted. Two renderers read what tfrepro writes, and each value must stay text in both:

    the run description (mlflow.note.content)   showdown 1.9, "github" flavour, then
                                                 sanitize-html (MLflow 2.17 and 3.x alike)
    .md artifacts (MLflow 3.x artifact viewer)   react-markdown (CommonMark + GFM tables)

    text(value)            inline text: every character that either renderer reads as syntax is
                           escaped; controls and newlines show as "\\n", "\\x1b" (termsafe)
    code(value)            a code span no value can end early
    link(label, url)       a link, only to an http(s) URL built by tfrepro (ui.py)
    table(headers, rows)   a GFM table of cells already made by text/code/link

Why each escape: a backslash escapes only showdown's set (\\ ` * _ { } [ ] ( ) # + - . ! ~ =);
elsewhere a backslash would show. What it cannot escape is written as a character reference,
which both renderers show as that character and never read as syntax: & < > (HTML, so no
element and no comment ever passes), | (a table cell), @ (showdown's @mention links) and :
(emoji shortcodes). GFM in react-markdown links bare URLs and e-mail addresses found in the
text after escapes are decoded, so a word that looks like one is written as a code span.

Checked against the real renderers: tests/unit/test_markdown.py renders crafted values with the
JavaScript of the installed MLflow's UI (tests/mlflow_ui.py).
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

from tfrepro.termsafe import safe

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "&#124;", "@": "&#64;", ":": "&#58;"}
_BACKSLASHED = "\\`*_{}[]()#+-.!~="
_ESCAPE = dict(_ENTITIES, **{c: "\\" + c for c in _BACKSLASHED})
_UNESCAPE = re.compile(r"(`+) ?(.+?) ?\1(?!`)|\\([\\`*_{}\[\]()#+\-.!~=])|&(?:amp|lt|gt|#124|#64|#58);")
# What GFM (react-markdown) links in plain text: www., a scheme, an e-mail address
_AUTOLINK = re.compile(r"(?i)www\.|[a-z][a-z0-9+.-]*:/|mailto:|xmpp:|[a-z0-9._+-]@[a-z0-9_-]+\.")
_UNENTITY = {v: k for k, v in _ENTITIES.items()}
# What a link built here may point to: an http(s) URL without spaces, quotes, brackets or
# parentheses, so that it cannot end the link early (ui.py percent-encodes what it puts in).
_URL = re.compile(r"^https?://[A-Za-z0-9\-._~:/?#@!$&'*+,;=%]+$")


def _plain(value) -> str:
    """The value as one line of text: None is "", controls and line breaks escaped visibly."""
    return safe("" if value is None else str(value))


def _escape(plain: str) -> str:
    return "".join(_ESCAPE.get(c, c) for c in plain)


def text(value) -> str:
    """Inline markdown that renders as exactly `value` (controls shown as escapes), as text.

    A word that looks like a URL or an e-mail address becomes a code span: react-markdown's GFM
    turns such words into links after decoding the escapes (showdown does not, the escaped dots
    stop it). The result may start with a code span: never put it right after a backslash.
    """
    words = re.split(r"(\s+)", _plain(value))
    return "".join(_url_like(w) if _AUTOLINK.search(w) else _escape(w) for w in words)


def _url_like(word: str) -> str:
    # a | splits GFM table cells even inside code spans: it stays outside, as a reference
    return _ENTITIES["|"].join(code(part) for part in word.split("|"))


def unescape(markdown: str) -> str:
    """The text that text() escaped (its inverse for a value without control characters)."""

    def one(match) -> str:
        if match.group(2) is not None:
            return match.group(2)
        if match.group(3) is not None:
            return match.group(3)
        return _UNENTITY[match.group(0)]

    return _UNESCAPE.sub(one, markdown)


def code(value) -> str:
    """A code span that shows `value` literally: fenced with more backticks than any run inside.

    Never put one right after a backslash (showdown then reads no span): callers separate it
    from what precedes with a space or a label. In a table cell use cell_code().
    """
    plain = _plain(value)
    if not plain.strip():
        return text(plain)
    longest = max((len(run) for run in re.findall(r"`+", plain)), default=0)
    fence = "`" * (longest + 1)
    # a space on each side when the value starts or ends with a backtick (or a space, which both
    # renderers would strip from one side only); both renderers strip one space each side
    pad = " " if plain[0] in "` " or plain[-1] in "` " else ""
    return fence + pad + plain + pad + fence


def cell_code(value) -> str:
    """code() for a table cell: GFM splits a row at a | even inside a code span, so a value
    holding one is given as escaped text instead."""
    return text(value) if "|" in _plain(value) else code(value)


def is_safe_url(url: Optional[str]) -> bool:
    return url is not None and bool(_URL.match(url))


def link(label, url: Optional[str]) -> str:
    """[label](url) for an http(s) URL tfrepro built, else the label as text. The label is
    untrusted text: escaped, so it cannot close the link or open another."""
    shown = text(label)
    if not is_safe_url(url):
        return shown
    return "[%s](%s)" % (shown or text(url), url)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GFM table. `headers` are plain words (escaped here); `rows` hold cells already made by
    text(), cell_code() or link(), which escape every | and line break."""
    width = len(headers)
    lines = ["| " + " | ".join(text(h) for h in headers) + " |", "|" + "---|" * width]
    for row in rows:
        cells = list(row)[:width] + [""] * (width - len(row))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bold(label: str) -> str:
    """**label** for a label tfrepro wrote (escaped all the same)."""
    return "**%s**" % text(label)


def shorten(value: str, limit: int) -> str:
    """Plain text cut to `limit` characters, ending in an ellipsis when cut (escape it after)."""
    value = _plain(value)
    return value if len(value) <= limit else value[: max(limit - 1, 0)] + "\u2026"
