"""experiments.resolve: a lost create race fetches the winner; anything else is an error."""

import pytest

from tfrepro.errors import TrackingError
from tfrepro.tracking import experiments
from tfrepro.tracking.backend import Rejected


class AlreadyExists(Exception):
    error_code = "RESOURCE_ALREADY_EXISTS"


def racing_store(winner_id="7", error=None):
    """get() sees nothing until another process's create lands; our create then fails."""
    state = {"created": False}

    def get(name):
        return winner_id if state["created"] else None

    def create(name):
        state["created"] = True  # the other process won just before us
        raise error or AlreadyExists("exists")

    return get, create


def test_existing_experiment_is_fetched_without_a_create():
    def create(name):
        raise AssertionError("no create for an existing experiment")

    assert experiments.resolve("x", lambda n: "3", create) == "3"


def test_new_experiment_is_created():
    assert experiments.resolve("x", lambda n: None, lambda n: 12) == "12"


@pytest.mark.parametrize(
    "error",
    [
        AlreadyExists("exists"),  # MlflowException from a SQL store
        Rejected('HTTP 400 from /api/2.0/mlflow/experiments/create: {"error_code": "RESOURCE_ALREADY_EXISTS"}'),
    ],
)
def test_a_lost_create_race_fetches_the_winner(error):
    get, create = racing_store("7", error)
    assert experiments.resolve("sweep", get, create) == "7"


def test_a_wrapped_lost_race_is_recognised():
    try:
        try:
            raise AlreadyExists("Experiment(name=sweep) already exists")
        except AlreadyExists as exc:
            raise Rejected("Experiment(name=sweep) already exists") from exc
    except Rejected as wrapped:
        assert experiments.lost_race(wrapped)
    assert not experiments.lost_race(Rejected("HTTP 400: INVALID_PARAMETER_VALUE"))


def test_other_create_errors_propagate():
    def create(name):
        raise Rejected("HTTP 400: INVALID_PARAMETER_VALUE")

    with pytest.raises(Rejected):
        experiments.resolve("x", lambda n: None, create)


def test_a_deleted_experiment_is_one_clear_error():
    with pytest.raises(TrackingError, match="deleted"):
        experiments.check_active("old", "deleted")
    experiments.check_active("live", "active")
