"""The launcher's source tags and card (launch/page.py), a replay and its original linked both
ways (replay/links.py), and what `show`, `diff` and `replay` take and print (cli/refs.py), on a
local MLflow file store: the store is real, the UI addresses come from an http URI given beside."""

import json
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from tfrepro import schema
from tfrepro.launch import page
from tfrepro.replay import links, noise, replays_table, verify
from tfrepro.tracking import card
from tfrepro.tracking import record as run_record

UI = "http://mlflow.example:5000"
DIGEST = "127.0.0.1:5555/tfrepro-test@sha256:" + "ab" * 32
COMMIT = "c0ffee" * 6 + "abcd"


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's file store, for speed
    return MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())


def _run(client, experiment_id, tags=None, note=None, metrics=None):
    values = {
        "tfrepro.schema": "1",
        schema.IMAGE_DIGEST: DIGEST,
        "tfrepro.git.commit": COMMIT,
        "tfrepro.git.dirty": "false",
        schema.COMMAND: json.dumps(["python", "train.py"]),
        schema.LAUNCH_BACKEND: "docker",
    }
    values.update(tags or {})
    if note is not None:
        values[schema.MLFLOW_NOTE] = note
    run = client.create_run(experiment_id, tags=values)
    for key, value in (metrics or {}).items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _note(client, run_id):
    return client.get_run(run_id).data.tags.get(schema.MLFLOW_NOTE, "")


@pytest.mark.parametrize(
    "command,subdir,expected",
    [
        (["python", "train.py"], ".", "train.py"),
        (["python", "-u", "src/train.py", "--lr", "1"], "examples", "examples/src/train.py"),
        (["python", "-m", "pkg.train"], ".", "-m pkg.train"),
        (["python", "-c", "print(1)"], ".", None),
        (["python", "../../etc/x.py"], ".", None),
    ],
)
def test_source_tags_name_the_script_relative_to_the_repository(command, subdir, expected):
    tags = page.source_tags(command, subdir)
    assert tags.get(schema.MLFLOW_SOURCE_NAME) == expected
    if expected:
        assert tags[schema.MLFLOW_SOURCE_TYPE] == "LOCAL"


def test_refresh_card_writes_the_engine_and_keeps_the_users_text(client):
    experiment = client.create_experiment("e")
    run_id = _run(client, experiment, note="my notes")
    assert page.refresh_card(client, run_id, UI)
    note = _note(client, run_id)
    assert note.startswith("my notes")
    body = card.find_block(note, schema.CARD_BLOCK)
    assert DIGEST in body and COMMIT in body and "docker" in body
    assert not page.refresh_card(client, run_id, UI)  # the same card: nothing written again


def test_refresh_card_only_warns(client, caplog):
    assert not page.refresh_card(client, "0" * 32, UI)
    assert "could not write the card" in caplog.text


def _prepared(client, original_id, experiment_id):
    record = run_record.load(client, original_id)
    destination = SimpleNamespace(client=client, tracking_uri=UI, experiment_id=experiment_id)
    return SimpleNamespace(record=record, destination=destination, client=client)


def test_a_replay_and_its_original_link_both_ways(client):
    experiment = client.create_experiment("e")
    original = _run(client, experiment, note="why I ran it", metrics={"loss": 0.5})
    prepared = _prepared(client, original, experiment)
    assert links.parent_tags(prepared) == {schema.MLFLOW_PARENT_RUN_ID: original}
    replay_id = _run(client, experiment, {schema.REPLAY_OF: original}, metrics={"loss": 0.75})
    replayed = run_record.load(client, replay_id)
    verdict = verify.Verdict(verify.DIVERGED, "loss differs", why=({"line": "the GPU differs", "fix": "use an A100"},))

    links.link_replay(prepared, replayed, verdict)

    replay_note = _note(client, replay_id)
    body = card.find_block(replay_note, schema.REPLAY_BLOCK)
    assert "%s/#/experiments/%s/runs/%s" % (UI, experiment, original) in body
    assert "did not reproduce" in body and "the GPU differs" in body and "use an A100" in body
    assert "compare-runs" in body
    original_note = _note(client, original)
    assert original_note.startswith("why I ran it")
    rows = replays_table.replay_rows(original_note)
    assert [(r.run_id, r.engine, r.verdict) for r in rows] == [(replay_id, "docker", "diverged")]
    assert rows[0].url == "%s/#/experiments/%s/runs/%s" % (UI, experiment, replay_id)
    text = client.download_artifacts(replay_id, schema.REPLAY_MD)
    with open(text) as handle:
        markdown = handle.read()
    assert "| loss | 0\\.5 | 0\\.75 |" in markdown and "diverged" in markdown and "the GPU differs" in markdown

    urls = links.addresses(prepared, [replay_id])
    assert urls["original_url"].endswith("/runs/%s" % original)
    assert urls["replay_url"].endswith("/runs/%s" % replay_id)
    assert original in urls["compare_url"] and replay_id in urls["compare_url"]


def test_another_experiment_does_not_nest_and_a_file_store_has_no_links(client):
    first, second = client.create_experiment("a"), client.create_experiment("b")
    original = _run(client, first)
    prepared = _prepared(client, original, second)
    assert links.parent_tags(prepared) == {}
    prepared.destination.tracking_uri = client.tracking_uri
    assert links.addresses(prepared, ["f" * 32]) == {"original_url": None, "replay_url": None, "compare_url": None}


def test_a_repeat_summary_shows_its_interval(client):
    experiment = client.create_experiment("e")
    original = _run(client, experiment, metrics={"loss": 0.5})
    prepared = _prepared(client, original, experiment)
    summary = client.create_run(experiment, tags={schema.REPLAY_SUMMARY_OF: original}).info.run_id
    replays = [run_record.load(client, _run(client, experiment, metrics={"loss": 0.5 + i / 100})) for i in range(3)]
    spread = noise.Spread("loss", 0.5, (0.5, 0.51, 0.52), 0.51, 0.01, 0.48, 0.54)
    verdict = noise.RepeatVerdict(noise.WITHIN_NOISE, "inside the spread", 3, (spread,))

    links.link_repeat(prepared, summary, replays, verdict)

    body = card.find_block(_note(client, summary), schema.REPLAY_BLOCK)
    assert "3 replays of" in body and "interval" in body and "0\\.48" in body and "0\\.54" in body
    rows = replays_table.replay_rows(_note(client, original))
    assert rows[0].run_id == summary and rows[0].verdict == "within noise (3 replays)"


def test_a_write_that_fails_only_warns(client, caplog):
    experiment = client.create_experiment("e")
    original = _run(client, experiment)
    prepared = _prepared(client, original, experiment)
    replayed = run_record.load(client, _run(client, experiment))

    class Broken:
        tracking_uri = client.tracking_uri

        def __getattr__(self, name):
            raise RuntimeError("server down")

    prepared.client = Broken()
    links.link_replay(prepared, replayed, verify.Verdict(verify.IDENTICAL, ""))
    assert caplog.text.count("server down") == 3
