"""tracking/card.py: the environment card in the run description, its markers, environment.md."""

import dataclasses
import html
import re

import pytest

from tests.helpers.inspect_envs import DIGEST_A, make_env
from tests.helpers.mlflow_ui import BRANCH, COMMAND, COMMIT_MESSAGE, GPU, artifact_renderer, parse, renderer
from tfrepro import markdown as md
from tfrepro import schema
from tfrepro.environment import Environment, GpuDevice
from tfrepro.fingerprint.data_record import DataSource
from tfrepro.tracking import card, ui

RUN = "0123456789abcdef0123456789abcdef"
URL = ui.artifact_url("http://127.0.0.1:5000", "1", RUN, schema.ENVIRONMENT_MD)


def crafted_env():
    env = make_env()
    gpu = dataclasses.replace(env.gpu, devices=(GpuDevice(index=0, name=GPU, uuid="GPU-1|x"),), count=1)
    return dataclasses.replace(
        env,
        git=dataclasses.replace(env.git, branch=BRANCH, dirty=True, remote_url=COMMIT_MESSAGE),
        process=dataclasses.replace(env.process, argv=tuple(COMMAND.split(" "))),
        gpu=gpu,
    )


def test_card_holds_the_facts_a_person_copies():
    env = dataclasses.replace(make_env(), git=dataclasses.replace(make_env().git, dirty=True))
    text = card.environment_card(env, RUN, engine="docker", data="mount /data: 3 files", environment_url=URL)
    assert text.startswith(card.open_marker("card")) and text.endswith(card.close_marker("card"))
    assert md.code(DIGEST_A) in text  # the pullable reference, whole, in a code span
    assert md.code(env.git.commit) in text and md.code(schema.GIT_PATCH) in text and "dirty" in text
    shown = md.unescape(text)
    for fact in (
        "1 \u00d7 NVIDIA H200",
        "driver 580.159.04 (CUDA 13.0)",
        "TensorFlow built for CUDA 11.7, cuDNN 8",
        "2.9.1",
        "3.8.10",
        "seed 42, op determinism on",
        "mount /data: 3 files",
        "docker",
        "tfrepro replay " + RUN,
    ):
        assert fact in shown, fact
    assert "[Environment recorded by tfrepro](%s)" % URL in text
    assert len(text) < card.CARD_LIMIT


def test_card_says_what_is_missing():
    text = md.unescape(card.environment_card(Environment(), RUN))
    assert "none (no container detected)" in text
    assert "not in a git repository" in text
    assert "no seed, op determinism unknown" in text
    assert "started directly" in text and "no data fingerprinted" in text


def test_card_patch_withheld_and_image_without_digest():
    env = make_env(digest=None)
    env = dataclasses.replace(env, git=dataclasses.replace(env.git, dirty=True))
    text = md.unescape(card.environment_card(env, RUN, patch_withheld=True))
    assert "patch withheld" in text and schema.GIT_PATCH not in text
    assert "nvcr.io/nvidia/tensorflow:22.07-tf2-py3 (no digest" in text


def test_card_is_cut_gracefully_to_its_limit():
    env = make_env()
    text = card.environment_card(env, RUN, data="x|" * 5000, engine="e" * 5000, limit=1200)
    assert len(text) <= 1200
    assert "tfrepro replay " + RUN in text and md.code(DIGEST_A) in text  # kept first
    assert md.text(card.CUT_NOTE) in text


def test_crafted_record_stays_text_in_the_card():
    text = card.environment_card(crafted_env(), RUN)
    body = card.find_block(text, "card")
    assert "<" not in body and "\n|" not in body
    assert "](" not in re.sub(r"(`+).+?\1", "", body)  # outside code spans, no link syntax at all


def test_merge_keeps_user_text_and_is_idempotent():
    block = card.block("card", "- one")
    assert card.merge(None, block) == block + "\n"
    user = "My notes.\n\nMore notes."
    once = card.merge(user, block)
    assert once.startswith(user) and once.endswith(block + "\n")
    assert card.merge(once, block) == once
    edited = "Before.\n\n" + once + "\nAfter, written later."
    replaced = card.merge(edited, card.block("card", "- two"))
    assert replaced == edited.replace("- one", "- two")
    assert card.merge(replaced, card.block("card", "- two")) == replaced


def test_merge_keeps_other_blocks_and_drops_duplicates():
    one, other = card.block("card", "- a"), card.block("replays", "| x |")
    text = card.merge(card.merge("notes", one), other)
    assert card.find_block(text, "card") == "- a" and card.find_block(text, "replays") == "| x |"
    doubled = text + "\n" + one
    assert card.merge(doubled, card.block("card", "- b")).count(card.open_marker("card")) == 1


