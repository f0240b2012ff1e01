"""Git source: the pure parsers (status porcelain v2, remotes; credentials: test_redact.py)."""

from tfrepro.fingerprint import git

OID = "0123456789abcdef0123456789abcdef01234567"

# `git status --porcelain=v2 --branch -z --untracked-files=all`, as git 2.39 prints it
STATUS = "\0".join(
    [
        "# branch.oid " + OID,
        "# branch.head main",
        "# branch.upstream origin/main",
        "# branch.ab +1 -0",
        "1 .M N... 100644 100644 100644 %s %s train.py" % ("a" * 40, "a" * 40),
        "2 R. N... 100644 100644 100644 %s %s R100 model/new name.py" % ("b" * 40, "b" * 40),
        "model/old name.py",
        "? notes.txt",
        "? data/with\nnewline.csv",
        "",
    ]
)


def test_parse_status_dirty_tree():
    commit, branch, changed, untracked = git.parse_status(STATUS)
    assert (commit, branch, changed) == (OID, "main", True)
    assert untracked == ("data/with\nnewline.csv", "notes.txt")


def test_parse_status_clean_detached_and_initial():
    assert git.parse_status("# branch.oid %s\0# branch.head (detached)\0" % OID) == (OID, None, False, ())
    assert git.parse_status("# branch.oid (initial)\0# branch.head main\0? a\0") == (None, "main", False, ("a",))


def test_untracked_only_is_not_dirty():
    _, _, changed, untracked = git.parse_status("# branch.oid %s\0# branch.head main\0? x.py\0" % OID)
    assert changed is False and untracked == ("x.py",)


def test_pick_remote_prefers_origin():
    out = "remote.upstream.url https://a/x\nremote.origin.url git@b:y.git\n"
    assert git.pick_remote(out) == "git@b:y.git"
    assert git.pick_remote("remote.fork.url https://a/x\n") == "https://a/x"
    assert git.pick_remote("") is None


def test_parse_sets_patch_hash_and_workdir():
    raw = {
        "status": STATUS,
        "patch": "diff --git a/train.py b/train.py\n",
        "prefix": "src/pkg/",
        "root": "/repo",
        "remotes": "remote.origin.url https://u:p@h/x\n",
    }
    info = git.parse(raw)
    assert info.workdir == "src/pkg" and info.root == "/repo" and info.remote_url == "https://h/x"
    assert len(info.patch_sha256) == 64 and info.dirty
    assert git.parse(dict(raw, patch="", prefix="")).patch_sha256 is None
    assert git.parse(dict(raw, prefix="")).workdir == "."


def test_changed_paths_for_the_pathspec():
    assert git.changed_paths(STATUS) == ["train.py", "model/new name.py", "model/old name.py"]
    unmerged = "u UU N... 100644 100644 100644 100644 %s %s %s conflict file.py\0" % ("c" * 40, "d" * 40, "e" * 40)
    assert git.changed_paths(unmerged) == ["conflict file.py"]
