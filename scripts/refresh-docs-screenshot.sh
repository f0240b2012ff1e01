#!/usr/bin/env bash
# Refresh the docs' pictures of the MLflow UI, on purpose:
#   docs/mlflow-compare.png   MLflow's compare page (tests/integration/test_ui_compare.py)
#   docs/mlflow-runpage.png   a run's page with its card and replays table, after a real
#                             `tfrepro run` and `tfrepro replay` on Docker (tests/integration/test_ui_runpage.py)
# The UI tests take them; on their own they write the pictures into a temp dir, so running the
# suite never changes a tracked file. Needs scripts/setup.sh and scripts/ui-deps.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${TFREPRO_PYTHON:-.venv/bin/python}
export TFREPRO_SCREENSHOT="$PWD/docs/mlflow-compare.png"
export TFREPRO_RUNPAGE_SCREENSHOT="$PWD/docs/mlflow-runpage.png"
# fail, not skip, when Docker, Chromium or Playwright is missing
TFREPRO_REQUIRE_DOCKER=1 "$python" -m pytest -q -p no:cacheprovider \
  tests/integration/test_ui_compare.py -k test_mlflow_ui_shows_the_environment
TFREPRO_REQUIRE_DOCKER=1 "$python" -m pytest -q -p no:cacheprovider tests/integration/test_ui_runpage.py
git status --short -- docs/mlflow-compare.png docs/mlflow-runpage.png
echo "refresh-docs-screenshot: wrote $TFREPRO_SCREENSHOT and $TFREPRO_RUNPAGE_SCREENSHOT"
