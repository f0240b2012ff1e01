"""Secret names, values, URL credentials and argv: one rule (tfrepro/redact.py)."""
import pytest

from tfrepro.redact import (REDACTED, is_secret_flag, looks_secret_value, redact_argv, split_env,
                            strip_url_credentials)

pytestmark = pytest.mark.py38


@pytest.mark.parametrize("argv, expected", [
    (["train.py", "--password=hunter2"], ["train.py", "--password=" + REDACTED]),
    (["train.py", "--api-key", "xyz", "--lr", "0.1"], ["train.py", "--api-key", REDACTED, "--lr", "0.1"]),
    (["t", "--apikey", "a", "--api_key=b", "--db-passwd", "c"], ["t", "--apikey", REDACTED, "--api_key=" + REDACTED, "--db-passwd", REDACTED]),
    (["t", "--token", "a", "--hf_token=b", "-secret", "c"], ["t", "--token", REDACTED, "--hf_token=" + REDACTED, "-secret", REDACTED]),
    (["t", "--key", "k", "--access-key=k2", "--credentials", "c", "--credential-file=x"],
     ["t", "--key", REDACTED, "--access-key=" + REDACTED, "--credentials", REDACTED, "--credential-file=" + REDACTED]),
    (["t", "--auth", "u:p", "--basic-auth=u:p"], ["t", "--auth", REDACTED, "--basic-auth=" + REDACTED]),
    # hyper-parameters that merely contain the words stay
    (["t", "--max-tokens", "512", "--key-dim", "64", "--author", "me", "--keys", "3"],
     ["t", "--max-tokens", "512", "--key-dim", "64", "--author", "me", "--keys", "3"]),
    # a secret flag followed by another flag: nothing to hide
    (["t", "--token", "--lr", "1"], ["t", "--token", "--lr", "1"]),
    (["t", "--password"], ["t", "--password"]),
    # values anywhere: URL credentials stripped, known tokens replaced
    (["t", "--db", "postgres://dbuser:DBPASS999@db/x"], ["t", "--db", "postgres://db/x"]),
    (["t", "ghp_" + "a" * 36], ["t", REDACTED]),
])
def test_redact_argv(argv, expected):
    assert redact_argv(argv) == expected


def test_flag_names():
    assert is_secret_flag("password") and is_secret_flag("DB_PASSWORD") and is_secret_flag("gh-pat")
    assert not is_secret_flag("epochs") and not is_secret_flag("tokenizer") and not is_secret_flag("monkey")


@pytest.mark.parametrize("value", [
    "ghp_" + "A1" * 18, "gho_" + "x" * 36, "github_pat_" + "1" * 40, "glpat-" + "a" * 20, "hf_" + "Ab" * 17,
    "AKIA" + "ABCDEFGHIJKLMNOP", "xoxb-1234-5678-abcdefghij", "sk-" + "a" * 40, "Bearer ghp_" + "z" * 36,
    "https://user:tok@host/simple", "postgres://dbuser:DBPASS999@db/x", "https://oauth2token@github.com/x",
])
def test_secret_values(value):
    assert looks_secret_value(value)


@pytest.mark.parametrize("value", ["sk-learn", "scikit-learn", "hf_home", "/data/hf_cache", "1e-3",
                                   "https://pypi.org/simple", "git@github.com:org/repo.git", "a@b.c"])
def test_ordinary_values(value):
    assert not looks_secret_value(value)


def test_split_env_says_what_was_dropped():
    kept, dropped = split_env({
        "EPOCHS": "3", "HF_TOKEN": "x", "DATABASE_URL": "postgres://dbuser:DBPASS999@db/x",
        "GH_PAT": "ghp_" + "a" * 36, "PIP_INDEX_URL": "https://user:tok@host/simple", "MODE": "fast",
    })
    assert kept == {"EPOCHS": "3", "MODE": "fast"}
    assert dropped == [("DATABASE_URL", "URL with credentials"), ("GH_PAT", "token-like value"),
                       ("HF_TOKEN", "secret-looking name"), ("PIP_INDEX_URL", "URL with credentials")]


@pytest.mark.parametrize("uri, expected", [
    ("http://u:PASS@host:5000/x?y=1", "http://host:5000/x?y=1"),
    ("https://token@host", "https://host"),
    ("http://host:5000", "http://host:5000"),
    ("sqlite:////tmp/a@b/m.db", "sqlite:////tmp/a@b/m.db"),
    ("databricks", "databricks"),
    ("", ""),
])
def test_strip_url_credentials(uri, expected):
    assert strip_url_credentials(uri) == expected
