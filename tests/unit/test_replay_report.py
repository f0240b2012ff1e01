"""replay/report.py: the replay's card, the original's table of replays, the --repeat summary and
tfrepro/replay.md."""

import html
import re

import pytest

from tests.helpers.inspect_envs import make_env
from tests.helpers.mlflow_ui import BRANCH, COMMAND, COMMIT_MESSAGE, GPU, artifact_renderer, parse, renderer
from tfrepro import markdown as md
from tfrepro import schema
from tfrepro.inspect import compare as C
from tfrepro.inspect.explain import FIX_DETERMINISM, Factor
from tfrepro.replay import noise, replays_table, report, verify
from tfrepro.tracking import card, ui

ORIGINAL = "0123456789abcdef0123456789abcdef"
REPLAY = "fedcba9876543210fedcba9876543210"
SERVER = "http://127.0.0.1:5000"
ORIGINAL_URL = ui.run_url(SERVER, "1", ORIGINAL)
REPLAY_URL = ui.run_url(SERVER, "1", REPLAY)
COMPARE_URL = ui.compare_url(SERVER, [ORIGINAL, REPLAY], ["1"])
CAUSES = (
    Factor("seed", "the original set no seed (no tfrepro.seed)", FIX_DETERMINISM),
    Factor("gpu_model", "GPU model differs: " + GPU, "replay on " + COMMIT_MESSAGE),
)
DIVERGED = verify.Verdict(verify.DIVERGED, "loss step 3: 0.5 (original) != 0.51 (replay)", 4, 0.01, CAUSES)
IDENTICAL = verify.Verdict(verify.IDENTICAL, "8 metric values and the model hash match bit for bit", 8)


def links(markdown):
    """The link targets, outside code spans."""
    return re.findall(r"\]\((https?://[^)]*)\)", re.sub(r"(`+).+?\1", "", markdown))


def test_verdict_words():
    assert report.verdict_words("identical") == "identical: reproduced bit for bit"
    assert report.verdict_words("diverged") == "diverged: did not reproduce"
    assert report.verdict_words("odd") == "odd"


def test_replay_card_of_a_diverged_replay_lists_causes_and_fixes():
    text = report.replay_card(ORIGINAL, DIVERGED, ORIGINAL_URL, COMPARE_URL, original_name="baseline")
    assert text.startswith(card.open_marker(schema.REPLAY_BLOCK))
    assert links(text) == [ORIGINAL_URL, COMPARE_URL]
    shown = md.unescape(text)
    assert "**Replay of** [baseline (%s)]" % ORIGINAL in shown
    assert "**diverged: did not reproduce**" in shown and "loss step 3" in shown
    assert "1. the original set no seed (no tfrepro.seed) **Fix**: " + FIX_DETERMINISM in shown
    assert "\n2. GPU model differs" in shown
    assert "\n|" not in text and "<" not in card.find_block(text, schema.REPLAY_BLOCK)


def test_replay_card_of_an_identical_replay_has_no_causes_and_works_without_links():
    text = report.replay_card(ORIGINAL, IDENTICAL)
    shown = md.unescape(text)
    assert "reproduced bit for bit" in shown and "Why" not in shown
    assert links(text) == [] and ORIGINAL in shown and schema.REPLAY_MD in shown


def test_replay_card_within_tolerance_says_what_differs():
    verdict = verify.Verdict(verify.WITHIN_TOLERANCE, "max difference 1e-07 <= tolerance 1e-06", 8, 1e-7, CAUSES[:1])
    shown = md.unescape(report.replay_card(ORIGINAL, verdict))
    assert "\u2705 **within tolerance: reproduced within tolerance**" in shown
    assert "1. the original set no seed" in shown


def test_replay_card_is_cut_to_its_limit():
    many = tuple(Factor("other", "x" * 300, "y" * 300) for _ in range(30))
    verdict = verify.Verdict(verify.DIVERGED, "d", 1, 0.0, many)
    text = report.replay_card(ORIGINAL, verdict, ORIGINAL_URL, COMPARE_URL, limit=2000)
    assert len(text) < 2100 and "cut" in text


def spreads():
    return (
        noise.spread("loss", 0.5, [0.49, 0.5, 0.51]),
        noise.spread("accuracy", 0.9, [0.5, 0.51, 0.49]),
    )


