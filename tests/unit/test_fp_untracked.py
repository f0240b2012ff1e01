"""Data beside the code at record time: git's untracked and ignored paths in a real repository,
fingerprinted with the data module; what is left out; the budget; outputs of the run."""

import json
import os
import tempfile

import pytest

from tests.helpers.git_repos import make_repo
from tfrepro.fingerprint import untracked as U
from tfrepro.fingerprint.data_record import DataSource


def write(path, text="x"):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), "w") as fh:
        fh.write(text)


# what every repository here has committed: a tracked file in lib/, and what git ignores
TRACKED = {"train.py": "print(1)\n", "lib/tracked.txt": "x", ".gitignore": "out/\n*.log\n"}


@pytest.fixture
def repo(tmp_path):
    root = make_repo(tmp_path / "repo", TRACKED)
    write(root / "data" / "npy" / "x.npy", "0123456789")
    write(root / "data" / "npy" / "y.npy", "abc")
    write(root / "lib" / "new.csv", "a,b\n")  # untracked file in a tracked folder
    write(root / "out" / "model.h5", "m")  # ignored folder
    write(root / "lib" / "run.log", "l")  # ignored file
    return root


def by_path(capture):
    return {s.path: s for s in capture.sources}


def test_untracked_and_ignored_paths_are_fingerprinted_and_labelled(repo):
    capture = U.collect(str(repo), "/workspace")
    sources = by_path(capture)
    assert set(sources) == {"data", "lib/new.csv", "lib/run.log", "out"}
    assert [sources[p].label for p in ("data", "lib/new.csv", "lib/run.log", "out")] == [
        "untracked",
        "untracked",
        "ignored",
        "ignored",
    ]
    data = sources["data"]
    assert (data.kind, data.files, data.bytes, data.target) == ("dir", 2, 13, "/workspace/data")
    assert set(data.entries) == {"npy/x.npy", "npy/y.npy"} and data.mode == "metadata"
    assert sources["lib/new.csv"].kind == "file"
    assert all(not s.summarised and s.hash for s in capture.sources)
    note = capture.note()
    assert note.startswith(
        "data beside the code: 2 untracked, 2 ignored path(s) fingerprinted (data, lib/new.csv, "
        "lib/run.log, out; 5 files, 19 B, "
    )
    assert note.endswith("a replay restores them read-only from the replayer's clone")
    assert by_path(U.collect(str(repo), "/workspace", hash_data=True))["data"].entries["npy/y.npy"]["sha256"]


def test_caches_virtualenvs_stores_and_secrets_are_left_out(repo, tmp_path):
    write(repo / "pkg" / "__pycache__" / "m.pyc")
    write(repo / "data" / "__pycache__" / "d.pyc")  # inside a data folder too
    write(repo / "env1" / "pyvenv.cfg", "home = /usr\n")
    write(repo / ".venv" / "bin" / "python")
    write(repo / "mlruns" / "0" / "meta.yaml")
    write(repo / "mlflow.db")
    write(repo / ".env", "TOKEN=x")
    write(repo / "keys" / "server.pem")
    write(repo / "store" / "runs.db")
    write(repo / "evil\x1b[2Jname")
    write(repo / "tfrepro.egg-info" / "PKG-INFO")  # `pip install -e .`
    capture = U.collect(str(repo), "/workspace", skip_paths=[str(repo / "store")])
    assert set(by_path(capture)) == {"data", "lib/new.csv", "lib/run.log", "out", "keys"}
    assert by_path(capture)["data"].files == 2, "a __pycache__ inside data is no data"
    assert by_path(capture)["keys"].files == 1  # a folder is walked; only its own name is judged
    assert capture.skipped == {
        ".env": "named like a secret",
        ".venv": "cache, virtualenv or tracking store",
        "env1": "virtualenv",
        "evil\x1b[2Jname": "unprintable name",
        "mlflow.db": "cache, virtualenv or tracking store",
        "mlruns": "cache, virtualenv or tracking store",
        "pkg": "only caches",
        "store": "tracking store or spool",
        "tfrepro.egg-info": "build metadata",
    }
    assert "left out: .env (named like a secret)" in capture.note()


