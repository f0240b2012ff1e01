#!/usr/bin/env bash
# The README's first command: tfrepro end to end. Trains the example (examples/train.py, with
# tfrepro.ReproCallback) in a container that `tfrepro run` launches by image digest, then
# replays that run by its id with `tfrepro replay` and prints the verdict.
# On Debian/Ubuntu as root it sets up what it needs first, as scripts/test.sh does: the Python
# venv (scripts/setup.sh), a Docker Engine and a registry on 127.0.0.1 (scripts/docker-up.sh),
# and the test image (scripts/build-test-image.sh). Runs go to a local MLflow store,
# sqlite:///$PWD/mlflow.db, served on loopback while the demo runs. Each call adds two runs.
#   bash scripts/demo.sh [extra examples/train.py args, e.g. --epochs 5]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "demo: $*" >&2; }

# What this machine lacks is said up front, in one line, before minutes of setup.
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    say "setting up Docker, a local registry and the test image needs root: run  sudo bash scripts/demo.sh"
  else
    say "setting up Docker, a local registry and the test image needs root: run  su -c 'bash scripts/demo.sh'"
  fi
  exit 2
fi
missing=()
for tool in dockerd docker-registry debootstrap curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ] && ! command -v apt-get >/dev/null; then
  say "missing ${missing[*]} and no apt-get to install them (Debian/Ubuntu: docker.io docker-registry debootstrap curl): install them, then run  bash scripts/demo.sh"
  exit 2
fi

TIMES=()
STARTED=$(date +%s%N)
seconds_since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }
summary() {
  [ ${#TIMES[@]} -gt 0 ] || return 0
  echo >&2
  say "time per stage:"
  printf '  %s\n' "${TIMES[@]}" "$(printf '%-8s %7ss' total "$(seconds_since "$STARTED")")" >&2
}
stage() {  # stage NAME WHAT COMMAND...: run COMMAND, say how long it took
  local name=$1 what=$2 start rc=0
  shift 2
  start=$(date +%s%N)
  echo >&2
  say "[$name] $what"
  "$@" || rc=$?
  TIMES+=("$(printf '%-8s %7ss%s' "$name" "$(seconds_since "$start")" "$([ $rc -eq 0 ] || echo "  (failed, status $rc)")")")
  say "[$name] $([ $rc -eq 0 ] && echo done || echo "failed (status $rc)") in $(seconds_since "$start")s"
  return $rc
}

server=""
log=$(mktemp)
cleanup() {
  if [ -n "$server" ] && kill -- "-$server" 2>/dev/null; then
    for _ in $(seq 40); do kill -0 "$server" 2>/dev/null || break; sleep 0.25; done  # it stops its workers
    kill -KILL -- "-$server" 2>/dev/null || true
  fi
  rm -f "$log"
  summary
}
trap cleanup EXIT

export TFREPRO_DOCKER_ENV="${TFREPRO_DOCKER_ENV:-/tmp/tfrepro-docker.env}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"  # quiet TensorFlow's C++ banner
STORE="sqlite:///$PWD/mlflow.db"

stage setup "Python venv .venv with TensorFlow 2.9, MLflow and tfrepro (scripts/setup.sh)" \
  bash scripts/setup.sh --no-py38
stage docker "Docker Engine and a registry on 127.0.0.1 (scripts/docker-up.sh)" \
  bash -c 'bash scripts/docker-up.sh >/dev/null'
stage image "test image: Debian, Python 3.9, TensorFlow 2.9, this checkout (scripts/build-test-image.sh)" \
  bash -c 'bash scripts/build-test-image.sh >/dev/null'
. "$TFREPRO_DOCKER_ENV"

# The container's MLflow client may be older than this store's schema: it talks to the store
# through a server on loopback (the container shares the host network).
start_server() {
  local port
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # its own process group, so that the exit trap stops its workers too
  setsid .venv/bin/mlflow server --backend-store-uri "$STORE" --artifacts-destination "$PWD/mlartifacts" \
    --host 127.0.0.1 --port "$port" --workers 1 >/tmp/tfrepro-demo-server.log 2>&1 </dev/null &
  server=$!
  for _ in $(seq 120); do
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null; then
      MLFLOW_TRACKING_URI="http://127.0.0.1:$port"
      return 0
    fi
    kill -0 "$server" 2>/dev/null || break
    sleep 0.5
  done
  say "the MLflow server did not start; last lines of /tmp/tfrepro-demo-server.log:"
  tail -n 20 /tmp/tfrepro-demo-server.log >&2
  return 1
}
stage mlflow "MLflow server for $STORE on 127.0.0.1" start_server
export MLFLOW_TRACKING_URI

train_in_container() {
  .venv/bin/tfrepro run --image "$TFREPRO_TEST_IMAGE" --gpus none --experiment tfrepro-demo \
    -- python examples/train.py --experiment tfrepro-demo "$@" 2>&1 | tee "$log"
}
stage run "train examples/train.py in $TFREPRO_TEST_IMAGE, launched by digest" train_in_container "$@"
run_id=$(sed -n 's/^tfrepro: run \([0-9a-f]\{32\}\) exited with status 0$/\1/p' "$log" | tail -n1)
[ -n "$run_id" ] || { say "tfrepro run printed no run id"; exit 1; }

rc=0
stage replay "replay run $run_id in its image, commit and patch, then compare" \
  .venv/bin/tfrepro replay "$run_id" --yes --gpus none || rc=$?

echo >&2
say "to look at both runs, serve the store:  .venv/bin/mlflow ui --backend-store-uri $STORE --artifacts-destination $PWD/mlartifacts"
say "then, beside it:  MLFLOW_TRACKING_URI=http://127.0.0.1:5000 .venv/bin/tfrepro show $run_id"
exit $rc
