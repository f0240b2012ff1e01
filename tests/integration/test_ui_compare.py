"""The environment is comparable in the real MLflow UI, with no extra step.

A real `mlflow server`, two runs logged the way tfrepro logs them (tags from to_tags() plus
tfrepro/environment.json), and MLflow's own compare page in headless Chromium (Debian's
package, driven by Playwright). Takes a picture of the compare page into a temp dir, or into
$TFREPRO_SCREENSHOT (scripts/refresh-docs-screenshot.sh: the README's docs/mlflow-compare.png).
Needs scripts/ui-deps.sh; the browser is tests/helpers/browser.py's.
"""

import json
import os
from urllib.parse import urlencode

import pytest

from tests.helpers.inspect_envs import DIGEST_A, DIGEST_B, PACKAGES_A, PACKAGES_B, make_env

pytestmark = pytest.mark.slow


def _log_runs(experiment_name):
    """Two runs logged as tfrepro logs them: start_run, to_tags(), tfrepro/environment.json."""
    import mlflow

    experiment = mlflow.set_experiment(experiment_name)
    envs = {"ngc-a": make_env(), "ngc-b": make_env(digest=DIGEST_B, packages=PACKAGES_B)}
    ids = {}
    for name, env in envs.items():
        with mlflow.start_run(run_name=name) as run:
            mlflow.set_tags(env.to_tags())
            mlflow.log_text(env.to_json(), "tfrepro/environment.json")
            mlflow.log_param("epochs", 2)
            mlflow.log_metric("loss", 0.34 if name == "ngc-a" else 0.35)
            ids[name] = run.info.run_id
    return experiment.experiment_id, ids, envs


def _close_assistant(page):
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()


def test_mlflow_ui_shows_the_environment(tracking_uri, browser_page, tmp_path):
    experiment_id, ids, envs = _log_runs("ui-compare")
    assert PACKAGES_A != PACKAGES_B and envs["ngc-a"].to_tags()["tfrepro.image.digest"] == DIGEST_A
    page = browser_page

    # 1. MLflow's compare page (route getCompareRunPageRoute): /#/compare-runs?runs=[..]&experiments=[..]
    page.goto(
        "%s/#/compare-runs?runs=%s&experiments=%s"
        % (tracking_uri, json.dumps([ids["ngc-a"], ids["ngc-b"]]), json.dumps([experiment_id]))
    )
    digest_row = page.get_by_text("tfrepro.image.digest", exact=True).first
    digest_row.wait_for(timeout=60000)
    page.get_by_text(DIGEST_B).first.wait_for(state="attached", timeout=30000)
    text = page.inner_text("body")
    for key in (
        "tfrepro.image.digest",
        "tfrepro.image.ref",
        "tfrepro.git.commit",
        "tfrepro.gpu.name",
        "tfrepro.gpu.driver",
        "tfrepro.cuda.build",
        "tfrepro.tf.version",
        "tfrepro.tf.determinism",
    ):
        assert key in text, key
    assert DIGEST_A in text and DIGEST_B in text
    # package versions differ too: key packages are tags of their own
    numpy_a, numpy_b = (envs[n].to_tags()["tfrepro.pkg.numpy"] for n in ("ngc-a", "ngc-b"))
    assert numpy_a != numpy_b and "tfrepro.pkg.numpy" in text and numpy_a in text and numpy_b in text
    assert "tfrepro.python.lock" in text
    assert "NVIDIA H200" in text and "580.159.04" in text
    _close_assistant(page)
    tags_diff_only = page.get_by_text("Show diff only").last  # the Tags section's switch
    tags_diff_only.scroll_into_view_if_needed()
    tags_diff_only.click()  # the screenshot shows just the tags that differ
    page.get_by_text("tfrepro.pkg.numpy", exact=True).first.wait_for(timeout=30000)
    page.get_by_text("Tags", exact=True).last.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)  # let the table settle before the screenshot
    screenshot = os.environ.get("TFREPRO_SCREENSHOT") or str(tmp_path / "mlflow-compare.png")
    page.screenshot(path=screenshot)
    with open(screenshot, "rb") as picture:
        assert picture.read(8) == b"\x89PNG\r\n\x1a\n"

    # 2. The run page: the commit shows under Source (from mlflow.source.git.commit).
    page.goto("%s/#/experiments/%s/runs/%s" % (tracking_uri, experiment_id, ids["ngc-a"]))
    page.get_by_text(envs["ngc-a"].git.commit[:7]).first.wait_for(state="attached", timeout=60000)

    # 3. The run table filters on the tags: only the run with image B matches.
    search = "tags.`tfrepro.image.digest` = '%s'" % DIGEST_B
    page.goto("%s/#/experiments/%s/runs?%s" % (tracking_uri, experiment_id, urlencode({"searchFilter": search})))
    page.get_by_text("1 matching run").first.wait_for(state="attached", timeout=60000)
    page.get_by_text("ngc-b").first.wait_for(state="attached", timeout=30000)
    text = page.inner_text("body")
    assert "ngc-b" in text and "ngc-a" not in text
