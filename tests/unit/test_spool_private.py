"""The spool is private: directory 0700, files 0600, no other user's directory, no symlinks."""

import os
import stat

import pytest

from tfrepro.tracking import spool

OTHER_UID = 4242  # tests run as root in CI; as another user chown is not allowed


def mode(path):
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


def test_new_spool_is_0700_and_its_files_0600(tmp_path):
    f = spool.SpoolFile(str(tmp_path / "spool"), "r1", {"run_id": "r1", "tracking_uri": "http://h"})
    spool.save_state(f.path, {"offset": 1})
    f.close()
    assert mode(tmp_path / "spool") == 0o700
    assert mode(f.path) == 0o600 and mode(spool.state_path(f.path)) == 0o600


def test_an_old_world_readable_spool_is_tightened(tmp_path):
    d = tmp_path / "spool"
    d.mkdir(mode=0o755)
    (d / "r1.jsonl").write_text('{"run": {"run_id": "r1"}}\n')
    os.chmod(str(d / "r1.jsonl"), 0o644)
    spool.SpoolFile(str(d), "r1", {"run_id": "r1"}).close()
    assert mode(d) == 0o700 and mode(d / "r1.jsonl") == 0o600


def test_a_symlinked_spool_dir_or_file_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "spool").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        spool.SpoolFile(str(tmp_path / "spool"), "r1", {"run_id": "r1"})
    d = tmp_path / "real"
    d.mkdir(mode=0o700)
    (d / "r2.jsonl").symlink_to(tmp_path / "victim")
    with pytest.raises(OSError):
        spool.SpoolFile(str(d), "r2", {"run_id": "r2"})
    assert not (tmp_path / "victim").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_another_users_directory_is_refused_and_the_fallback_stays_private(tmp_path, monkeypatch):
    d = tmp_path / "spool"
    d.mkdir(mode=0o777)
    os.chown(str(d), OTHER_UID, OTHER_UID)
    with pytest.raises(OSError, match="another user"):
        spool.private_dir(str(d))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    squatted = tmp_path / ("tfrepro-spool-%d" % os.geteuid())
    squatted.mkdir(mode=0o777)
    os.chown(str(squatted), OTHER_UID, OTHER_UID)  # another user got there first
    fallback = spool.fallback_dir()
    assert fallback != str(squatted) and os.path.dirname(fallback) == str(tmp_path)
    assert mode(fallback) == 0o700 and os.lstat(fallback).st_uid == os.geteuid()


def test_fallback_is_reused_when_it_is_ours(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first = spool.fallback_dir()
    assert first == str(tmp_path / ("tfrepro-spool-%d" % os.geteuid())) == spool.fallback_dir()
    assert mode(first) == 0o700
