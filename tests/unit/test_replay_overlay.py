"""Data beside the code on replay: the recorded inputs checked in a real clone on disk,
confined to it, and the read-only mounts and plan lines that follow."""

import os
from dataclasses import replace

import pytest

from tfrepro.errors import RecordError, SourceError
from tfrepro.fingerprint import data as D
from tfrepro.fingerprint.untracked import SKIP_NAMES
from tfrepro.replay import overlay as O


def write(path, text="x"):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), "w") as fh:
        fh.write(text)


def record(clone, path, label="untracked", hash_data=False):
    return D.scan(
        os.path.join(str(clone), path),
        label,
        "/workspace/" + path,
        hash_data,
        follow_root=False,
        name=path,
        skip_names=SKIP_NAMES,
    )


@pytest.fixture
def clone(tmp_path):
    root = tmp_path / "clone"
    write(root / "data" / "npy" / "x.npy", "0123456789")
    write(root / "data" / "npy" / "y.npy", "abc")
    write(root / "notes.txt", "n")
    return root


def test_matching_inputs_are_mounted_read_only(clone):
    sources = [record(clone, "data/npy"), record(clone, "notes.txt", "ignored")]
    overlay = O.check(sources, str(clone))
    assert [i.state for i in overlay.inputs] == ["match", "match"] and overlay.drift == []
    assert [m.bind() for m in overlay.mounts("/workspace")] == [
        "%s:/workspace/data/npy:ro" % (clone / "data" / "npy"),
        "%s:/workspace/notes.txt:ro" % (clone / "notes.txt"),
    ]
    assert {m.kind for m in overlay.mounts("/w")} == {"beside"}
    assert [s.path for s in overlay.current] == ["data/npy", "notes.txt"]
    assert overlay.render("/workspace").splitlines() == [
        "data beside the code: read-only from %s" % clone,
        "data beside the code: data/npy (untracked, 2 files, 13 B), matches the record",
        "data beside the code: notes.txt (ignored, 1 file, 1 B), matches the record",
    ]


def test_changed_or_missing_inputs_block_one_row_per_path(clone):
    sources = [record(clone, "data/npy"), record(clone, "notes.txt"), record(clone, "data/npy", hash_data=True)]
    write(clone / "data" / "npy" / "x.npy", "01234")
    os.remove(str(clone / "notes.txt"))
    overlay = O.check(sources[:2], str(clone))
    assert [r.line() for r in overlay.drift] == [
        "untracked data/npy/x.npy: size changed (10 -> 5 bytes)",
        "untracked notes.txt: missing",
    ]
    assert overlay.mounts("/workspace") == (), "nothing changed is mounted without --allow-drift"
    allowed = O.check(sources[:2], str(clone), allow_drift=True)
    assert [m.target for m in allowed.mounts("/workspace")] == ["/workspace/data/npy"], "a missing one cannot be"
    assert "  ! untracked data/npy/x.npy: size changed (10 -> 5 bytes)" in overlay.render("/workspace")
    write(clone / "data" / "npy" / "y.npy", "ABC")  # same size: content mode sees it
    rows = O.check([sources[2]], str(clone)).drift
    assert [(r.path, r.kind) for r in rows][-1] == ("data/npy/y.npy", "content changed")


def test_no_local_clone_says_how_to_provide_each_input(clone):
    overlay = O.check([record(clone, "data/npy")], None)
    assert [r.line() for r in overlay.drift] == ["untracked data/npy: missing (no local clone)"]
    assert overlay.render("/workspace") == (
        "data beside the code: data/npy (untracked, 2 files, 13 B) is not on this host (no local clone has the "
        "commit): replay from a clone that has it at data/npy, or pass -v SRC:/workspace/data/npy:ro\n"
        "  ! untracked data/npy: missing (no local clone)"
    )


def test_missing_from_the_clone_says_how_to_provide_it_and_a_v_mount_provides_it(clone, tmp_path):
    recorded = [record(clone, "data/npy"), record(clone, "notes.txt")]
    elsewhere = tmp_path / "elsewhere"
    os.rename(str(clone / "data"), str(elsewhere))
    overlay = O.check(recorded, str(clone), workdir="/w")
    assert overlay.render("/w").splitlines()[1:3] == [
        "data beside the code: data/npy (untracked, 2 files, 13 B) is not in %s: put it at data/npy there, or pass "
        "-v SRC:/w/data/npy:ro" % clone,
        "  ! untracked data/npy: missing",
    ]
    # the replayer's own -v over the folder above it: checked there, mounted by that -v, not again
    overlay = O.check(recorded, str(clone), workdir="/w", provided={"/w/data/": str(elsewhere)})
    assert [i.state for i in overlay.inputs] == ["provided", "match"] and overlay.drift == []
    assert overlay.render("/w").splitlines()[1] == (
        "data beside the code: data/npy (untracked, 2 files, 13 B), provided with -v %s/npy, matches the record"
        % elsewhere
    )
    assert [m.target for m in overlay.mounts("/w")] == ["/w/notes.txt"]
    assert [s.path for s in overlay.current] == ["data/npy", "notes.txt"]
    write(elsewhere / "npy" / "x.npy", "changed")
    rows = O.check(recorded, str(clone), workdir="/w", provided={"/w/data": str(elsewhere)}).drift
    assert [r.line() for r in rows] == ["untracked data/npy/x.npy: size changed (10 -> 7 bytes)"]


