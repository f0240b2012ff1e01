"""redact.py: secret-looking names, values, URL credentials and argv: one rule."""

import pytest

from tfrepro.redact import (
    REDACTED,
    is_secret,
    is_secret_flag,
    looks_secret_value,
    redact_argv,
    split_env,
    strip_url_credentials,
)

pytestmark = pytest.mark.py38


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train.py", "--password=hunter2"], ["train.py", "--password=" + REDACTED]),
        (["train.py", "--api-key", "xyz", "--lr", "0.1"], ["train.py", "--api-key", REDACTED, "--lr", "0.1"]),
        (
            ["t", "--apikey", "a", "--api_key=b", "--db-passwd", "c"],
            ["t", "--apikey", REDACTED, "--api_key=" + REDACTED, "--db-passwd", REDACTED],
        ),
        (
            ["t", "--token", "a", "--hf_token=b", "-secret", "c"],
            ["t", "--token", REDACTED, "--hf_token=" + REDACTED, "-secret", REDACTED],
        ),
        (
            ["t", "--key", "k", "--access-key=k2", "--credentials", "c", "--credential-file=x"],
            [
                "t",
                "--key",
                REDACTED,
                "--access-key=" + REDACTED,
                "--credentials",
                REDACTED,
                "--credential-file=" + REDACTED,
            ],
        ),
        (["t", "--auth", "u:p", "--basic-auth=u:p"], ["t", "--auth", REDACTED, "--basic-auth=" + REDACTED]),
        # hyper-parameters that merely contain the words stay
        (
            ["t", "--max-tokens", "512", "--key-dim", "64", "--author", "me", "--keys", "3"],
            ["t", "--max-tokens", "512", "--key-dim", "64", "--author", "me", "--keys", "3"],
        ),
        # a secret flag followed by another flag: nothing to hide
        (["t", "--token", "--lr", "1"], ["t", "--token", "--lr", "1"]),
        (["t", "--password"], ["t", "--password"]),
        # values anywhere: URL credentials stripped, known tokens replaced
        (["t", "--db", "postgres://dbuser:DBPASS999@db/x"], ["t", "--db", "postgres://db/x"]),
        (["t", "ghp_" + "a" * 36], ["t", REDACTED]),
    ],
)
def test_redact_argv(argv, expected):
    assert redact_argv(argv) == expected


def test_flag_names():
    assert is_secret_flag("password") and is_secret_flag("DB_PASSWORD") and is_secret_flag("gh-pat")
    assert not is_secret_flag("epochs") and not is_secret_flag("tokenizer") and not is_secret_flag("monkey")


@pytest.mark.parametrize(
    "value",
    [
        "ghp_" + "A1" * 18,
        "gho_" + "x" * 36,
        "github_pat_" + "1" * 40,
        "glpat-" + "a" * 20,
        "hf_" + "Ab" * 17,
        "AKIA" + "ABCDEFGHIJKLMNOP",
        "xoxb-1234-5678-abcdefghij",
        "sk-" + "a" * 40,
        "Bearer ghp_" + "z" * 36,
        "https://user:tok@host/simple",
        "postgres://dbuser:DBPASS999@db/x",
        "https://oauth2token@github.com/x",
    ],
)
def test_secret_values(value):
    assert looks_secret_value(value)


@pytest.mark.parametrize(
    "value",
    [
        "sk-learn",
        "scikit-learn",
        "hf_home",
        "/data/hf_cache",
        "1e-3",
        "https://pypi.org/simple",
        "git@github.com:org/repo.git",
        "a@b.c",
    ],
)
def test_ordinary_values(value):
    assert not looks_secret_value(value)


def test_split_env_says_what_was_dropped():
    kept, dropped = split_env(
        {
            "EPOCHS": "3",
            "HF_TOKEN": "x",
            "DATABASE_URL": "postgres://dbuser:DBPASS999@db/x",
            "GH_PAT": "ghp_" + "a" * 36,
            "PIP_INDEX_URL": "https://user:tok@host/simple",
            "MODE": "fast",
        }
    )
    assert kept == {"EPOCHS": "3", "MODE": "fast"}
    assert dropped == [
        ("DATABASE_URL", "URL with credentials"),
        ("GH_PAT", "token-like value"),
        ("HF_TOKEN", "secret-looking name"),
        ("PIP_INDEX_URL", "URL with credentials"),
    ]


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("http://u:PASS@host:5000/x?y=1", "http://host:5000/x?y=1"),
        ("https://token@host", "https://host"),
        ("http://host:5000", "http://host:5000"),
        ("sqlite:////tmp/a@b/m.db", "sqlite:////tmp/a@b/m.db"),
        ("databricks", "databricks"),
        ("", ""),
    ],
)
def test_strip_url_credentials(uri, expected):
    assert strip_url_credentials(uri) == expected


@pytest.mark.parametrize(
    "name",
    [
        "HF_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "DB_PASSWORD",
        "DB_PASSWD",
        "my_api_key",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "BASIC_AUTH",
        "NGC_CREDS",
        "SESSION_ID",
    ],
)
def test_secret_names(name):
    assert is_secret(name)


def test_plain_names_are_not_secret():
    for name in ("BATCH_SIZE", "TF_DETERMINISTIC_OPS", "CUDA_VERSION", "NVIDIA_REQUIRE_CUDA", "CUDNN_VERSION"):
        assert not is_secret(name), name


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://user:pw@github.com/team/x.git", "https://github.com/team/x.git"),
        ("https://ghp_token@github.com/team/x.git", "https://github.com/team/x.git"),
        ("http://u:p@10.0.0.1:8080/x", "http://10.0.0.1:8080/x"),
        ("https://github.com/team/x.git", "https://github.com/team/x.git"),
        ("git@github.com:team/x.git", "git@github.com:team/x.git"),
        ("ssh://git@host:2222/team/x.git", "ssh://git@host:2222/team/x.git"),
        ("ssh://git:secret@host/team/x.git", "ssh://git@host/team/x.git"),
        ("https://u:p@ss@host/x?a=b@c", "https://host/x?a=b@c"),
        ("http://u:p@[::1/x", "http://[::1/x"),  # unparsable for urlsplit: stripped all the same
        ("/srv/git/x.git", "/srv/git/x.git"),
    ],
)
def test_git_remotes_keep_only_the_ssh_user(url, expected):
    assert strip_url_credentials(url, keep_user=True) == expected


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://user:pw@mlflow.example.com/", "https://mlflow.example.com/"),
        ("ssh://git:secret@host/x", "ssh://host/x"),
        ("sqlite:////srv/mlflow.db", "sqlite:////srv/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_tracking_uris_lose_all_user_info(url, expected):
    assert strip_url_credentials(url) == expected
