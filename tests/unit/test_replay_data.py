"""replay/data.py: the recorded mounts scanned again, and what the plan prints."""

import os

from tfrepro.fingerprint import data as D
from tfrepro.fingerprint.data_record import DataSource
from tfrepro.replay import data as DD


def make(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "x.npy").write_bytes(b"0123")
    return str(root)


def test_unchanged_data_is_no_drift(tmp_path):
    root = make(tmp_path)
    recorded = [
        D.scan(root, target="/data", hash_data=True),
        DataSource(label="untracked", path="notes.txt", kind="file"),
    ]
    current, rows = DD.check(recorded)
    assert rows == [] and [s.mode for s in current] == ["content"], "rescanned as recorded; untracked left alone"
    text = DD.render(recorded, rows)
    assert text.splitlines()[0].startswith("    recorded  mount %s -> /data: 1 file, 4 B" % root)
    assert text.splitlines()[1] == "    matches the record on this host"


def test_changed_and_missing_data_block(tmp_path):
    root = make(tmp_path)
    recorded = [D.scan(root, target="/data")]
    (tmp_path / "data" / "x.npy").write_bytes(b"01234")
    _, rows = DD.check(recorded)
    assert [r.line() for r in rows] == ["mount %s: size changed (4 -> 5 bytes)" % os.path.join(root, "x.npy")]
    assert DD.refusal(rows) == (
        "data changed since the run: %s size changed (pass --allow-drift to run anyway)" % os.path.join(root, "x.npy")
    )
    assert "  ! mount " in DD.render(recorded, rows)
    os.remove(os.path.join(root, "x.npy"))
    os.rmdir(root)
    _, rows = DD.check(recorded)
    assert [(r.path, r.kind) for r in rows] == [(root, "missing")]


def test_many_rows_are_counted(tmp_path):
    root = make(tmp_path)
    for i in range(15):
        (tmp_path / "data" / ("f%02d" % i)).write_text("x")
    recorded = [D.scan(root)]
    for i in range(15):
        os.remove(os.path.join(root, "f%02d" % i))
    _, rows = DD.check(recorded)
    assert len(rows) == 15
    text = DD.render(recorded, rows)
    assert text.endswith("  ! ... 5 more changed path(s)")
    assert DD.refusal(rows).endswith("missing (+14 more) (pass --allow-drift to run anyway)")
