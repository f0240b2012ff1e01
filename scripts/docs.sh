#!/usr/bin/env bash
# Build the docs site strictly, as CI does: a broken link, anchor or include, a missing
# docstring target or a generated table that disagrees with the code fails the build.
# Needs the docs tools: pip install -e '.[docs]'. To read the docs while writing them:
#   .venv/bin/mkdocs serve        # http://127.0.0.1:8000, rebuilt on every save
#   bash scripts/docs.sh [mkdocs build options, e.g. --site-dir /tmp/site]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${TFREPRO_PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
"$python" -c 'import mkdocs, material, mkdocs_click, mkdocstrings_handlers.python' 2>/dev/null \
  || { echo "docs: the docs tools are missing: $python -m pip install -e '.[docs]'" >&2; exit 1; }
export NO_MKDOCS_2_WARNING=1  # Material's banner about MkDocs 2, on every build
exec "$python" -m mkdocs build --strict "$@"
