#!/usr/bin/env bash
# The README's test command. On a fresh Debian/Ubuntu machine (as root) it installs what the
# tests need, runs the static checks (scripts/lint.sh: ruff, import layers, mypy), starts
# dockerd and a registry on 127.0.0.1, builds the test image, then runs the whole suite under
# Python 3.10 (mlflow 3) and the py38-marked tests under Python 3.8 (mlflow 2.17, the NGC
# image's versions).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${CI:-}" = "true" ] && export TFREPRO_REQUIRE_DOCKER=1

bash scripts/setup.sh
bash scripts/lint.sh  # ruff, the import layers, mypy: seconds, so first
bash scripts/docs.sh --quiet --site-dir "$(mktemp -d)"  # the docs site, strictly: a broken link fails
bash scripts/ui-deps.sh
bash scripts/team-server.sh --install  # PostgreSQL 15: the team-server tests start throwaway clusters
if bash scripts/docker-up.sh && bash scripts/build-test-image.sh; then
  :
elif [ "${TFREPRO_REQUIRE_DOCKER:-}" = "1" ]; then
  echo "test: the Docker engine, registry or test image could not be set up" >&2
  exit 1
else
  echo "test: no Docker engine here; Docker tests will be skipped" >&2
fi
[ -f /tmp/tfrepro-docker.env ] && . /tmp/tfrepro-docker.env
# the cluster engines' tests: a one-node Slurm cluster and Podman (skipped without them locally)
if ! { bash scripts/slurm-up.sh && bash scripts/podman-up.sh; } && [ "${TFREPRO_REQUIRE_DOCKER:-}" = "1" ]; then
  echo "test: Slurm or Podman could not be set up" >&2
  exit 1
fi

.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
rc=0
.venv38/bin/python -m pytest -q -p no:cacheprovider -m py38 tests "$@" || rc=$?
[ "$rc" -eq 5 ] && rc=0  # no py38-marked test selected by "$@"
exit "$rc"
