#!/usr/bin/env bash
# Refresh docs/mlflow-compare.png, the README's picture of MLflow's compare page, on purpose.
# The UI test takes it (tests/integration/test_ui_compare.py); on its own the test writes the
# picture into a temp dir, so running the suite never changes a tracked file.
# Needs scripts/setup.sh and scripts/ui-deps.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
export TFREPRO_SCREENSHOT="$PWD/docs/mlflow-compare.png"
# fail, not skip, when Chromium or Playwright is missing
TFREPRO_REQUIRE_DOCKER=1 .venv/bin/python -m pytest -q -p no:cacheprovider \
  tests/integration/test_ui_compare.py -k test_mlflow_ui_shows_the_environment
git status --short -- docs/mlflow-compare.png
echo "refresh-docs-screenshot: wrote $TFREPRO_SCREENSHOT"
