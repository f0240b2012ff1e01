"""What a replaying user grants: env values, mounts, images (replay/grants.py)."""

import pytest

from tfrepro.errors import UsageError
from tfrepro.launch import env_options
from tfrepro.replay import grants as G

ENVIRON = {"HF_TOKEN": "FAKE-hf", "DATABASE_URL": "postgres://dbuser:DBPASS999@db/x", "HOME": "/root"}


def test_nothing_from_the_replayers_environment_unless_named():
    recorded = {"EPOCHS": "3", "HF_TOKEN": None, "DATABASE_URL": None, "API_KEY": "recorded-by-attacker"}
    grant = G.replay_env(recorded, {}, ())
    assert grant.env == {"EPOCHS": "3"}
    assert grant.needs_pass_env == ("API_KEY", "DATABASE_URL", "HF_TOKEN")
    given, passed = env_options.parse_env_options(["MODE=fast"], ["HF_TOKEN"], ENVIRON)
    grant = G.replay_env(recorded, given, passed)
    assert grant.env == {"EPOCHS": "3", "HF_TOKEN": "FAKE-hf", "MODE": "fast"}
    assert grant.passed == ("HF_TOKEN",) and grant.needs_pass_env == ("API_KEY", "DATABASE_URL")


def test_the_record_may_not_steer_credentials():
    recorded = {
        "MLFLOW_TRACKING_URI": "http://evil",
        "HTTPS_PROXY": "http://evil:3128",
        "https_proxy": "x",
        "REQUESTS_CA_BUNDLE": "/workspace/ca.pem",
        "TFREPRO_SEED": "1",
        "OK": "1",
    }
    grant = G.replay_env(recorded, {}, ())
    assert grant.env == {"OK": "1"} and len(grant.ignored) == 5


def test_env_options():
    assert env_options.parse_env_options(["A=1", "HF_TOKEN"], [], ENVIRON) == (
        {"A": "1", "HF_TOKEN": "FAKE-hf"},
        ("HF_TOKEN",),
    )
    for items, pass_env in ((["1A=x"], []), ([], ["NOT_SET_ANYWHERE"]), ([], ["A=1"])):
        with pytest.raises(UsageError):
            env_options.parse_env_options(items, pass_env, ENVIRON)


def offer(src, dst="/data", refusal=None, ro=True):
    return G.MountOffer(src, dst, ro, src, refusal)


def test_mounts_are_offered_not_imposed():
    data, models, bad = offer("/srv/data"), offer("/srv/models", "/models", ro=False), offer("/", "/host", "is root")
    offers = [data, models, bad]
    assert G.approved_mounts(offers, [], yes=True, allow_recorded=False) == ([], offers)
    assert G.approved_mounts(offers, [], yes=True, allow_recorded=True) == ([data, models], [bad])
    assert G.approved_mounts(offers, [("/srv/data", "/data")], yes=True, allow_recorded=False) == (
        [data],
        [models, bad],
    )
    asked = []
    mounted, left = G.approved_mounts(
        offers,
        [],
        yes=False,
        allow_recorded=False,
        confirm=lambda o: asked.append(o.source) or o.source == "/srv/models",
    )
    assert mounted == [models] and asked == ["/srv/data", "/srv/models"]  # never asked about a refused one


@pytest.mark.parametrize(
    "repo, reg",
    [
        ("nvcr.io/nvidia/tensorflow", "nvcr.io"),
        ("tensorflow/tensorflow", "docker.io"),
        ("ubuntu", "docker.io"),
        ("127.0.0.1:5555/tfrepro/test", "127.0.0.1:5555"),
        ("localhost/x", "localhost"),
    ],
)
def test_registry(repo, reg):
    assert G.registry(repo) == reg


def test_image_concerns():
    digest = "127.0.0.1:5555/tfrepro/test@sha256:" + "a" * 64
    assert G.image_concerns(digest, "127.0.0.1:5555/tfrepro/test:latest", None) == []
    assert G.image_concerns(digest, "127.0.0.1:5555/tfrepro/test:latest", ("127.0.0.1:5555",)) == []
    evil = "evil.example.com/tfrepro/test@sha256:" + "a" * 64
    concerns = G.image_concerns(evil, "127.0.0.1:5555/tfrepro/test:latest", ("127.0.0.1:5555", "nvcr.io"))
    assert len(concerns) == 2 and "evil.example.com/tfrepro/test" in concerns[0]
    assert "not in TFREPRO_TRUSTED_REGISTRIES" in concerns[1]
    assert G.trusted_registries({"TFREPRO_TRUSTED_REGISTRIES": "nvcr.io, 127.0.0.1:5555"}) == (
        "nvcr.io",
        "127.0.0.1:5555",
    )
    assert G.trusted_registries({}) is None
    assert G.image_concerns("sha256:" + "a" * 64, "x:1", ("nvcr.io",)) == []  # host-only: a local image id
