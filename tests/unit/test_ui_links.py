"""tracking/ui.py: MLflow UI addresses, for http(s) tracking servers only, never with credentials."""

import json
from urllib.parse import unquote

import pytest

from tfrepro import markdown as md
from tfrepro.tracking import ui

RUN_A = "0123456789abcdef0123456789abcdef"
RUN_B = "fedcba9876543210fedcba9876543210"


@pytest.mark.parametrize(
    "uri, base",
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("http://127.0.0.1:5000/", "http://127.0.0.1:5000"),
        ("HTTPS://mlflow.example.com/team/", "https://mlflow.example.com/team"),
        ("https://alice:s3cret@mlflow.example.com:8443/", "https://mlflow.example.com:8443"),
        ("https://ghp_abcdefghijklmnop@mlflow.example.com", "https://mlflow.example.com"),
        ("http://h:5000/?token=x#frag", "http://h:5000"),
    ],
)
def test_base_url(uri, base):
    assert ui.base_url(uri) == base


@pytest.mark.parametrize(
    "uri",
    [
        None,
        "",
        "sqlite:///mlflow.db",
        "file:///tmp/mlruns",
        "/tmp/mlruns",
        "databricks",
        "postgresql://u:p@h/db",
        "http://",
        "http://h:notaport/",
        "http://h/a b",
        "http://h/)(x",
        "javascript:alert(1)",
    ],
)
def test_no_ui_for_other_stores(uri):
    assert ui.base_url(uri) is None
    assert ui.run_url(uri, "1", RUN_A) is None


def test_run_page_and_artifact():
    assert ui.run_url("http://h:5000", "1", RUN_A) == "http://h:5000/#/experiments/1/runs/" + RUN_A
    assert (
        ui.artifact_url("http://u:p@h:5000/", "1", RUN_A, "tfrepro/replay.md")
        == "http://h:5000/#/experiments/1/runs/%s/artifacts/tfrepro/replay.md" % RUN_A
    )
    assert ui.artifact_url("http://h", "1", RUN_A, "../x") is None


def test_compare_page_carries_json_lists_encoded():
    url = ui.compare_url("http://h:5000", [RUN_A, RUN_B, RUN_A], ["2", "1", "2"])
    base, _, query = url.partition("/#/compare-runs?")
    assert base == "http://h:5000"
    runs, experiments = (unquote(part.split("=", 1)[1]) for part in query.split("&"))
    assert json.loads(runs) == [RUN_A, RUN_B]
    assert json.loads(experiments) == ["1", "2"]
    assert md.is_safe_url(url)  # nothing in it can end a markdown link
    assert ui.compare_url("http://h", [RUN_A], ["1"]) is None


def test_model_pages():
    assert (
        ui.logged_model_url("http://h", "3", "m-0123abcd0123abcd")
        == "http://h/#/experiments/3/models/m-0123abcd0123abcd"
    )
    assert ui.model_version_url("http://h", "my model/x", 4) == "http://h/#/models/my%20model%2Fx/versions/4"
    assert ui.model_version_url("http://h", "m", "latest") is None


@pytest.mark.parametrize("bad", ["", "1/../2", "a b", "x)", "<img>", None, 7])
def test_untrusted_ids_give_no_link(bad):
    assert ui.run_url("http://h", bad, RUN_A) is None
    assert ui.run_url("http://h", "1", bad) is None
    assert ui.compare_url("http://h", [RUN_A, bad], ["1"]) is None
    assert ui.logged_model_url("http://h", "1", bad) is None


def test_every_url_is_a_safe_markdown_link_target():
    for url in (
        ui.run_url("https://h:1/p", "1", RUN_A),
        ui.compare_url("https://h:1/p", [RUN_A, RUN_B], ["1"]),
        ui.model_version_url("https://h", "n(a)m'e", 1),
    ):
        assert md.is_safe_url(url), url
