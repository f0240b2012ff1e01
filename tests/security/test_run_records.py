"""What `tfrepro run` stores on a real `mlflow server` (real Docker engine): no secret flag
value, no secret-looking -e value, no patch with TFREPRO_NO_PATCH=1, and a signature when the
user has an SSH signing key; a user -v of an always-refused path is one line, nothing run."""

import json
import subprocess
import uuid

import pytest

from tests.helpers.cli import one_error
from tests.helpers.records import FAKE, HOLD, everything_on_server
from tfrepro.cli import main, status

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def only_run(client, experiment):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return runs[0].info.run_id


def test_run_stores_no_secret_and_signs_the_record(
    test_image, mlflow_server, attacker, dirty_repo, monkeypatch, watch, tmp_path, capsys
):
    monkeypatch.chdir(dirty_repo)
    key = tmp_path / "alice"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (tmp_path / "allowed").write_text("alice@example.com " + open(str(key) + ".pub").read())
    monkeypatch.setenv("TFREPRO_SIGNING_KEY", str(key))
    monkeypatch.setenv("TFREPRO_NO_PATCH", "1")
    monkeypatch.setenv("FROM_SHELL", "shell-" + FAKE)
    experiment = "sec-run-" + uuid.uuid4().hex[:8]
    watcher = watch()
    code = main(
        [
            "run",
            "--image",
            test_image.latest,
            "--experiment",
            experiment,
            "--tracking-uri",
            mlflow_server.uri,
            "--no-autolog",
            "-e",
            "GH_PAT=ghp_" + FAKE + "aaaaaaaaaaaa",
            "-e",
            "DATABASE_URL=postgres://u:%s@db/x" % FAKE,
            "-e",
            "FROM_SHELL",
            "-e",
            "MODE=fast",
            "--",
        ]
        + HOLD
        + ["--password=" + FAKE, "--api-key", FAKE]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    env = watcher.env()  # the user's own values reach their own run's container
    assert env["GH_PAT"].startswith("ghp_") and env["FROM_SHELL"].startswith("shell-") and env["MODE"] == "fast"
    assert env["TFREPRO_NO_PATCH"] == "1"
    assert "-e GH_PAT: value not recorded (token-like value)" in err
    assert "-e DATABASE_URL: value not recorded (URL with credentials)" in err
    run_id = only_run(attacker, experiment)
    stored = everything_on_server(attacker, run_id, tmp_path)
    assert FAKE not in stored and FAKE not in out + err
    tags = attacker.get_run(run_id).data.tags
    assert json.loads(tags["tfrepro.command"])[-3:] == ["--password=<redacted>", "--api-key", "<redacted>"]
    assert tags["tfrepro.git.patch_withheld"] == "true"
    files = [f.path for f in attacker.list_artifacts(run_id, "tfrepro")]
    assert "tfrepro/git.patch" not in files and "tfrepro/record.sig" in files
    launch = json.load(open(attacker.download_artifacts(run_id, "tfrepro/launch.json", str(tmp_path))))
    assert launch["env"] == {"DATABASE_URL": None, "FROM_SHELL": None, "GH_PAT": None, "MODE": "fast"}
    # the replaying side: trusted signature, and the dirty state said to be lost
    main(
        [
            "replay",
            run_id,
            "--dry-run",
            "--gpus",
            "none",
            "--tracking-uri",
            mlflow_server.uri,
            "--allowed-signers",
            str(tmp_path / "allowed"),
        ]
    )
    out, err = capsys.readouterr()
    assert "record:    signed by alice@example.com (trusted)" in out
    assert "FROM_SHELL needs --pass-env FROM_SHELL" in out
    assert "the dirty state cannot be restored" in err


@pytest.mark.parametrize("volume", ["/:/host", "//var/run/docker.sock:/s", "/etc:/etc:ro", "~/.ssh:/k"])
def test_run_refuses_dangerous_volumes(test_image, mlflow_server, attacker, git_repo, monkeypatch, capsys, volume):
    import os

    monkeypatch.chdir(git_repo)
    experiment = "sec-vol-" + uuid.uuid4().hex[:8]
    line = one_error(
        capsys,
        main(
            [
                "run",
                "--image",
                test_image.latest,
                "--experiment",
                experiment,
                "--tracking-uri",
                mlflow_server.uri,
                "-v",
                volume.replace("~", os.path.expanduser("~")),
                "--",
                "true",
            ]
        ),
        status.USAGE,
    )
    assert "refusing -v" in line
    assert attacker.get_experiment_by_name(experiment) is None  # nothing recorded, nothing run
