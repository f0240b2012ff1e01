"""ReproCallback(experiment_name=...) inside a launcher's run (MLFLOW_RUN_ID, as `tfrepro run`
sets it): the run stays in the launcher's experiment, the callback warns and records what was
asked, and `tfrepro show` and the launcher say where the run went. Real `mlflow server`, real fit()."""

import logging
import uuid

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.py38]

tf = pytest.importorskip("tensorflow")
mlflow = pytest.importorskip("mlflow")

from tfrepro.callback import ReproCallback  # noqa: E402
from tfrepro.cli import main  # noqa: E402
from tfrepro.tracking.launched import REQUESTED_TAG, where_the_run_went  # noqa: E402


def fit_under_launcher(client, monkeypatch, tmp_path, launcher_experiment, requested):
    experiment_id = client.create_experiment(launcher_experiment)
    run_id = client.create_run(experiment_id).info.run_id  # what `tfrepro run` creates first
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
    monkeypatch.setenv("TFREPRO_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.chdir(tmp_path)
    x = np.random.RandomState(0).rand(32, 4).astype("float32")
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(4,))])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(
        x, x.sum(axis=1), epochs=1, verbose=0, callbacks=[ReproCallback(experiment_name=requested, log_model=False)]
    )
    return experiment_id, run_id


def test_other_experiment_name_is_reported_not_silently_dropped(tracking_uri, monkeypatch, tmp_path, caplog, capsys):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    suffix = uuid.uuid4().hex[:8]
    launcher, requested = "launcher-" + suffix, "digits-" + suffix
    with caplog.at_level(logging.WARNING, logger="tfrepro"):
        experiment_id, run_id = fit_under_launcher(client, monkeypatch, tmp_path, launcher, requested)
    assert "experiment_name=%r is not used" % requested in caplog.text
    assert "tfrepro run --experiment %s" % requested in caplog.text
    run = client.get_run(run_id)
    assert run.info.experiment_id == experiment_id and run.data.metrics  # resumed, logged
    assert run.data.tags[REQUESTED_TAG] == requested
    assert client.get_experiment_by_name(requested) is None  # nothing went elsewhere

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tfrepro"):  # the launcher logs it; the CLI shows it on stderr
        where_the_run_went(client, run_id, experiment_id)
    err = caplog.text
    assert "run %s is in experiment %r (id %s)" % (run_id, launcher, experiment_id) in err
    assert "the script asked for experiment %r" % requested in err and "--experiment %s" % requested in err

    assert main(["show", run_id, "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    assert "experiment             %s (id %s)" % (launcher, experiment_id) in out
    assert "asked for              %s (by the script; not used under tfrepro run)" % requested in out
    assert "to put it there        tfrepro run --experiment %s ..." % requested in out
    assert main(["show", run_id, "--json", "--tracking-uri", tracking_uri]) == 0
    assert '"experiment_name": "%s"' % launcher in capsys.readouterr().out


def test_same_experiment_name_is_quiet(tracking_uri, monkeypatch, tmp_path, caplog, capsys):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    name = "same-" + uuid.uuid4().hex[:8]
    with caplog.at_level(logging.WARNING, logger="tfrepro"):
        experiment_id, run_id = fit_under_launcher(client, monkeypatch, tmp_path, name, name)
    assert "is not used" not in caplog.text
    assert REQUESTED_TAG not in client.get_run(run_id).data.tags
    capsys.readouterr()
    where_the_run_went(client, run_id, experiment_id)
    assert "warning" not in capsys.readouterr().err


def test_a_script_that_set_another_experiment_still_resumes_the_launchers_run(
    tracking_uri, monkeypatch, tmp_path, caplog
):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    suffix = uuid.uuid4().hex[:8]
    mlflow.set_experiment("elsewhere-" + suffix)  # the script's own call, before fit()
    with caplog.at_level(logging.WARNING, logger="tfrepro"):
        experiment_id, run_id = fit_under_launcher(client, monkeypatch, tmp_path, "launcher-" + suffix, None)
    assert "unreachable" not in caplog.text
    run = client.get_run(run_id)
    assert run.info.experiment_id == experiment_id and run.data.metrics  # resumed, logged
