#!/usr/bin/env bash
# Installs what the MLflow UI test needs: Debian's chromium and the Python `playwright` package.
# Idempotent. Never runs `playwright install`: the test drives /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
fi

if ! "$VENV/bin/python" -c "import playwright" >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip install -q "playwright>=1.40"
fi

chromium --version
"$VENV/bin/python" -c "import playwright, importlib.metadata as m; print('playwright', m.version('playwright'))"
