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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
.venv/bin/python examples/train.py --seed 0 "$@" | tee "$log"
run_id=$(sed -n 's/^run_id: //p' "$log" | tail -n1)
[ -n "$run_id" ] && [ "$run_id" != "None" ] || { echo "demo: training printed no run id" >&2; exit 1; }

echo
echo "demo: run $run_id recorded:"
.venv/bin/tfrepro show "$run_id"

# Replay needs a run made in a container by digest: with a Docker Engine here, train the
# same example with `tfrepro run` in the local test image, then replay it and verify.
if ! command -v dockerd >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
  echo
  echo "demo: no Docker Engine here: skipping the replay (bash scripts/docker-up.sh installs one)" >&2
  echo "demo: browse the runs with: .venv/bin/mlflow ui --backend-store-uri $MLFLOW_TRACKING_URI"
  exit 0
fi
echo
echo "demo: Docker found: building the test image, then run + replay in it" >&2
bash scripts/docker-up.sh >/dev/null
bash scripts/build-test-image.sh >/dev/null
. /tmp/tfrepro-docker.env
# The container's MLflow client may be older than this store's schema: serve the same
# sqlite store over HTTP on loopback (the container uses the host network).
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
.venv/bin/mlflow server --backend-store-uri "$MLFLOW_TRACKING_URI" --artifacts-destination "$PWD/mlartifacts" \
  --host 127.0.0.1 --port "$port" --workers 1 >/tmp/tfrepro-demo-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
export MLFLOW_TRACKING_URI="http://127.0.0.1:$port"
.venv/bin/tfrepro run --image "$TFREPRO_TEST_IMAGE" --gpus none --experiment tfrepro-demo-docker \
  -- python examples/train.py --epochs 2 --experiment tfrepro-demo-docker | tee "$log"
docker_run=$(sed -n 's/^run_id: //p' "$log" | tail -n1)
echo
echo "demo: replaying run $docker_run in its image, by digest"
.venv/bin/tfrepro replay "$docker_run" --yes --gpus none --experiment tfrepro-demo-docker
echo
echo "demo: browse the runs with: .venv/bin/mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db"
