"""The test session's setup: the shared fixtures come from tests/helpers (registered below as
plugins, so every test module sees them without importing them), plus the hooks that apply
to every test."""

import os

import pytest

# helpers assert too (one_error, ...): show their failures as pytest shows a test's
pytest.register_assert_rewrite("tests.helpers")

pytest_plugins = [
    "tests.helpers.mlflow_server",
    "tests.helpers.git_repos",
    "tests.helpers.records",
    "tests.helpers.docker_fixtures",
    "tests.helpers.cluster_fixtures",
    "tests.helpers.browser",
]


def pytest_collection_modifyitems(config, items):
    """Unit tests are pure and cheap: run all of them under Python 3.8 too (`-m py38`)."""
    for item in items:
        if "/tests/unit/" in str(item.fspath):
            item.add_marker(pytest.mark.py38)


@pytest.fixture(autouse=True)
def _spool_in_tmp(tmp_path, monkeypatch):
    """Keep every test's outage spool out of ~/.cache (tests that need one set their own)."""
    if "TFREPRO_SPOOL_DIR" not in os.environ:
        monkeypatch.setenv("TFREPRO_SPOOL_DIR", str(tmp_path / "spool"))


@pytest.fixture(autouse=True)
def _mlflow_tracking_uri_restored():
    """mlflow.set_tracking_uri() is process-wide (and sets $MLFLOW_TRACKING_URI): whatever a
    test sets, the next test starts from what was there before."""
    import sys

    before_env = os.environ.get("MLFLOW_TRACKING_URI")
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    before = getattr(utils, "_tracking_uri", None) if utils else None
    yield
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if utils is not None and getattr(utils, "_tracking_uri", None) != before:
        utils._tracking_uri = before
    if os.environ.get("MLFLOW_TRACKING_URI") != before_env:
        if before_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before_env
