#!/usr/bin/env bash
# Build tfrepro's test image (Debian bullseye, Python 3.9, TensorFlow 2.9, MLflow client,
# tfrepro from this checkout) and push it to the local registry. Run scripts/docker-up.sh first.
#
# Three cached levels, each tagged by a hash of its inputs:
#   tfrepro-base:<h>  debootstrap rootfs (kept under /var/cache/tfrepro) imported   ~1-2 min cold
#   tfrepro-deps:<h>  + TensorFlow, MLflow client and tfrepro's dependencies       ~2-4 min cold
#   tfrepro-test:<h>  + tfrepro installed from the checkout                        seconds
# Prints `export TFREPRO_TEST_IMAGE=...` lines (tag and digest reference) and writes them
# into $TFREPRO_DOCKER_ENV too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CTX_DIR="$ROOT/scripts/docker"
REGISTRY="${TFREPRO_REGISTRY:-127.0.0.1:5555}"
ENV_FILE="${TFREPRO_DOCKER_ENV:-/tmp/tfrepro-docker.env}"
CACHE=/var/cache/tfrepro
SUITE=bullseye
# The Debian mirror apt uses here (often the only way out of a closed network), unless
# TFREPRO_DEBIAN_MIRROR says otherwise; deb.debian.org when apt names none. Part of the base
# image's hash, so a machine that switches mirrors rebuilds its base once.
apt_mirror() {  # first http(s) URI of a non-security Debian source; nothing elsewhere (Ubuntu has no bullseye)
  grep -qs '^ID=debian' /etc/os-release || return 0
  { awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' /etc/apt/sources.list.d/*.sources 2>/dev/null
    sed -n 's/^deb[ \t]\+\(\[[^]]*\][ \t]\+\)\?\([^ \t]\+\).*/\2/p' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
  } | awk '/^https?:\/\// && !/-security/ {sub(/\/$/, ""); print; exit}' || true
}
MIRROR="${TFREPRO_DEBIAN_MIRROR:-$(apt_mirror)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
INCLUDE=python3,python3-venv,python3-pip,git,ca-certificates
CA_BUNDLE="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER="$(command -v docker)"
export DOCKER_BUILDKIT=1  # for the build secret (the CA bundle) in deps.Dockerfile

log() { echo "build-test-image: $*" >&2; }
hash_of() { sha256sum | cut -c1-12; }
have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# build_image NAME DOCKERFILE CONTEXT [ARGS...]: a second try covers a flaky download;
# the full log stays in $CACHE/build-NAME.log and its tail is shown on failure.
build_image() {
  local name=$1 dockerfile=$2 context=$3; shift 3
  local build_log="$CACHE/build-${name%%:*}.log"
  for attempt in 1 2; do
    if "$DOCKER" build --network host --progress plain -f "$dockerfile" -t "$name" "$@" "$context" \
        >"$build_log" 2>&1; then
      return 0
    fi
    log "building $name failed (try $attempt); last lines of $build_log:"
    tail -n 30 "$build_log" >&2
  done
  return 1
}

if ! "$DOCKER" info >/dev/null 2>&1; then
  log "no Docker daemon answers: run scripts/docker-up.sh first"; exit 1
fi
mkdir -p "$CACHE"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# One build at a time per machine (CI and a test fixture may both ask).
exec 9>"$CACHE/build.lock"
flock 9

# Level 1: base.
base_hash=$(printf '%s\n' v1 "$SUITE" minbase "$INCLUDE" "$MIRROR" | hash_of)
BASE="tfrepro-base:$base_hash"
if ! have_image "$BASE"; then
  rootfs="$CACHE/rootfs-$base_hash"
  if [ ! -f "$rootfs.done" ]; then
    log "debootstrap $SUITE into $rootfs"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$rootfs" "$MIRROR" \
      >"$CACHE/debootstrap-$base_hash.log" 2>&1 \
      || { tail -n 20 "$CACHE/debootstrap-$base_hash.log" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    touch "$rootfs.done"
  fi
  log "docker import $BASE"
  tar -C "$rootfs" -c . | "$DOCKER" import -c 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
