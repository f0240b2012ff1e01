"""The spool file: append, read back whole lines only, markers, locking."""

import json
import os

import pytest

from tfrepro.tracking import spool

pytestmark = pytest.mark.py38


def _open(tmp_path, run_id="r1"):
    return spool.SpoolFile(str(tmp_path), run_id, {"run_id": run_id})


def test_append_then_read_back_in_order(tmp_path):
    f = _open(tmp_path)
    f.write([spool.encode({"step": i, "ts": 5, "metrics": {"loss": i / 2}}) for i in range(3)])
    f.write([spool.encode({"params": {"lr": "0.1"}})])
    size = f.flush()
    records, end = spool.read(f.path, 0)
    assert end == size == os.path.getsize(f.path)
    assert records[0] == {"run": {"run_id": "r1"}}
    assert [r["step"] for r in records[1:4]] == [0, 1, 2]
    assert records[4] == {"params": {"lr": "0.1"}}
    assert spool.read_header(f.path) == {"run_id": "r1"}
    f.close()


def test_read_stops_before_a_half_written_line_and_resumes_from_offset(tmp_path):
    f = _open(tmp_path)
    f.flush()
    start = f.flushed
    with open(f.path, "ab") as raw:
        raw.write(b'{"step":1,"ts":1,"metrics":{"a":1.0}}\n{"step":2,"ts"')
    records, end = spool.read(f.path, start)
    assert [r["step"] for r in records] == [1] and end < os.path.getsize(f.path)
    with open(f.path, "ab") as raw:
        raw.write(b':2,"metrics":{"a":2.0}}\n')
    records, _ = spool.read(f.path, end)
    assert [r["step"] for r in records] == [2]
    f.close()


def test_reopening_after_a_torn_line_keeps_the_next_record_whole(tmp_path):
    f = _open(tmp_path)
    f.close()
    with open(f.path, "ab") as raw:
        raw.write(b'{"step":1,"ts"')  # the writer was killed mid-line
    g = _open(tmp_path)
    g.write([spool.encode({"step": 2, "ts": 2, "metrics": {"a": 2.0}})])
    g.close()
    steps = [r["step"] for r in spool.iter_records(g.path) if "step" in r]
    assert steps == [2]


def test_read_respects_the_entity_budget(tmp_path):
    f = _open(tmp_path)
    f.write([spool.encode({"step": i, "ts": 1, "metrics": {"a": 1.0, "b": 2.0}}) for i in range(1000)])
    f.flush()
    records, end = spool.read(f.path, 0, max_entities=100)
    assert len(records) == 51  # header + 50 lines of 2 points
    more, _ = spool.read(f.path, end, max_entities=100)
    assert more[0]["step"] == 50
    f.close()


def test_a_live_session_locks_its_file_and_a_second_one_gets_its_own(tmp_path):
    first = _open(tmp_path)
    second = _open(tmp_path)
    assert first.path != second.path and second.path.endswith("r1.2.jsonl")
    with open(first.path, "rb") as other:
        assert not spool.try_lock(other)
    first.close()
    with open(first.path, "rb") as other:
        assert spool.try_lock(other)
    second.close()


def test_state_marker_is_saved_atomically_and_removed_with_the_file(tmp_path):
    f = _open(tmp_path)
    f.close()
    assert spool.load_state(f.path) == {}
    spool.save_state(f.path, {"offset": 12, "run_id": "abc"})
    assert spool.load_state(f.path) == {"offset": 12, "run_id": "abc"}
    assert json.load(open(spool.state_path(f.path)))["offset"] == 12
    assert spool.pending_files(str(tmp_path)) == [f.path]
    spool.remove(f.path)
    assert os.listdir(str(tmp_path)) == []


def test_spool_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("TFREPRO_SPOOL_DIR", str(tmp_path))
    assert spool.spool_dir() == str(tmp_path)
    monkeypatch.delenv("TFREPRO_SPOOL_DIR")
    assert spool.spool_dir().endswith(os.path.join(".cache", "tfrepro", "spool"))
    assert spool.spool_dir("/x") == "/x"


def test_plan_keeps_dataset_inputs_in_order_between_other_calls():
    from tfrepro.tracking.upload import plan

    dataset = {"name": "training", "digest": "ab", "source_type": "code", "source": "{}", "context": "training"}
    calls = plan(
        [{"tags": {"a": "1"}}, {"inputs": [dataset]}, {"tags": {"b": "2"}}, {"end": "FINISHED", "end_time": 5}]
    )
    assert [kind for kind, _ in calls] == ["tags", "inputs", "tags", "end"]
    assert calls[1][1] == [dataset]


def _read_line_by_line(path, offset, end=None, max_entities=1000):
    """The reader's contract, one json.loads a line: what the batched reader must match."""
    records, entities = [], 0
    with open(path, "rb") as f:
        f.seek(offset)
        while entities < max_entities and (end is None or offset < end):
            line = f.readline()
            if not line.endswith(b"\n"):
                break
            offset += len(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
                entities += len(record.get("metrics") or ()) or 1
    return records, offset


@pytest.mark.parametrize("max_entities", [1, 2, 3, 7, 100, 1000])
def test_batched_read_matches_reading_line_by_line(tmp_path, max_entities):
    f = _open(tmp_path)
    lines = []
    for i in range(120):
        metrics = {"a": i / 3} if i % 3 else {"a": 1.0, "b": 2.5, "c": -1e-300}
        lines.append(spool.encode_metrics(i, 1000 + i, metrics))
        if i % 17 == 5:
            lines.append(spool.encode({"params": {"p%d" % i: "x"}}))
        if i % 29 == 11:
            lines.append(b'{"step":99,"ts"\n')  # torn by a killed writer, then the next line whole
        if i % 31 == 7:
            lines.append(b"[1,2]\n")  # JSON, but not a record
    f.write(lines)
    size = f.flush()
    f.close()
    ends = [None, size, size // 2]
    with open(f.path, "rb") as handle:
        for end in ends:
            offset, expected_offset = 0, 0
            while True:
                got, offset2 = spool.read(f.path, offset, end, max_entities=max_entities, handle=handle)
                want, expected2 = _read_line_by_line(f.path, expected_offset, end, max_entities)
                assert (got, offset2) == (want, expected2)
                if offset2 == offset:
                    break
                offset = expected_offset = offset2


def test_batched_read_stops_at_a_half_written_line(tmp_path):
    f = _open(tmp_path)
    f.write([spool.encode_metrics(i, i, {"a": 1.0}) for i in range(10)])
    size = f.flush()
    with open(f.path, "ab") as raw:
        raw.write(b'{"step":10,"ts":10,"metr')
    records, end = spool.read(f.path, 0)
    assert end == size and [r["step"] for r in records[1:]] == list(range(10))
    f.close()
