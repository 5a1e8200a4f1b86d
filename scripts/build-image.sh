#!/usr/bin/env bash
# Build the demo-app runtime image without a Docker daemon, then prove it.
#
# 1. cargo builds a static demo-app (musl target when installed, otherwise
#    glibc with +crt-static);
# 2. buildah assembles the Dockerfile's final stage: FROM scratch, the binary
#    at /demo-app (root-owned, read-only), USER 10001:10001, EXPOSE 3000,
#    HEALTHCHECK `demo-app healthcheck`, OCI labels;
# 3. checks: the binary has no dynamic dependencies, the image user is not
#    root, the server started from the image runs as that uid and answers its
#    own health check; prints the image size.
#
# Usage: scripts/build-image.sh [--binary PATH] [--cli PATH] [--tag NAME] [--no-run]
#   --binary PATH  package this static binary instead of building demo-app
#                  (e.g. a throwaway binary to test the buildah path)
#   --cli PATH     package this static project CLI as /devops-agent-demo (the
#                  investigator's `aws worker`); built with demo-app when
#                  neither --binary nor --cli is given
#   --tag NAME     image name (default localhost/demo-app:<git sha>)
#   --no-run       skip starting the server from the image
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BINARY=""
CLI=""
TAG=""
RUN_CHECK=1
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BINARY=$2; shift 2 ;;
    --cli) CLI=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --no-run) RUN_CHECK=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build-image: unknown argument: $1" >&2; exit 2 ;;
  esac
done

IMAGE_USER="10001:10001"
GIT_SHA=$(git rev-parse HEAD 2>/dev/null || echo unknown)
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' crates/demo-app/Cargo.toml 2>/dev/null | head -n1)
VERSION=${VERSION:-0.0.0}
TAG=${TAG:-localhost/demo-app:${GIT_SHA}}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v buildah >/dev/null || die "buildah is not installed (apt-get install -y buildah)"

# ------------------------------------------------------------ static binary
if [ -z "$BINARY" ]; then
  if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    triple=x86_64-unknown-linux-musl
    log "cargo build --release -p demo-app -p devops-agent-demo --target $triple"
    cargo build --release -p demo-app -p devops-agent-demo --target "$triple"
  else
    triple=x86_64-unknown-linux-gnu
    log "musl target not installed; static glibc build (+crt-static)"
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
      cargo build --release -p demo-app -p devops-agent-demo --target "$triple"
  fi
  BINARY="$TARGET_DIR/$triple/release/demo-app"
  CLI="$TARGET_DIR/$triple/release/devops-agent-demo"
fi
# A scratch image has no loader and no libc: refuse anything dynamic.
check_static() {
  [ -x "$1" ] || die "no executable at $1"
  if readelf -lW "$1" | grep -q 'Requesting program interpreter'; then
    die "$1 is dynamically linked (has a program interpreter)"
  fi
  if readelf -dW "$1" 2>/dev/null | grep -q '(NEEDED)'; then
    die "$1 needs shared libraries"
  fi
  log "static binary: $1 ($(du -h "$1" | cut -f1))"
}
check_static "$BINARY"
if [ -n "$CLI" ]; then check_static "$CLI"; fi

# ------------------------------------------------------------------ image
CTR=""
SERVER_PID=""
SERVER_LOG=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$CTR" ]; then buildah rm "$CTR" >/dev/null 2>&1 || true; fi
  if [ -n "$SERVER_LOG" ]; then rm -f "$SERVER_LOG"; fi
}
trap cleanup EXIT

CTR=$(buildah from --format docker scratch)
buildah copy --chmod 0555 "$CTR" "$BINARY" /demo-app >/dev/null
if [ -n "$CLI" ]; then buildah copy --chmod 0555 "$CTR" "$CLI" /devops-agent-demo >/dev/null; fi
buildah config \
  --user "$IMAGE_USER" \
  --port 3000 \
  --env PORT=3000 \
  --env APP_VERSION="$VERSION" \
  --env GIT_SHA="$GIT_SHA" \
  --entrypoint '["/demo-app"]' \
  --cmd '' \
  --healthcheck 'CMD ["/demo-app", "healthcheck"]' \
  --healthcheck-interval 30s \
  --healthcheck-timeout 5s \
  --healthcheck-start-period 10s \
  --healthcheck-retries 3 \
  --label org.opencontainers.image.title=demo-app \
  --label org.opencontainers.image.version="$VERSION" \
  --label org.opencontainers.image.revision="$GIT_SHA" \
  --label org.opencontainers.image.created="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --label org.opencontainers.image.licenses=MIT \
  "$CTR"
# Docker format: OCI image configs have no HEALTHCHECK field.
buildah commit --quiet --format docker --rm "$CTR" "$TAG" >/dev/null
CTR=""
log "committed $TAG"

# ------------------------------------------------------------------ checks
user=$(buildah inspect --type image --format '{{.Docker.Config.User}}' "$TAG")
case "${user%%:*}" in
  ""|0|root) die "image user is '${user}': the image would run as root" ;;
esac
[ "$user" = "$IMAGE_USER" ] || die "image user is '$user', expected $IMAGE_USER"

hc=$(buildah inspect --type image --format '{{.Docker.Config.Healthcheck.Test}}' "$TAG")
case "$hc" in
  *"/demo-app healthcheck"*|*"/demo-app, healthcheck"*) ;;
  *) die "image has no 'demo-app healthcheck' HEALTHCHECK (got: $hc)" ;;
esac

size_bytes=$(buildah inspect --type image --format '{{.ImageSize}}' "$TAG" 2>/dev/null || true)
case "$size_bytes" in ''|*[!0-9]*) size_bytes=$(stat -c %s "$BINARY") ;; esac
size_human=$(numfmt --to=iec --suffix=B "$size_bytes" 2>/dev/null || echo "${size_bytes} bytes")

ran_as="not run"
if [ "$RUN_CHECK" = 1 ]; then
  # chroot isolation: no OCI runtime or cgroups needed, host network.
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  CTR=$(buildah from "$TAG")
  SERVER_LOG=$(mktemp)
  buildah run --isolation chroot --env PORT="$port" --env ENVIRONMENT=image-check "$CTR" /demo-app \
    >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  healthy=0
  for _ in $(seq 1 50); do
    if buildah run --isolation chroot --env PORT="$port" "$CTR" /demo-app healthcheck >/dev/null 2>&1; then
      healthy=1
      break
    fi
    sleep 0.2
  done
  if [ "$healthy" != 1 ]; then
    cat "$SERVER_LOG" >&2
    die "the server started from the image never passed 'demo-app healthcheck' on port $port"
  fi
  pid=$(ss -Hltnp "sport = :$port" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1)
  [ -n "$pid" ] || die "no process listens on port $port"
  uid=$(awk '/^Uid:/ {print $3}' "/proc/$pid/status")
  [ "$uid" != 0 ] || die "the server runs as root"
  [ "$uid" = "${IMAGE_USER%%:*}" ] || die "the server runs as uid $uid, expected ${IMAGE_USER%%:*}"
  ran_as="uid $uid, healthy on port $port"
fi

printf 'image:  %s\nuser:   %s (%s)\nsize:   %s (%s bytes)\nbinary: %s\n' \
  "$TAG" "$user" "$ran_as" "$size_human" "$size_bytes" "$BINARY"
