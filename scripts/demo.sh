#!/usr/bin/env bash
# The README's first command: set up, train the example with tfrepro.ReproCallback into a
# local MLflow store (sqlite:///$PWD/mlflow.db), show what was recorded, and replay the run
# when a Docker Engine is available. Idempotent: each call adds one run to the same store.
#   bash scripts/demo.sh [extra train.py args, e.g. --epochs 5]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --no-py38

export MLFLOW_TRACKING_URI="sqlite:///$PWD/mlflow.db"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"  # quiet TensorFlow's C++ banner
echo "demo: training examples/train.py, tracking to $MLFLOW_TRACKING_URI" >&2
out=$(.venv/bin/python examples/train.py --seed 0 "$@" | tee /dev/stderr)
run_id=$(printf '%s\n' "$out" | sed -n 's/^run_id: //p' | tail -n1)
[ -n "$run_id" ] && [ "$run_id" != "None" ] || { echo "demo: training printed no run id" >&2; exit 1; }

echo
echo "demo: run $run_id recorded:"
# LEAD: switch to `tfrepro show` when it lands: .venv/bin/tfrepro show "$run_id"
.venv/bin/python - "$run_id" <<'PY'
import sys
from mlflow.tracking import MlflowClient

run = MlflowClient().get_run(sys.argv[1])
for key, value in sorted(run.data.tags.items()):
    if key.startswith("tfrepro."):
        print("  %-28s %s" % (key, value))
print("  params: " + ", ".join("%s=%s" % kv for kv in sorted(run.data.params.items())))
print("  metrics: " + ", ".join("%s=%.4g" % kv for kv in sorted(run.data.metrics.items())))
PY

if docker info >/dev/null 2>&1; then
  echo
  echo "demo: replaying run $run_id in its container"
  # LEAD: replay placeholder, e.g. .venv/bin/tfrepro replay "$run_id"
  echo "demo: (replay not wired yet)" >&2
else
  echo
  echo "demo: no Docker Engine here (docker info failed): skipping the replay" >&2
fi
echo
echo "demo: browse the runs with: .venv/bin/mlflow ui --backend-store-uri $MLFLOW_TRACKING_URI"
