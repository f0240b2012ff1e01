"""Data fingerprints: the walk over real temporary trees, the record, and drift rows."""

import hashlib
import json
import os
import tempfile

import pytest

from tfrepro.fingerprint import data as D
from tfrepro.fingerprint import data_record as R


def write(path, text, mtime=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "data"
    write(str(root / "train" / "x.npy"), "0123456789", 10**18)
    write(str(root / "train" / "y.npy"), "abc", 10**18)
    write(str(root / "val" / "x.npy"), "hello", 10**18)
    write(str(root / "labels.csv"), "a,b\n", 10**18)
    return str(root)


def test_counts_bytes_detail_and_parts(tree):
    source = D.scan(tree, target="/data")
    assert (source.label, source.path, source.target, source.kind, source.mode) == (
        "mount",
        tree,
        "/data",
        "dir",
        "metadata",
    )
    assert (source.files, source.bytes) == (4, 22)
    assert set(source.entries) == {"train/x.npy", "train/y.npy", "val/x.npy", "labels.csv"}
    assert source.entries["train/x.npy"] == {"size": 10, "mtime_ns": 10**18}
    assert {k: v["files"] for k, v in source.parts.items()} == {".": 1, "train": 2, "val": 1}
    assert not source.summarised and not source.reasons
    assert source.hash == D.scan(tree).hash, "the same tree hashes the same"


def test_metadata_hash_sees_mtime_content_hash_sees_bytes(tree):
    path = os.path.join(tree, "val", "x.npy")
    meta, content = D.scan(tree), D.scan(tree, hash_data=True)
    write(path, "HELLO", 10**18)  # same size, same mtime, new bytes
    assert D.scan(tree).hash == meta.hash  # the documented blind spot of the default
    changed = D.scan(tree, hash_data=True)
    assert changed.hash != content.hash
    assert R.compare(content, changed) == [R.DataDrift("mount", path, R.CONTENT_CHANGED)]
    os.utime(path, ns=(2 * 10**18, 2 * 10**18))
    rows = R.compare(meta, D.scan(tree))
    assert [(r.path, r.kind) for r in rows] == [(path, R.MODIFIED)]


def test_drift_rows_name_each_path(tree):
    recorded = D.scan(tree)
    os.remove(os.path.join(tree, "labels.csv"))
    write(os.path.join(tree, "train", "y.npy"), "abcd", 10**18)
    write(os.path.join(tree, "new.txt"), "n")
    rows = {(os.path.relpath(r.path, tree), r.kind) for r in R.compare(recorded, D.scan(tree))}
    assert rows == {("labels.csv", "missing"), ("train/y.npy", "size changed"), ("new.txt", "added")}


def test_missing_source(tree, tmp_path):
    gone = D.scan(str(tmp_path / "nope"))
    assert gone.kind == "missing" and gone.files == 0 and gone.hash is None
    assert "No such file" in gone.reasons["."]
    rows = R.compare(D.scan(tree), D.scan(tree + "-moved", name=tree))
    assert [(r.path, r.kind) for r in rows] == [(tree, "missing")]
    assert R.compare_all([D.scan(tree)], []) == [R.DataDrift("mount", tree, "missing", "not fingerprinted")]


def test_symlinks_are_recorded_never_followed(tree, tmp_path):
    outside = tmp_path / "outside"
    for i in range(5):
        write(str(outside / ("f%d" % i)), "x" * 100)
    os.symlink(str(outside), os.path.join(tree, "escape"))
    source = D.scan(tree)
    assert (source.files, source.bytes) == (4, 22), "nothing behind the link is counted"
    assert source.entries["escape"] == {"link": str(outside)}
    os.remove(os.path.join(tree, "escape"))
    os.symlink("/elsewhere", os.path.join(tree, "escape"))
    assert [r.kind for r in R.compare(source, D.scan(tree))] == [R.CONTENT_CHANGED]
    # a link as the root: followed for a mount (Docker binds its target), recorded for a repo path
    link = str(tmp_path / "link")
    os.symlink(tree, link)
    assert D.scan(link).files == 4
    kept = D.scan(link, label="untracked", follow_root=False)
    assert (kept.kind, kept.files, kept.entries) == ("symlink", 0, {"": {"link": tree}})


def test_fifo_is_never_opened(tree):
    os.mkfifo(os.path.join(tree, "pipe"))
    source = D.scan(tree, hash_data=True)  # opening the FIFO for reading would block forever
    assert source.entries["pipe"] == {"special": True} and source.files == 4


def test_single_file_source(tree):
    path = os.path.join(tree, "labels.csv")
    source = D.scan(path, hash_data=True)
    assert (source.kind, source.files, source.bytes) == ("file", 1, 4)
    assert source.entries[""]["sha256"] == hashlib.sha256(b"a,b\n").hexdigest()
    write(path, "a,b,c\n")
    assert [(r.path, r.kind) for r in R.compare(source, D.scan(path, hash_data=True))] == [(path, R.SIZE)]


def test_unreadable_file_is_named_in_reasons():
    # root reads any file: a forked child drops to an unprivileged uid to meet a real EACCES,
    # so the tree lives in a folder that uid can enter (pytest's tmp folders are 0700)
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)
        tree = os.path.join(top, "data")
        write(os.path.join(tree, "val", "x.npy"), "hello")
        secret = os.path.join(tree, "val", "secret.bin")
        write(secret, "s")
        os.chmod(secret, 0)
        for hash_data in (False, True):
            source = _scan_unprivileged(tree, hash_data)
            assert source.reasons == {"val/secret.bin": "unreadable: Permission denied"}
            assert source.files == 2 and source.entries["val/secret.bin"]["unreadable"] is True
            assert "1 unreadable" in source.summary()


