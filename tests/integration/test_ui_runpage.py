"""What a team sees in the real MLflow UI after a real `tfrepro run` and a real `tfrepro replay`
(issue 20): the original's run page shows its card (the full image digest and commit), the
verdict and a link that opens the replay; the replay's page links back to the original; the
compare link opens MLflow's compare page with both runs; on MLflow 3 a logged model with the
params the callback gives it shows the digest on its page.

Real everything: dockerd, the local registry, the test image, an `mlflow server`, git, and
Debian's Chromium driven by Playwright. Takes a picture of the original's run page into a temp
dir, or into $TFREPRO_RUNPAGE_SCREENSHOT (scripts/refresh-docs-screenshot.sh:
docs/mlflow-runpage.png).
"""

import os
import uuid

import pytest

from tests.helpers.browser import close_assistant
from tests.helpers.git_repos import git, make_repo
from tfrepro import schema
from tfrepro.cli import main
from tfrepro.tracking import card

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FIT = """\
import numpy as np
import tensorflow as tf

x = np.random.rand(256, 4).astype("float32")
y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")
model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(4,))])
model.compile(optimizer=tf.keras.optimizers.Adam(0.05), loss="mse", metrics=["mae"])
model.fit(x, y, epochs=5, batch_size=32, verbose=0)
"""
WAIT = 60000  # ms: the UI's first load fetches a large bundle


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("runpage") / "repo", {"fit.py": FIT}, message="fit")


def _cli(repo, argv, capsys):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _href(page, fragment):
    """The address of the first link whose address contains `fragment` (waited for)."""
    link = page.locator('a[href*="%s"]' % fragment).first
    link.wait_for(state="attached", timeout=WAIT)
    return link.get_attribute("href")


def _logged_model(client, experiment_id, run_id):
    """MLflow 3: a logged model from the run with the params the callback gives it (the test
    image's client is MLflow 2.17, which logs no logged model); None on MLflow 2."""
    if not hasattr(client, "create_logged_model"):
        return None
    from tfrepro.tracking import facts
    from tfrepro.tracking import record as run_record

    record = run_record.load(client, run_id)
    params = facts.model_params(record.environment, record.tags.get(schema.MODEL_HASH))
    model = client.create_logged_model(experiment_id, name="model", source_run_id=run_id, params=params)
    client.finalize_logged_model(model.model_id, "READY")
    return model.model_id


def test_the_run_page_shows_the_card_the_verdict_and_links_both_ways(
    repo, test_image, mlflow_server, client, capsys, docker_cleanup, browser_page, tmp_path
):
    uri = mlflow_server.uri.rstrip("/")
    experiment = "runpage-" + uuid.uuid4().hex[:8]
    argv = ["run", "--image", test_image.ref, "--gpus", "none", "--seed", "3", "--experiment", experiment]
    code, out, err = _cli(repo, argv + ["--tracking-uri", uri, "--run-name", "fit", "--", "python", "fit.py"], capsys)
    assert code == 0, err
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (original_run,) = client.search_runs([experiment_id])
    original = original_run.info.run_id
    commit = git(repo, "rev-parse", "HEAD")

    code, out, err = _cli(repo, ["replay", original, "--yes", "--gpus", "none", "--tracking-uri", uri], capsys)
    assert code in (0, 1), err
    tags = client.get_run(original).data.tags
    replay_id = tags[schema.REPLAYED_BY]
    replay_tags = client.get_run(replay_id).data.tags
    verdict = replay_tags[schema.REPLAY_VERDICT]
    # the terminal names the pages; MLflow's own tags fill its Source field and nest the replay
    assert "in the MLflow UI:" in out and "/#/compare-runs?runs=" in out
    assert "%s/#/experiments/%s/runs/%s" % (uri, experiment_id, replay_id) in out
    assert tags[schema.MLFLOW_SOURCE_NAME] == replay_tags[schema.MLFLOW_SOURCE_NAME] == "fit.py"
    assert replay_tags[schema.MLFLOW_PARENT_RUN_ID] == original
    card_body = card.find_block(tags[schema.MLFLOW_NOTE], schema.CARD_BLOCK)
    assert card_body and "docker" in card_body, tags[schema.MLFLOW_NOTE]
    assert client.download_artifacts(replay_id, schema.REPLAY_MD)

    page = browser_page
    # 1. The original's page: its card (full digest and commit), the verdict, a link to the replay.
    page.goto("%s/#/experiments/%s/runs/%s" % (uri, experiment_id, original))
    page.get_by_text(test_image.digest_ref).first.wait_for(state="attached", timeout=WAIT)
    close_assistant(page)
    show_more = page.get_by_text("Show more", exact=True)
    if show_more.count():
        show_more.first.click()  # the whole description: card and replays table
    page.get_by_text("Replays", exact=True).first.wait_for(state="attached", timeout=WAIT)
    text = page.inner_text("body")
    assert test_image.digest_ref in text and commit in text
    assert verdict in text
    replay_href = _href(page, "/runs/%s" % replay_id)
    page.wait_for_timeout(1000)  # let the page settle before the picture
    screenshot = os.environ.get("TFREPRO_RUNPAGE_SCREENSHOT") or str(tmp_path / "mlflow-runpage.png")
    page.screenshot(path=screenshot)
    with open(screenshot, "rb") as picture:
        assert picture.read(8) == b"\x89PNG\r\n\x1a\n"

    # 2. The link opens the replay, whose page says what it replayed and links back.
    page.goto(replay_href)
    page.get_by_text("Replay of").first.wait_for(state="attached", timeout=WAIT)
    assert replay_id in page.url
    back = _href(page, "/runs/%s" % original)
    assert back == "%s/#/experiments/%s/runs/%s" % (uri, experiment_id, original)
    compare = _href(page, "compare-runs")

    # 3. The compare link opens MLflow's compare page with both runs.
    page.goto(compare)
    page.get_by_text("replay-of-fit").first.wait_for(state="attached", timeout=WAIT)
    for run_id in (original, replay_id):
        _href(page, "/runs/%s" % run_id)  # each run's column links to its page

    # 4. MLflow 3: the logged model's page shows where it was made.
    model_id = _logged_model(client, experiment_id, original)
    if model_id is not None:
        page.goto("%s/#/experiments/%s/models/%s" % (uri, experiment_id, model_id))
        page.get_by_text(test_image.digest_ref).first.wait_for(state="attached", timeout=WAIT)
