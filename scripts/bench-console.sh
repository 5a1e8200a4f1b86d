#!/usr/bin/env bash
# Benchmark the console's pages over an hour of data: 2 tasks at 100 requests
# a second at time scale 20 (360,000 log lines, ~150,000 metric samples, one
# ALARM episode), written by the console_fill example, served by a real
# release `up` on that state directory. Each page is fetched REPEAT times with
# curl (logged in with the session cookie); prints median, p95 and max.
#
#   scripts/bench-console.sh
#
# Environment:
#   REPEAT     fetches per page (default 30)
#   SECONDS_OF_DATA, RATE   what console_fill writes (default 3600 s, 100 req/s)
#   BENCH_OUT  scratch directory (default: a fresh mktemp dir, removed at exit)
#
# Run it alone (flock /tmp/suite.lock scripts/bench-console.sh): other
# environments on the 2 cores would be measured too.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPEAT=${REPEAT:-30}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/bench-console.XXXXXX)}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

echo "== building (release)" >&2
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p devops-agent-demo
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p demo-runtime --example console_fill

STATE="$OUT/state"
rm -rf "$STATE"
echo "== filling $STATE" >&2
"$TARGET/release/examples/console_fill" "$STATE" "${SECONDS_OF_DATA:-3600}" "${RATE:-100}" >&2

"$TARGET/release/devops-agent-demo" --state-dir "$STATE" up --port 0 --control-port 0 --time-scale 20 \
  >"$OUT/up.log" 2>&1 &
UP=$!
cleanup() {
  kill -TERM "$UP" 2>/dev/null || true
  wait "$UP" 2>/dev/null || true
  [ -n "${BENCH_OUT:-}" ] || rm -rf "$OUT"
}
trap cleanup EXIT

for _ in $(seq 1 600); do
  grep -q '^ready:' "$OUT/up.log" && break
  kill -0 "$UP" 2>/dev/null || { cat "$OUT/up.log" >&2; exit 1; }
  sleep 0.1
done
grep -q '^ready:' "$OUT/up.log" || { echo "up not ready within 60 s" >&2; cat "$OUT/up.log" >&2; exit 1; }
URL=$(grep -o 'http://[^ ]*?token=[0-9a-f]*' "$OUT/up.log" | head -1)
BASE=${URL%%/\?*}
JAR="$OUT/cookies"
curl -fsS -o /dev/null -c "$JAR" "$URL"

PAGES=(
  "/"
  "/console/fragment/overview"
  "/console/alarms/error-count-high"
  "/console/alarms/latency-p99-high"
  "/console/alarms/cpu-high"
  "/console/logs"
  "/console/logs?level=ERROR&since=1h"
  "/console/logs?route=/api/quote&since=1h"
  "/console/logs?q=r-1800-&since=1h"
  "/console/investigations"
)

echo "| page | median ms | p95 ms | max ms | bytes |"
echo "|---|---:|---:|---:|---:|"
for page in "${PAGES[@]}"; do
  times="$OUT/times"
  : >"$times"
  bytes=0
  for _ in $(seq 1 "$REPEAT"); do
    read -r code t size < <(curl -sS -o /dev/null -b "$JAR" -w '%{http_code} %{time_total} %{size_download}\n' "$BASE$page")
    [ "$code" = 200 ] || { echo "$page answered $code" >&2; exit 1; }
    echo "$t" >>"$times"
    bytes=$size
  done
  python3 - "$page" "$bytes" "$times" <<'PY'
import sys
page, size, path = sys.argv[1], sys.argv[2], sys.argv[3]
t = sorted(float(x) * 1000 for x in open(path))
p95 = t[min(len(t) - 1, int(round(0.95 * (len(t) - 1))))]
print(f"| `{page}` | {t[len(t)//2]:.1f} | {p95:.1f} | {t[-1]:.1f} | {size} |")
PY
done