def test_repeat_card_shows_each_interval():
    verdict = noise.RepeatVerdict(verify.DIVERGED, "accuracy outside", 3, spreads(), CAUSES)
    compare = ui.compare_url(SERVER, [ORIGINAL, "a" * 32, "b" * 32, "c" * 32], ["1"])
    text = report.replay_card(ORIGINAL, verdict, ORIGINAL_URL, compare)
    shown = md.unescape(text)
    assert "**3 replays of**" in shown and links(text) == [ORIGINAL_URL, compare]
    assert "| metric | original | mean | sd | 99% interval | z | original is |" in shown
    assert re.search(r"\| loss \| 0\.5 \| 0\.5 \| 0\.01 \| \[[0-9.]+, [0-9.]+\] \| \+0\.00 \| inside \|", shown)
    assert "| accuracy | 0.9 |" in shown and "| outside |" in shown
    assert "1. the original set no seed" in shown


def test_replays_table_add_replace_and_read_back():
    first = replays_table.ReplayRow(REPLAY, replays_table.format_date(1765079760000), "docker", "identical", REPLAY_URL)
    text = replays_table.add_replay("Notes by the team.", ORIGINAL, first)
    assert text.startswith("Notes by the team.\n\n" + card.open_marker(schema.REPLAYS_BLOCK))
    with_card = card.merge("intro", card.block(schema.CARD_BLOCK, "- env")) + "outro"
    placed = replays_table.add_replay(with_card, ORIGINAL, first)
    assert placed.index("- env") < placed.index("| replay |") < placed.index("outro")
    assert replays_table.replay_rows(text) == [first]
    assert "| replay | date | engine | verdict |" in text
    assert md.code("tags.`tfrepro.replay_of` = '%s'" % ORIGINAL) in text
    second = replays_table.ReplayRow("a" * 32, "2026-12-08 10:00 UTC", "slurm", "within noise (5 replays)", None)
    text = replays_table.add_replay(text, ORIGINAL, second)
    assert replays_table.replay_rows(text) == [second, first]  # newest first
    updated = replays_table.ReplayRow(REPLAY, first.date, "docker", "diverged", REPLAY_URL)
    text = replays_table.add_replay(text, ORIGINAL, updated)
    assert replays_table.replay_rows(text) == [updated, second]
    assert replays_table.add_replay(text, ORIGINAL, updated) == text  # idempotent
    assert text.count(card.open_marker(schema.REPLAYS_BLOCK)) == 1


def test_replays_table_keeps_the_newest_and_fits_the_tag():
    text = ""
    for i in range(30):
        text = replays_table.add_replay(
            text, ORIGINAL, replays_table.ReplayRow("%032x" % i, "d", "docker", "identical")
        )
    rows = replays_table.replay_rows(text)
    assert len(rows) == replays_table.MAX_ROWS and rows[0].run_id == "%032x" % 29
    long_notes = "n" * 4000
    text = long_notes
    for i in range(30):
        row = replays_table.ReplayRow(
            "%032x" % i, "2026-12-07 03:56 UTC", "kubernetes", "identical", ui.run_url(SERVER, "1", "%032x" % i)
        )
        text = replays_table.add_replay(text, ORIGINAL, row)
    assert text.startswith(long_notes) and len(text) <= schema.MAX_TAG_VALUE
    assert 1 <= len(replays_table.replay_rows(text)) < replays_table.MAX_ROWS


def test_replays_table_parse_is_defensive():
    body = "\n".join(
        [
            "| replay | date | engine | verdict |",
            "|---|---|---|---|",
            "| [%s](javascript:alert(1)) | d | e | v |" % ORIGINAL,
            "| [x](http://h) | d | e | v |",
            "| not a run id! | d | e | v |",
            "| %s | d | e |" % REPLAY,
            "| %s | %s | e | v |" % (REPLAY, md.text(BRANCH)),
        ]
    )
    rows = replays_table.replay_rows(card.block(schema.REPLAYS_BLOCK, body))
    assert [(r.run_id, r.url, r.date) for r in rows] == [(REPLAY, None, BRANCH)]
    rendered = replays_table.replays_block(ORIGINAL, rows)
    assert "](javascript" not in rendered and md.text(BRANCH) in rendered
    assert replays_table.replay_rows(None) == [] and replays_table.replay_rows("no block") == []


def test_format_date():
    assert replays_table.format_date(1765079760000) == "2025-12-07 03:56 UTC"
    assert replays_table.format_date(None) == ""


