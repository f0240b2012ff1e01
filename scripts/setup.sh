#!/usr/bin/env bash
# Set up tfrepro on a fresh Debian/Ubuntu machine: Python 3.10 and 3.8 virtualenvs
# with TensorFlow 2.9, MLflow and tfrepro installed from this checkout. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {  # $1 = 3.10 or 3.8: a pyenv build, else one on PATH, else Debian's
  local v=$1 p
  for p in /root/.pyenv/versions/$v.*/bin/python$v "$HOME"/.pyenv/versions/$v.*/bin/python$v; do
    [ -x "$p" ] && { echo "$p"; return; }
  done
  if command -v "python$v" >/dev/null && "python$v" -c '' 2>/dev/null; then command -v "python$v"; return; fi
  return 1
}

apt_install() {
  command -v apt-get >/dev/null || return 0
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ -f /tmp/.tfrepro-apt-updated ] || { apt-get update -qq && touch /tmp/.tfrepro-apt-updated; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

apt_install git

make_venv() {  # $1 = venv dir, $2 = python version, $3 = tfrepro's extras
  local dir=$1 version=$2 extras=$3 python stamp
  stamp=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]; then return; fi
  python=$(find_python "$version") || { echo "setup: Python $version not found (TensorFlow 2.9 needs 3.7-3.10); install it with pyenv" >&2; exit 1; }
  echo "setup: $dir (Python $version, TensorFlow 2.9, MLflow)" >&2
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/pip" install -q --upgrade pip 2>/dev/null
  # numpy<1.24 in the same resolve: numpy 2 breaks `import tensorflow`, 1.24 removed aliases keras 2.9 uses
  if ! "$dir/bin/pip" install -q 'tensorflow==2.9.*' 'numpy>=1.20,<1.24' -e ".[$extras]" >"$dir/pip.log" 2>&1; then
    grep -v 'WARNING: Location' "$dir/pip.log" | tail -n 20 >&2
    echo "setup: pip install into $dir failed (log: $dir/pip.log)" >&2
    exit 1
  fi
  "$dir/bin/python" -c 'import tensorflow, mlflow, tfrepro' >/dev/null 2>&1 \
    || { echo "setup: $dir is broken (import tensorflow, mlflow, tfrepro failed)" >&2; exit 1; }
  echo "$stamp" > "$dir/.stamp"
}

make_venv .venv 3.10 test,dev,docs  # dev: the linters and mypy of scripts/lint.sh; docs: scripts/docs.sh
[ "${1:-}" = "--no-py38" ] || make_venv .venv38 3.8 test