def test_merge_places_a_new_block_before_or_after_another():
    env_card = card.block("card", "- env")
    text = card.merge("user intro", env_card) + "user outro\n"
    replay = card.merge(text, card.block("replay", "- verdict"), before="card")
    assert replay.index("- verdict") < replay.index("- env") and replay.startswith("user intro")
    replays = card.merge(text, card.block("replays", "| r |"), after="card")
    assert replays.index("- env") < replays.index("| r |") < replays.index("user outro")
    assert card.merge(replays, card.block("replays", "| r |"), after="card") == replays
    assert card.merge("only notes", card.block("replays", "| r |"), after="card").startswith("only notes\n\n")


def test_merge_never_swallows_text_after_an_orphan_marker():
    damaged = "intro\n" + card.open_marker("card") + "\nuser text the user kept\n"
    merged = card.merge(damaged, card.block("card", "- new"))
    assert "user text the user kept" in merged and card.find_block(merged, "card") == "- new"


def test_merge_leaves_a_description_that_would_pass_the_limit():
    user = "u" * 4990
    assert card.merge(user, card.block("card", "- x" * 20), limit=5000) == user
    with pytest.raises(ValueError):
        card.merge("", "no markers")


def test_remove():
    text = card.merge("notes", card.block("card", "- a"))
    assert card.find_block(card.remove(text, "card"), "card") is None


def test_data_line_from_sources_and_fit_inputs():
    source = DataSource(label="mount", path="/data", target="/data", files=3, bytes=1200, hash="sha256:" + "ab" * 32)
    tags = {
        schema.INPUT_PREFIX + "training.kind": "numpy",
        schema.INPUT_PREFIX + "training.digest": "sha256:" + "cd" * 32,
        schema.INPUT_PREFIX + "training.shape": "(60000, 784)",
        "other": "x",
    }
    line = card.data_line([source], tags)
    assert line.startswith("mount /data -> /data: 3 files, 1.2 KB, sha256:abababab")
    assert "fit() training: numpy (60000, 784) sha256:cdcdcdcdcdcd" in line
    assert card.data_line() == ""


def test_environment_markdown_has_every_section_and_no_html():
    text = card.environment_markdown(make_env(), RUN)
    for heading in ("# Environment of run", "## Container", "## Code", "## GPUs", "## TensorFlow", "## Python"):
        assert heading in md.unescape(text), heading
    assert "## Packages \\(6\\)" in text and "## Process" in text and "## Host" in text
    assert "<" not in text.replace("&lt;", "")
    assert md.code("tfrepro replay " + RUN) in text
    assert "NVIDIA H200" in text and "determinism: op_determinism" in md.unescape(text)


def test_environment_markdown_of_a_crafted_record_keeps_its_tables():
    text = card.environment_markdown(crafted_env(), RUN)
    for line in text.splitlines():
        if line.startswith("| "):
            assert "\n" not in line and line.endswith(" |")
    gpu_rows = [line for line in text.splitlines() if line.startswith("| 0 |")]
    assert len(gpu_rows) == 1 and gpu_rows[0].count("|") == 8  # 7 cells


@pytest.fixture(scope="module")
def render():
    found = renderer()
    if found is None:
        pytest.skip("needs node and the installed mlflow's UI bundle")
    return found


def test_the_card_renders_in_mlflows_description(render):
    description = card.merge("My notes.", card.environment_card(crafted_env(), RUN, environment_url=URL))
    out = render(description)
    parsed = parse(out)
    assert [a.get("href") for t, a in parsed.tags if t == "a"] == [URL]
    assert not {"img", "script", "table"} & {t for t, _ in parsed.tags}
    assert "tfrepro:card" not in out  # the markers are hidden
    text = html.unescape("".join(parsed.text))
    assert BRANCH in text and DIGEST_A in text and "My notes." in text
    assert GPU.replace("\n", "\\n") in text


def test_environment_md_renders_in_mlflow_3s_artifact_viewer():
    render = artifact_renderer()
    out = render(card.environment_markdown(crafted_env(), RUN)) if render else None
    if out is None:
        pytest.skip("needs node and MLflow 3's UI bundle (MLflow 2 has no markdown viewer)")
    parsed = parse(out)
    tags = [t for t, _ in parsed.tags]
    assert "a" not in tags and "img" not in tags and tags.count("table") >= 6
    assert tags.count("h2") >= 7
    text = html.unescape("".join(parsed.text))
    assert BRANCH in text and COMMAND in text and COMMIT_MESSAGE in text and "GPU-1|x" in text
    for table in out.split("<table>")[1:]:
        head = table.split("</thead>")[0].count("<th>")
        assert all(row.count("<td>") == head for row in table.split("<tbody>")[-1].split("<tr>")[1:])
