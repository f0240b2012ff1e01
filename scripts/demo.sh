#!/usr/bin/env bash
# The README's first command: tfrepro end to end. Trains the example (examples/train.py, with
# tfrepro.ReproCallback) on this host into the embedded store sqlite:///$PWD/mlflow.db and
# shows the environment it recorded; then trains it again in a container that `tfrepro run`
# launches by image digest, replays that run by its id with `tfrepro replay` and prints the
# verdict. For the container half, on Debian/Ubuntu as root, it sets up what it needs first, as
# scripts/test.sh does: a Docker Engine and a registry on 127.0.0.1 (scripts/docker-up.sh) and
# the test image (scripts/build-test-image.sh); where it cannot, it says in one line what to run.
# Each call adds three runs to the store.
#   bash scripts/demo.sh [extra examples/train.py args, e.g. --epochs 5]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "demo: $*" >&2; }

# What this machine lacks for the container half, in one line (empty when nothing).
container_blocker() {
  if [ "$(id -u)" -ne 0 ] && ! docker info >/dev/null 2>&1; then
    if command -v sudo >/dev/null; then
      echo "setting up Docker, a local registry and the test image needs root: run  sudo bash scripts/demo.sh"
    else
      echo "setting up Docker, a local registry and the test image needs root: run  su -c 'bash scripts/demo.sh'"
    fi
    return
  fi
  local missing=() tool
  for tool in dockerd docker-registry debootstrap curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if [ ${#missing[@]} -gt 0 ] && ! command -v apt-get >/dev/null; then
    echo "missing ${missing[*]} and no apt-get to install them (Debian/Ubuntu: docker.io docker-registry debootstrap curl): install them, then run  bash scripts/demo.sh"
  fi
}

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

train_on_host() {
  # its own experiment: a store-side artifact location, which a container never gets mounted
  MLFLOW_TRACKING_URI="$STORE" .venv/bin/python examples/train.py --experiment tfrepro-demo-host "$@" 2>&1 | tee "$log"
}
stage train "train examples/train.py here with tfrepro.ReproCallback into $STORE" train_on_host "$@"
host_run=$(sed -n 's/^run_id: \([0-9a-f]\{32\}\)$/\1/p' "$log" | tail -n1)
[ -n "$host_run" ] || { say "the example printed no run id"; exit 1; }
stage show "the environment recorded for run $host_run (tfrepro show)" \
  env MLFLOW_TRACKING_URI="$STORE" .venv/bin/tfrepro show "$host_run"

blocker=$(container_blocker)
if [ -n "$blocker" ]; then
  echo >&2
  say "$blocker"
  exit 0
fi
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
  # MLflow 3's job runner (a dozen worker processes) is not needed for tracking
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid .venv/bin/mlflow server --backend-store-uri "$STORE" --artifacts-destination "$PWD/mlartifacts" \
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
say "or read a run's record:  MLFLOW_TRACKING_URI=$STORE .venv/bin/tfrepro show $run_id"
exit $rc