def test_replay_markdown_has_verdict_metrics_and_only_what_differs():
    original_env, replay_env = make_env(), make_env(hostname="gpu-node-2", cuda_build="11.8")
    diffs = C.compare(original_env, replay_env, include_equal=True) + [
        C.Difference("metrics", "loss", "0.5", "0.51", C.RESULT),
        C.Difference("process", "command", COMMAND, COMMAND + " x", C.MEDIUM),
    ]
    text = report.replay_markdown(
        ORIGINAL,
        REPLAY,
        DIVERGED,
        {"loss": 0.5, "accuracy": 0.9, "epoch_time": 3.0},
        {"loss": 0.51, "accuracy": 0.9, "epoch_time": 4.0, "extra": 1.0},
        diffs,
        ORIGINAL_URL,
        COMPARE_URL,
    )
    shown = md.unescape(text)
    assert shown.startswith("# Replay %s\n" % REPLAY)
    assert "**Verdict**: diverged: loss step 3" in shown
    assert "| loss | 0.5 | 0.51 | 0.01 | no |" in shown
    assert "| accuracy | 0.9 | 0.9 | 0 | yes |" in shown
    assert "| epoch_time | 3.0 | 4.0 | 1 | not judged (wall-clock or host metric) |" in shown
    assert "| extra |  | 1.0 |  | only in the replay |" in shown
    assert "| tensorflow | cuda_build | 11.7 | 11.8 | high |" in shown
    assert "hostname" in shown and "| image | digest |" not in shown  # only fields that differ
    assert "| metrics | loss" not in shown
    assert "## Why, most likely first" in shown
    assert "<" not in re.sub(r"(`+).+?\1", "", text)  # the crafted command shows only as code
    assert links(text) == [ORIGINAL_URL, COMPARE_URL]


def test_replay_markdown_of_a_repeat_and_of_no_difference():
    verdict = noise.RepeatVerdict(noise.WITHIN_NOISE, "inside", 3, spreads())
    text = md.unescape(report.replay_markdown(ORIGINAL, "s" * 32, verdict, {"loss": 0.5}, {"loss": 0.5}))
    assert "## Final metrics against the replays' spread" in text
    assert "None: every recorded field is the same." in text and "Why" not in text


@pytest.fixture(scope="module")
def render():
    found = renderer()
    if found is None:
        pytest.skip("needs node and the installed mlflow's UI bundle")
    return found


def test_cards_render_in_mlflows_description(render):
    replay_description = card.merge(
        card.environment_card(make_env(), REPLAY), report.replay_card(ORIGINAL, DIVERGED, ORIGINAL_URL, COMPARE_URL)
    )
    row = replays_table.ReplayRow(REPLAY, "2026-12-07 03:56 UTC", BRANCH, "diverged", REPLAY_URL)
    original_description = replays_table.add_replay("team notes", ORIGINAL, row)
    out = render(replay_description + "\n\n---\n\n" + original_description)
    parsed = parse(out)
    assert [a["href"] for t, a in parsed.tags if t == "a"] == [ORIGINAL_URL, COMPARE_URL, REPLAY_URL]
    assert not {"img", "script"} & {t for t, _ in parsed.tags}
    text = html.unescape("".join(parsed.text))
    assert "the original set no seed" in text and BRANCH in text and "team notes" in text
    rows = out.split("<tr>")[1:]
    assert len(rows) == 2 and all(r.count("<td>") + r.count("<th>") == 4 for r in rows)


def test_replay_md_renders_in_mlflow_3s_artifact_viewer():
    render = artifact_renderer()
    diffs = [C.Difference("process", "command", COMMAND, COMMIT_MESSAGE, C.MEDIUM)]
    document = report.replay_markdown(
        ORIGINAL, REPLAY, DIVERGED, {"a|b": 1.0}, {"a|b": 2.0}, diffs, ORIGINAL_URL, COMPARE_URL
    )
    out = render(document) if render else None
    if out is None:
        pytest.skip("needs node and MLflow 3's UI bundle (MLflow 2 has no markdown viewer)")
    parsed = parse(out)
    assert [a["href"] for t, a in parsed.tags if t == "a"] == [ORIGINAL_URL, COMPARE_URL]
    assert "img" not in [t for t, _ in parsed.tags]
    text = html.unescape("".join(parsed.text))
    assert COMMAND in text and COMMIT_MESSAGE in text and "the original set no seed" in text
    for table in out.split("<table>")[1:]:
        head = table.split("</thead>")[0].count("<th>")
        assert all(row.count("<td>") == head for row in table.split("<tbody>")[-1].split("<tr>")[1:])