fi

# Level 2: dependencies.
deps_hash=$( { echo "$base_hash"; cat "$CTX_DIR/deps.Dockerfile" "$CTX_DIR/requirements.txt"; } | hash_of)
DEPS="tfrepro-deps:$deps_hash"
if ! have_image "$DEPS"; then
  log "building $DEPS (TensorFlow and MLflow client from PyPI)"
  mkdir "$WORK/deps"
  cp "$CTX_DIR/requirements.txt" "$WORK/deps/"
  build_image "$DEPS" "$CTX_DIR/deps.Dockerfile" "$WORK/deps" \
    --secret "id=cacert,src=$CA_BUNDLE" --build-arg "BASE=$BASE"
fi

# Level 3: tfrepro from the checkout (sources listed by find, so uncommitted edits count).
src_files=$(cd "$ROOT" && find tfrepro mlflow_plugin pyproject.toml README.md -type f \
  ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' 2>/dev/null | LC_ALL=C sort)
test_hash=$( { echo "$deps_hash"; cat "$CTX_DIR/tfrepro.Dockerfile";
  (cd "$ROOT" && for f in $src_files; do echo "$f"; cat "$f"; done); } | hash_of)
LOCAL="tfrepro-test:$test_hash"
REMOTE="$REGISTRY/tfrepro-test:$test_hash"
LATEST="$REGISTRY/tfrepro-test:latest"
manifest_digest() {  # the manifest digest the registry serves for a tag, or nothing
  curl -fs -m 10 -o /dev/null -D - -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REGISTRY/v2/tfrepro-test/manifests/$1" | tr -d '\r' \
    | awk -F': ' 'tolower($1)=="docker-content-digest" {print $2}'
}
# Pushed before but removed here (a test proving a pull): pull it back, keeping its digest.
if ! have_image "$REMOTE" && ! "$DOCKER" pull -q "$REMOTE" >/dev/null 2>&1; then
  if ! have_image "$LOCAL"; then
    log "building $LOCAL"
    (cd "$ROOT" && for f in $src_files; do
      mkdir -p "$WORK/app/src/$(dirname "$f")"; cp "$f" "$WORK/app/src/$f"; done)
    build_image "$LOCAL" "$CTX_DIR/tfrepro.Dockerfile" "$WORK/app" --build-arg "DEPS=$DEPS"
  fi
  "$DOCKER" tag "$LOCAL" "$REMOTE"
fi
digest=$(manifest_digest "$test_hash" || true)
if [ -z "$digest" ]; then  # new, or the registry's storage was wiped
  log "pushing $REMOTE"
  "$DOCKER" push -q "$REMOTE" >/dev/null
  digest=$(manifest_digest "$test_hash" || true)
  [ -n "$digest" ] || { log "registry has no manifest for $REMOTE after the push"; exit 1; }
fi
"$DOCKER" tag "$REMOTE" "$LATEST"
if [ "$(manifest_digest latest || true)" != "$digest" ]; then
  "$DOCKER" push -q "$LATEST" >/dev/null
fi

touch "$ENV_FILE"
grep -v '^export TFREPRO_TEST_IMAGE' "$ENV_FILE" >"$ENV_FILE.tmp" || true
cat >>"$ENV_FILE.tmp" <<ENV
export TFREPRO_TEST_IMAGE=$LATEST
export TFREPRO_TEST_IMAGE_TAG=$REMOTE
export TFREPRO_TEST_IMAGE_DIGEST=$REGISTRY/tfrepro-test@$digest
ENV
mv "$ENV_FILE.tmp" "$ENV_FILE"
grep '^export TFREPRO_TEST_IMAGE' "$ENV_FILE"
