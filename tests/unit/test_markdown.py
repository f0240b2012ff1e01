"""tfrepro.markdown: untrusted strings stay text in MLflow's markdown, whatever they hold."""

import html
import re

import pytest

from tests.helpers.mlflow_ui import (
    ALL_SPECIALS,
    BRANCH,
    COMMAND,
    COMMIT_MESSAGE,
    GPU,
    artifact_renderer,
    parse,
    renderer,
)
from tfrepro import markdown as md


@pytest.mark.parametrize("value", [BRANCH, COMMAND, COMMIT_MESSAGE, ALL_SPECIALS, "# heading", "1. item", "> quote"])
def test_text_escapes_every_syntax_character(value):
    out = md.text(value)
    assert md.unescape(out) == value
    out = re.sub(r"(`+).+?\1", "", out)  # words that look like URLs are code spans: literal
    for raw in "<>|@:[]()`*_#":
        # each is escaped: by a backslash, or written as a character reference
        assert all(out[i - 1] == "\\" for i, c in enumerate(out) if c == raw and raw not in "#"), (raw, out)
    assert "<" not in out and ">" not in out and "|" not in out and "\n" not in out


def test_words_gfm_would_link_are_code_spans():
    assert md.text("see https://h.example/x and www.h.example") == "see `https://h.example/x` and `www.h.example`"
    assert md.text("mail bob@h.example") == "mail `bob@h.example`"
    assert md.text("https://a|b") == "`https://a`&#124;`b`"  # no | inside a code span (GFM tables)
    assert md.unescape(md.text("https://a|b c")) == "https://a|b c"
    assert md.text("sha256:ab12 x.y") == "sha256&#58;ab12 x\\.y"


def test_text_shows_newlines_and_controls_as_escapes():
    assert md.unescape(md.text("a\nb\r\x1b[31mc\u202e")) == "a\\nb\\r\\x1b[31mc\\u202e"
    assert "\n" not in md.text(GPU)
    assert md.text(None) == ""
    assert md.text(3) == "3"


def test_code_span_cannot_be_closed_from_inside():
    assert md.code("abc") == "`abc`"
    assert md.code("a`b") == "``a`b``"
    assert md.code("a``b`") == "``` a``b` ```"
    assert md.code("`start") == "`` `start ``"
    assert md.code("x\ny") == "`x\\ny`"
    assert md.code("") == ""


def test_cell_code_never_puts_a_pipe_in_a_code_span():
    assert md.cell_code("sha256:ab") == "`sha256:ab`"
    assert md.cell_code("a|b") == md.text("a|b")


def test_links_only_to_http_urls_and_labels_escaped():
    assert md.link("run", "http://h:5000/#/experiments/1/runs/ab") == "[run](http://h:5000/#/experiments/1/runs/ab)"
    assert md.link(BRANCH, "https://h/x") == "[%s](https://h/x)" % md.text(BRANCH)
    for bad in ("javascript:alert(1)", "https://h/x) [y](javascript:z", "https://h/a b", "ftp://h/x", "", None):
        assert md.link("label", bad) == "label"


def test_table_cells_escape_pipes_and_newlines():
    table = md.table(("a", "b"), [[md.text(GPU), md.text("x")]])
    lines = table.splitlines()
    assert len(lines) == 3
    assert all(line.count("|") == 3 for line in lines)


def test_shorten():
    assert md.shorten("abcdef", 4) == "abc\u2026"
    assert md.shorten("abc", 4) == "abc"


@pytest.fixture(scope="module")
def render():
    found = renderer()
    if found is None:
        pytest.skip("needs node and the installed mlflow's UI bundle")
    return found


def test_crafted_values_render_inert_in_mlflows_description(render):
    """Through MLflow's own showdown + sanitize-html: no element but ours, no link but ours."""
    ours = "http://127.0.0.1:5000/#/experiments/1/runs/abc"
    document = "<!-- tfrepro:card -->\n" + crafted_document(ours) + "\n<!-- /tfrepro:card -->"
    out = render(document)
    parsed = parse(out)
    tags = [t for t, _ in parsed.tags]
    assert "img" not in tags and "script" not in tags and "tfrepro:card" not in out
    assert [a.get("href") for t, a in parsed.tags if t == "a"] == [ours]
    assert "emoji" not in out and "github.com/alice" not in out
    text = html.unescape("".join(parsed.text))
    for value in (BRANCH, COMMAND, COMMIT_MESSAGE, ALL_SPECIALS):
        assert value in text
    assert text.count(GPU.replace("\n", "\\n")) == 2  # both cells, as one line each
    rows = out.split("<tr>")[1:]
    assert len(rows) == 3 and all(row.count("<td>") + row.count("<th>") == 2 for row in rows)


def crafted_document(ours):
    return "\n".join(
        [
            "- **Branch**: " + md.text(BRANCH) + " " + md.code(BRANCH),
            "- **Command**: " + md.text(COMMAND) + " " + md.code(COMMAND),
            "- **Commit**: " + md.text(COMMIT_MESSAGE),
            "- **All**: " + md.text(ALL_SPECIALS) + " " + md.code(ALL_SPECIALS),
            "- **Ours**: " + md.link(BRANCH, ours),
            "",
            md.table(("gpu", "name"), [[md.text("0"), md.text(GPU)], [md.text("1"), md.cell_code(GPU)]]),
        ]
    )


def test_crafted_values_render_inert_in_mlflow_3s_artifact_viewer():
    render = artifact_renderer()
    if render is None:
        pytest.skip("needs node and the installed mlflow's UI bundle")
    ours = "http://127.0.0.1:5000/#/experiments/1/runs/abc"
    out = render(crafted_document(ours))
    if out is None:
        pytest.skip("this MLflow has no markdown artifact viewer (MLflow 2)")
    parsed = parse(out)
    assert not {"img", "script"} & {t for t, _ in parsed.tags}
    assert [a.get("href") for t, a in parsed.tags if t == "a"] == [ours]
    text = html.unescape("".join(parsed.text))
    for value in (BRANCH, COMMAND, COMMIT_MESSAGE, ALL_SPECIALS):
        assert value in text
    rows = out.split("<tr>")[1:]
    assert len(rows) == 3 and all(row.count("<td>") + row.count("<th>") == 2 for row in rows)
