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
#   OLD_BIN_DIR  a directory holding `devops-agent-demo` and `console_fill`
#              built from another revision: its own state directory is filled
#              by its console_fill, its `up` runs beside this build's, and each
#              fetch of a page goes to both in turn; the table then compares
#              them (old median, new median, new/old)
#   PAGES_ONLY a regular expression: only the pages it matches
#
# Run it alone (flock /tmp/suite.lock scripts/bench-console.sh): other
# environments on the 2 cores would be measured too.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPEAT=${REPEAT:-30}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/bench-console.XXXXXX)}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OLD=${OLD_BIN_DIR:-}

# shellcheck source=scripts/lib/bench.sh
. "$ROOT/scripts/lib/bench.sh"
need_tools curl python3

echo "== building (release)" >&2
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p devops-agent-demo
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p demo-runtime --example console_fill

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  [ -n "${BENCH_OUT:-}" ] || rm -rf "$OUT"
}
trap cleanup EXIT

# start NAME BIN_DIR: fills $OUT/NAME/state with BIN_DIR's console_fill, starts
# BIN_DIR's up on it, logs in; sets BASE_NAME and JAR_NAME.
start() {
  local name=$1 bins=$2 fill=$3
  local dir="$OUT/$name"
  rm -rf "$dir"
  mkdir -p "$dir"
  echo "== filling $dir/state ($name)" >&2
  "$fill" "$dir/state" "${SECONDS_OF_DATA:-3600}" "${RATE:-100}" >&2
  "$bins/devops-agent-demo" --state-dir "$dir/state" up --port 0 --control-port 0 --time-scale 20 \
    >"$dir/up.log" 2>&1 &
  PIDS+=($!)
  local pid=$!
  wait_ready "$dir/up.log" 60 "$pid"
  local url
  url=$(grep -o 'http://[^ ]*?token=[0-9a-f]*' "$dir/up.log" | head -1)
  printf -v "BASE_$name" '%s' "${url%%/\?*}"
  printf -v "JAR_$name" '%s' "$dir/cookies"
  curl -fsS -o /dev/null -c "$dir/cookies" "$url"
}

start new "$TARGET/release" "$TARGET/release/examples/console_fill"
NAMES=(new)
if [ -n "$OLD" ]; then
  start old "$OLD" "$OLD/console_fill"
  NAMES=(old new)
fi
# The text index's size (schema 4 and later): filter bytes per stored line.
python3 - "$OUT/new/state/state.db" >&2 <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
try:
    blocks, lines, size = con.execute("SELECT COUNT(*), IFNULL(SUM(lines), 0), IFNULL(SUM(length(filter)), 0) FROM log_blocks").fetchone()
    total = con.execute("SELECT COUNT(*) FROM logs").fetchone()[0]
    print(f"== text index: {blocks} blocks, {lines} of {total} lines indexed, {size} filter bytes = {size / max(lines, 1):.2f} bytes per line")
except sqlite3.OperationalError as e:
    print(f"== no text index: {e}")
PY

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
  "/console/logs?q=injected%20failure&since=1h"
  "/console/logs?q=request%20completed&since=1h"
  "/console/investigations"
)

if [ -n "$OLD" ]; then
  echo "| page | old median ms | new median ms | new/old | old p95 ms | new p95 ms | bytes (old, new) |"
  echo "|---|---:|---:|---:|---:|---:|---|"
else
  echo "| page | median ms | p95 ms | max ms | bytes |"
  echo "|---|---:|---:|---:|---:|"
fi
for page in "${PAGES[@]}"; do
  if [ -n "${PAGES_ONLY:-}" ] && ! [[ $page =~ $PAGES_ONLY ]]; then continue; fi
  for name in "${NAMES[@]}"; do : >"$OUT/times-$name"; done
  for _ in $(seq 1 "$REPEAT"); do
    for name in "${NAMES[@]}"; do
      base="BASE_$name"; jar="JAR_$name"
      read -r code t size < <(curl -sS -o /dev/null -b "${!jar}" -w '%{http_code} %{time_total} %{size_download}\n' "${!base}$page")
      [ "$code" = 200 ] || { echo "$page ($name) answered $code" >&2; exit 1; }
      echo "$t $size" >>"$OUT/times-$name"
    done
  done
  python3 - "$page" "$OUT" "${NAMES[@]}" <<'PY'
import sys
page, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
def stats(name):
    rows = [l.split() for l in open(f"{out}/times-{name}") if l.strip()]
    t = sorted(float(r[0]) * 1000 for r in rows)
    p95 = t[min(len(t) - 1, int(round(0.95 * (len(t) - 1))))]
    return t[len(t) // 2], p95, t[-1], rows[-1][1]
if len(names) == 1:
    m, p95, mx, size = stats(names[0])
    print(f"| `{page}` | {m:.1f} | {p95:.1f} | {mx:.1f} | {size} |")
else:
    (om, op, _, osz), (nm, np, _, nsz) = stats("old"), stats("new")
    print(f"| `{page}` | {om:.1f} | {nm:.1f} | {nm / om:.2f}× | {op:.1f} | {np:.1f} | {osz}, {nsz} |")
PY
done