def test_symlink_out_of_the_repository_is_recorded_as_one(repo, tmp_path):
    outside = tmp_path / "elsewhere"
    write(outside / "big.bin", "0" * 100)
    os.symlink(str(outside), str(repo / "shared"))
    link = by_path(U.collect(str(repo), "/workspace"))["shared"]
    assert (link.kind, link.files, link.bytes) == ("symlink", 0, 0)
    assert link.entries[""] == {"link": str(outside)}, "the link text, never what it points to"


def test_budget_summarises_and_says_so(repo):
    capture = U.collect(str(repo), "/workspace", budget=0.0)
    data = by_path(capture)["data"]
    assert data.summarised and data.entries == {} and data.parts["npy"]["files"] == 2
    assert "summarised per top-level entry" in data.reasons["summary"]
    assert data.hash == by_path(U.collect(str(repo), "/workspace"))["data"].hash, "the tree hash still covers all"
    assert "summarised per top-level entry (over 100000 files or 1 s)" in capture.note()
    assert by_path(U.collect(str(repo), "/workspace", max_files=1))["data"].summarised


def test_too_many_paths_are_counted_not_walked(repo, monkeypatch):
    monkeypatch.setattr(U, "MAX_PATHS", 2)
    capture = U.collect(str(repo), "/workspace")
    assert [s.path for s in capture.sources] == ["data", "lib/new.csv"]
    assert capture.over == ("lib/run.log", "out")
    assert "2 more path(s) not fingerprinted (over 2)" in capture.note()


def test_only_left_out_paths_say_so(tmp_path):
    root = make_repo(tmp_path / "repo", TRACKED)
    write(root / "pkg" / "__pycache__" / "m.pyc")
    capture = U.collect(str(root), "/workspace")
    assert capture.found and capture.sources == ()
    assert capture.note() == "data beside the code: nothing fingerprinted; left out: pkg (only caches)"
    assert not U.collect(str(make_repo(tmp_path / "clean", TRACKED)), "/workspace").found


def test_not_a_repository_is_a_note_never_a_raise(tmp_path):
    capture = U.collect(str(tmp_path), "/workspace")
    assert capture.sources == () and capture.error
    assert capture.note().startswith("data beside the code: not fingerprinted (git ls-files: ")


def test_unreadable_file_is_named_in_reasons(tmp_path):
    with tempfile.TemporaryDirectory() as top:  # an unprivileged uid must enter it (see test_fp_data)
        os.chmod(top, 0o755)
        root = make_repo(__import__("pathlib").Path(top) / "repo", TRACKED)
        write(root / "data" / "ok.npy", "1")
        write(root / "data" / "secret.npy", "2")
        os.chmod(str(root / "data" / "secret.npy"), 0)
        data = _collect_unprivileged(str(root))["data"]
        assert data.reasons == {"secret.npy": "unreadable: Permission denied"}
        assert data.files == 2 and data.entries["secret.npy"]["unreadable"] is True


def _collect_unprivileged(root):
    if os.geteuid() != 0:
        return by_path(U.collect(root, "/workspace"))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.setuid(65534)
            os.environ.update(
                HOME="/tmp", GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0="*"
            )
            capture = U.collect(root, "/workspace")
            os.write(write_end, json.dumps([s.to_dict() for s in capture.sources]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as fh:
        text = fh.read()
    os.waitpid(pid, 0)
    return {s.path: s for s in map(DataSource.from_dict, json.loads(text))}


def test_what_changed_while_the_run_ran_is_marked_written(repo):
    capture = U.collect(str(repo), "/workspace")
    write(repo / "out" / "model.h5", "a new model")
    write(repo / "out" / "log.txt", "new")
    marked, changed = U.written(capture, str(repo))
    assert changed == ["out"]
    assert [s.path for s in marked.sources if s.written] == ["out"]
    assert "written by the run" in by_path(marked)["out"].summary()
    assert DataSource.from_dict(by_path(marked)["out"].to_dict()).written


def test_parse_and_outermost():
    assert U.parse_ls_files(b"data/\0notes.txt\0a b/c\0") == ["data", "notes.txt", "a b/c"]
    assert U.outermost(["data/npy/x", "data", "datasets/y", "a"]) == ["a", "data", "datasets/y"]
