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


_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")


def _mlflow_state():
    """MLflow's process-wide choices (set_tracking_uri, set_experiment also export them to
    the environment for subprocesses), as far as MLflow has been imported."""
    import sys

    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    fluent = sys.modules.get("mlflow.tracking.fluent")
    return (
        getattr(utils, "_tracking_uri", None) if utils else None,
        getattr(fluent, "_active_experiment_id", None) if fluent else None,
        {name: os.environ.get(name) for name in _MLFLOW_ENV},
    )


def _restore_mlflow_state(state):
    import sys

    tracking_uri, experiment_id, environ = state
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if utils is not None and getattr(utils, "_tracking_uri", None) != tracking_uri:
        utils._tracking_uri = tracking_uri
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is not None and getattr(fluent, "_active_experiment_id", None) != experiment_id:
        fluent._active_experiment_id = experiment_id
    for name, value in environ.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True, scope="module")
def _mlflow_state_restored_per_module():
    """A module's fixtures may point MLflow at their server and experiment: the next module
    starts from what was there before."""
    state = _mlflow_state()
    yield
    _restore_mlflow_state(state)


@pytest.fixture(autouse=True)
def _mlflow_state_restored():
    """Whatever a test sets with mlflow.set_tracking_uri() or set_experiment(), the next test
    starts from what was there before."""
    state = _mlflow_state()
    yield
    _restore_mlflow_state(state)
