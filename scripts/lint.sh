#!/usr/bin/env bash
# The static checks CI runs before the tests (scripts/test.sh calls this first): ruff's lint and
# format check, the import-linter layer contract (when pyproject.toml has one), and mypy on
# tfrepro/ against .mypy-baseline.txt (no new error passes). Runs every check, then fails if any
# failed. Tools come from .venv (scripts/setup.sh installs the `dev` extra there); VENV=DIR
# picks another virtualenv, and without one they are taken from PATH.
set -uo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
if [ -x "$venv/bin/python" ]; then
  PATH="$(cd "$venv" && pwd)/bin:$PATH"
fi
# check this checkout's code, not an installed copy of it
export PYTHONPATH="$PWD:$PWD/mlflow_plugin${PYTHONPATH:+:$PYTHONPATH}"

failed=()
check() {  # $1 = name, then the command
  local name=$1 start=$SECONDS
  shift
  echo "lint: $name"
  if "$@"; then
    echo "lint: $name: ok ($((SECONDS - start))s)"
  else
    echo "lint: $name: FAILED ($((SECONDS - start))s)"
    failed+=("$name")
  fi
}

mypy_against_baseline() {
  local out
  out=$(mypy 2>&1)  # exit 1 on any error: the baseline decides
  printf '%s\n' "$out" | python3 scripts/mypy_baseline.py
}

check "ruff check" ruff check .
check "ruff format" ruff format --check .
if grep -q '^\[tool\.importlinter\]' pyproject.toml; then
  check "import layers" lint-imports
fi
check "mypy (baseline)" mypy_against_baseline

if [ ${#failed[@]} -gt 0 ]; then
  echo "lint: failed: ${failed[*]}" >&2
  exit 1
fi
