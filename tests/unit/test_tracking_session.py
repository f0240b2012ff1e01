"""What the callback asks of TrackingSession about the run itself (it calls no MLflow API)."""

import logging

from tfrepro import schema
from tfrepro.tracking.session import TrackingSession


class StubWriter:
    uploader = None

    def __init__(self, online):
        self.online = online


def session(started=True, online=True, fluent=True, run_start_time=None):
    return TrackingSession("r1", started, StubWriter(online), fluent, run_start_time)


def test_a_run_it_created_has_no_params_to_ask_for(monkeypatch):
    monkeypatch.delenv(schema.ENV_MLFLOW_RUN_ID, raising=False)
    assert session(started=True).run_params() == {}


def test_a_spooled_or_unattached_run_is_not_asked(monkeypatch):
    monkeypatch.setenv(schema.ENV_MLFLOW_RUN_ID, "r1")
    assert session(started=True, online=False).run_params() == {}
    assert session(started=False, fluent=False).run_params() == {}


def test_the_model_is_not_logged_while_the_server_is_down(caplog):
    with caplog.at_level(logging.WARNING, logger="tfrepro"):
        assert session(online=False).log_keras_model(object()) is None
    assert "tracking server unreachable; the model was not logged" in caplog.text


def test_the_model_is_not_logged_into_another_active_run(caplog):
    with caplog.at_level(logging.WARNING, logger="tfrepro"):
        assert session().log_keras_model(object()) is None  # no MLflow run is active here
    assert "another MLflow run is active" in caplog.text


def test_run_start_time_is_kept():
    assert session(run_start_time=12.5).run_start_time == 12.5
    assert session().run_start_time is None
