#!/usr/bin/env bash
# Start a local Docker Engine and registry for tfrepro's tests and CI (idempotent, as root).
# Everything stays on loopback: dockerd without a bridge or iptables rules, the registry
# on 127.0.0.1. Writes the settings to $TFREPRO_DOCKER_ENV (default /tmp/tfrepro-docker.env)
# and prints them as `export` lines, so callers can `source` either.
set -euo pipefail

REGISTRY="${TFREPRO_REGISTRY:-127.0.0.1:5555}"
ENV_FILE="${TFREPRO_DOCKER_ENV:-/tmp/tfrepro-docker.env}"
DOCKERD_LOG=/tmp/tfrepro-dockerd.log
REGISTRY_LOG=/tmp/tfrepro-registry.log
REGISTRY_ROOT=/var/tmp/tfrepro-registry

log() { echo "docker-up: $*" >&2; }

case "$REGISTRY" in
  127.*:*|localhost:*) ;;
  *) log "TFREPRO_REGISTRY must be a loopback host:port, got '$REGISTRY'"; exit 2 ;;
esac

# Debian's packages; `apt-get update` only when something is missing.
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The Debian CLI matches Debian's 20.10 daemon; a newer CLI elsewhere on PATH negotiates
# the API down, but we use the packaged one to be sure.
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER="$(command -v docker)"

if ! "$DOCKER" info >/dev/null 2>&1; then
  log "starting dockerd (log: $DOCKERD_LOG)"
  # dockerd needs containerd on PATH (Debian ships it as a dependency).
  setsid nohup dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    >"$DOCKERD_LOG" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    "$DOCKER" info >/dev/null 2>&1 && break
    sleep 0.5
  done
  if ! "$DOCKER" info >/dev/null 2>&1; then
    log "dockerd did not answer within 60 s; last lines of $DOCKERD_LOG:"
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    exit 1
  fi
fi

registry_ok() { curl -fsS -m 2 "http://$REGISTRY/v2/" >/dev/null 2>&1; }

if ! registry_ok; then
  mkdir -p "$REGISTRY_ROOT"
  config="$REGISTRY_ROOT/config-${REGISTRY//[:.]/_}.yml"
  cat >"$config" <<YAML
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $REGISTRY_ROOT/data-${REGISTRY//[:.]/_}
  delete:
    enabled: true
http:
  addr: $REGISTRY
YAML
  log "starting docker-registry on $REGISTRY (log: $REGISTRY_LOG)"
  setsid nohup docker-registry serve "$config" >>"$REGISTRY_LOG" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    registry_ok && break
    sleep 0.5
  done
  if ! registry_ok; then
    log "registry did not answer on http://$REGISTRY/v2/; last lines of $REGISTRY_LOG:"
    tail -n 20 "$REGISTRY_LOG" >&2 || true
    exit 1
  fi
fi

cat >"$ENV_FILE" <<ENV
export TFREPRO_REGISTRY=$REGISTRY
export TFREPRO_DOCKER=$DOCKER
export TFREPRO_REGISTRY_LOG=$REGISTRY_LOG
export DOCKER_HOST=unix:///var/run/docker.sock
ENV
cat "$ENV_FILE"
log "ready: dockerd $("$DOCKER" version --format '{{.Server.Version}}'), registry http://$REGISTRY"