def test_written_and_turned_off_are_not_restored_nor_checked(clone):
    written = replace(record(clone, "data/npy"), written=True)
    overlay = O.check([written], str(clone))
    assert overlay.drift == [] and overlay.mounts("/w") == ()
    assert overlay.render("/w").endswith("written by the original run, not restored (the replay writes its own)")
    off = O.check([record(clone, "data/npy")], str(clone), enabled=False)
    assert off.drift == [] and off.mounts("/w") == () and off.render("/w").endswith("not restored (--no-untracked)")
    assert [(r.path, r.kind, r.detail) for r in off.unrestored] == [("data/npy", "not restored", "--no-untracked")]


def test_symlinks_are_never_followed_or_mounted(clone, tmp_path):
    outside = tmp_path / "outside"
    write(outside / "secret.txt", "s")
    os.symlink(str(outside), str(clone / "shared"))
    os.symlink("data/npy", str(clone / "latest"))
    out_link, in_link = record(clone, "shared"), record(clone, "latest")
    overlay = O.check([out_link, in_link], str(clone))
    assert overlay.mounts("/w") == () and overlay.drift == []
    assert overlay.links() == [("latest", "data/npy")]
    lines = overlay.render("/w").splitlines()
    assert (
        lines[0] == "data beside the code: shared (untracked symlink): -> %s: a symlink out of the repository, "
        "not followed, not mounted" % outside
    )
    assert lines[1] == "data beside the code: latest (untracked symlink): -> data/npy, recreated in the checkout"
    assert [r.detail for r in overlay.unrestored] == ["a symlink out of the repository"]
    # a recorded folder that is a symlink in the clone now, or has one on the way: never followed
    recorded = record(clone, "data/npy")
    os.rename(str(clone / "data"), str(tmp_path / "moved"))
    os.symlink(str(tmp_path / "moved"), str(clone / "data"))
    overlay = O.check([recorded], str(clone), allow_drift=True)
    assert [r.line() for r in overlay.drift] == ["untracked data/npy: missing (a symlink on the way, not followed)"]
    assert overlay.mounts("/w") == ()


def test_paths_must_stay_inside_the_repository(clone):
    for bad in ("/etc", "../x", "data/../../x", "a//b", ".git/config", "x:y", "a\x1b]0;x\x07", "\u202e", ""):
        source = replace(record(clone, "notes.txt"), path=bad or "notes.txt")
        if not bad:
            source = replace(source, path=".")
        with pytest.raises(RecordError, match="is not a path inside the repository"):
            O.check([source], str(clone))
    secret = replace(record(clone, "notes.txt"), path=".env")
    write(clone / ".env", "n")
    assert [r.detail for r in O.check([secret], str(clone)).drift] == ["named like a secret: never mounted"]


def test_mount_points_are_made_in_the_checkout_without_following_links(clone, tmp_path):
    overlay = O.check([record(clone, "data/npy"), record(clone, "notes.txt")], str(clone))
    checkout = tmp_path / "checkout"
    os.makedirs(str(checkout))
    O.prepare_checkout(str(checkout), overlay)
    assert os.path.isdir(str(checkout / "data" / "npy")) and os.listdir(str(checkout / "data" / "npy")) == []
    assert os.path.isfile(str(checkout / "notes.txt"))
    trap = tmp_path / "checkout2"
    os.makedirs(str(trap))
    os.symlink(str(tmp_path / "victim"), str(trap / "data"))  # a tracked link in the way
    with pytest.raises(SourceError, match="data/npy: cannot mount it over the checkout: data is not a folder"):
        O.prepare_checkout(str(trap), overlay)
    assert not os.path.exists(str(tmp_path / "victim"))


def test_host_path_rules_apply_to_the_clone(clone):
    """A clone under a path no container may get (launch/hostpaths.py) is never mounted."""
    overlay = O.check(
        [record(clone, "notes.txt")], str(clone), allow_drift=True, refuse=lambda path: "%s is under ~/.ssh" % path
    )
    assert [r.line() for r in overlay.drift] == [
        "untracked notes.txt: missing (%s is under ~/.ssh)" % (clone / "notes.txt")
    ]
    assert overlay.mounts("/w") == ()
