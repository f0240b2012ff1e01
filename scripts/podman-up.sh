#!/usr/bin/env bash
# Set up rootful Podman for tfrepro's tests and CI (idempotent, as root): Debian's podman,
# the two settings this sandbox needs (no default ulimits; cgroupfs, passed by tfrepro as
# --cgroup-manager=cgroupfs) and the local registry 127.0.0.1:5555 over plain HTTP.
# `--api` also serves Podman's Docker-compatible API on $TFREPRO_PODMAN_SOCKET
# (default /run/tfrepro-podman.sock). Prints `podman-up: ready: ...`.
set -euo pipefail

REGISTRY="${TFREPRO_REGISTRY:-127.0.0.1:5555}"
SOCKET="${TFREPRO_PODMAN_SOCKET:-/run/tfrepro-podman.sock}"
API_LOG=/tmp/tfrepro-podman-api.log

log() { echo "podman-up: $*" >&2; }

if [ "$(id -u)" != 0 ]; then log "run as root"; exit 2; fi
case "$REGISTRY" in
  127.*:*|localhost:*) ;;
  *) log "TFREPRO_REGISTRY must be a loopback host:port, got '$REGISTRY'"; exit 2 ;;
esac

if ! command -v podman >/dev/null; then
  log "installing podman"
  export DEBIAN_FRONTEND=noninteractive
  [ -f /tmp/.tfrepro-apt-updated ] || { apt-get update -qq && touch /tmp/.tfrepro-apt-updated; }
  apt-get install -y -qq podman >/dev/null
fi

write() {  # $1 = file, stdin = content; rewritten only when it differs
  local content
  content=$(cat)
  mkdir -p "$(dirname "$1")"
  if [ "$(cat "$1" 2>/dev/null)" != "$content" ]; then echo "$content" >"$1"; log "wrote $1"; fi
}

# The sandbox refuses podman's default rlimits (RLIMIT_NPROC/NOFILE) for containers.
write /etc/containers/containers.conf <<'CONF'
# written by tfrepro scripts/podman-up.sh: this sandbox refuses podman's default rlimits
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
CONF

write /etc/containers/registries.conf.d/tfrepro-local.conf <<CONF
# written by tfrepro scripts/podman-up.sh: the tests' local registry speaks plain HTTP
[[registry]]
location = "$REGISTRY"
insecure = true
CONF

podman --cgroup-manager=cgroupfs info >/dev/null 2>&1 \
  || { podman --cgroup-manager=cgroupfs info >&2; log "podman info failed"; exit 1; }

if [ "${1:-}" = "--api" ]; then
  api_ok() { curl -fsS -m 2 --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; }
  if ! api_ok; then
    rm -f "$SOCKET"
    log "serving the Docker-compatible API on unix://$SOCKET (log: $API_LOG)"
    setsid nohup podman --cgroup-manager=cgroupfs system service --time=0 "unix://$SOCKET" \
      >>"$API_LOG" 2>&1 </dev/null &
    for _ in $(seq 1 40); do api_ok && break; sleep 0.25; done
    api_ok || { log "the API socket does not answer; last log lines:"; tail -n 20 "$API_LOG" >&2; exit 1; }
  fi
  echo "export TFREPRO_PODMAN_SOCKET=$SOCKET"
fi
log "ready: $(podman --version), registry $REGISTRY insecure"
