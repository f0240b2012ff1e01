"""redact.py: secret-looking names and URL credentials."""
import pytest

from tfrepro.redact import is_secret, strip_url_credentials


@pytest.mark.parametrize("name", ["HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "DB_PASSWD", "my_api_key",
                                  "GOOGLE_APPLICATION_CREDENTIALS", "BASIC_AUTH", "NGC_CREDS", "SESSION_ID"])
def test_secret_names(name):
    assert is_secret(name)


def test_plain_names_are_not_secret():
    for name in ("BATCH_SIZE", "TF_DETERMINISTIC_OPS", "CUDA_VERSION", "NVIDIA_REQUIRE_CUDA", "CUDNN_VERSION"):
        assert not is_secret(name), name


@pytest.mark.parametrize("url, expected", [
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
])
def test_git_remotes_keep_only_the_ssh_user(url, expected):
    assert strip_url_credentials(url, keep_user=True) == expected


@pytest.mark.parametrize("url, expected", [
    ("https://user:pw@mlflow.example.com/", "https://mlflow.example.com/"),
    ("ssh://git:secret@host/x", "ssh://host/x"),
    ("sqlite:////srv/mlflow.db", "sqlite:////srv/mlflow.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
])
def test_tracking_uris_lose_all_user_info(url, expected):
    assert strip_url_credentials(url) == expected