def _scan_unprivileged(tree, hash_data):
    if os.geteuid() != 0:
        return D.scan(tree, hash_data=hash_data)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.setuid(65534)
            os.write(write_end, json.dumps(D.scan(tree, hash_data=hash_data).to_dict()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as fh:
        text = fh.read()
    os.waitpid(pid, 0)
    return R.DataSource.from_dict(json.loads(text))


def test_budget_summarises_per_top_level_entry(tree):
    source = D.scan(tree, detail_files=2)
    assert source.summarised and source.entries == {}
    assert source.files == 4 and source.hash == D.scan(tree).hash, "totals and hash still cover everything"
    assert "summarised per top-level entry" in source.reasons["summary"]
    assert set(source.parts) == {".", "train", "val"}
    write(os.path.join(tree, "train", "y.npy"), "abcdef")
    rows = R.compare(source, D.scan(tree, detail_files=2))
    assert [(os.path.relpath(r.path, tree), r.kind) for r in rows] == [("train", R.SIZE)]
    slow = D.scan(tree, detail_seconds=0.0)
    assert slow.summarised


def test_record_round_trips_through_json_and_tags(tree):
    sources = [D.scan(tree, target="/data"), D.scan(tree + "/nope", target="/x")]
    data = json.loads(json.dumps(R.to_json_data(sources)))
    assert R.from_json_data(data) == sources
    tags = R.to_tags(sources)
    assert tags["tfrepro.data.sources"] == "2"
    assert tags["tfrepro.data.0.hash"] == sources[0].hash and tags["tfrepro.data.1.kind"] == "missing"
    assert all(len(v) <= 5000 for v in tags.values())
    back = R.from_tags(tags)
    assert [(s.path, s.target, s.files, s.bytes, s.hash, s.kind) for s in back] == [
        (s.path, s.target, s.files, s.bytes, s.hash, s.kind) for s in sources
    ]
    assert R.compare_all(back, sources) == [], "tag-only records compare by hash"


@pytest.mark.parametrize(
    "bad",
    [
        {"label": "mount", "path": "", "mode": "metadata"},
        {"label": "other", "path": "/d", "mode": "metadata"},
        {"label": "mount", "path": "/d", "mode": "metadata", "files": -1},
        {"label": "mount", "path": "/d", "mode": "metadata", "hash": "md5:1"},
        {"label": "mount", "path": "/d", "mode": "metadata", "entries": {"a": {"size": "9"}}},
        "not an object",
    ],
)
def test_untrusted_records_are_validated(bad):
    with pytest.raises(ValueError):
        R.DataSource.from_dict(bad)


def test_summary_line(tree):
    assert D.scan(tree, target="/data").summary().startswith("mount %s -> /data: 4 files, 22 B, sha256:" % tree)
    assert R.human_bytes(10 * 10**9) == "10.0 GB"
