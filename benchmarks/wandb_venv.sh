#!/usr/bin/env bash
# A side venv with W&B for the comparison rows of fixed_cost.py (issue 21).
# wandb's current releases need a newer protobuf than TensorFlow 2.9's 3.19, so this pins
# wandb 0.17.9 (the last with protobuf-3 code that this index serves whole) and reuses .venv's
# packages through a .pth file. docker-pycreds is not on this index: a two-line stub stands in
# (wandb imports it only for Docker credential helpers, which an offline run never calls).
# Usage: bash benchmarks/wandb_venv.sh [DIR]  (default /tmp/tfrepro-wandb-venv), then
#   PYTHONPATH=$PWD:$PWD/mlflow_plugin DIR/bin/python benchmarks/fixed_cost.py
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/tfrepro-wandb-venv}
py=$(pyenv root)/versions/3.10.13/bin/python3.10
[ -x "$dir/bin/python" ] || "$py" -m venv "$dir"
site=$("$dir/bin/python" -c 'import site; print(site.getsitepackages()[0])')
.venv/bin/python -c 'import site; print(site.getsitepackages()[0])' >"$site/zz_tfrepro_venv.pth"
"$dir/bin/pip" install -q --no-deps wandb==0.17.9 psutil sentry-sdk setproctitle platformdirs
mkdir -p "$site/dockerpycreds"
echo "# stub: see benchmarks/wandb_venv.sh" >"$site/dockerpycreds/__init__.py"
echo "from shutil import which as find_executable  # noqa: F401" >"$site/dockerpycreds/utils.py"
WANDB_MODE=offline "$dir/bin/python" -c 'from wandb.integration.keras import WandbMetricsLogger' 2>/dev/null
echo "wandb_venv: $dir/bin/python (wandb 0.17.9 offline, with .venv's TensorFlow and MLflow)"
