#!/usr/bin/env bash
# Benchmarks demo-app against a bare hyper server in the same run.
#
# Server pinned to core 0, wrk pinned to core 1, loopback only, concurrency 50.
# Measures GET /, /health, /metrics throughput and p50/p99 (access logs on,
# read by a log consumer on the other core; GET / also with a log file); idle and loaded
# RSS; start-up time (exec to first accepted TCP connection, median of 20).
# GET / of both servers and demo-app's /health run ROUNDS times, alternating, and
# their medians are compared.
#
# Usage: scripts/bench-service.sh [DURATION_SECONDS]   (default 10; ROUNDS=3)
#
# The script builds both servers, then measures. To measure without building
# (e.g. under a lock shared with other benchmarks, which must not wait on
# cargo), build first and pass the binaries: DEMO_APP_BIN=... BARE_HYPER_BIN=...
set -euo pipefail

DURATION="${1:-10}"
ROUNDS="${ROUNDS:-3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

if ! command -v wrk >/dev/null; then
  echo "installing wrk (apt-get)" >&2
  { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } ||
    { echo "wrk is required and could not be installed: apt-get install -y wrk" >&2; exit 2; }
fi
command -v taskset >/dev/null || { echo "taskset is required (util-linux)" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores: server on core 0, wrk on core 1" >&2; exit 2; }

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
if [ -n "${DEMO_APP_BIN:-}" ] || [ -n "${BARE_HYPER_BIN:-}" ]; then
  APP="${DEMO_APP_BIN:?DEMO_APP_BIN and BARE_HYPER_BIN go together}"
  HYPER="${BARE_HYPER_BIN:?DEMO_APP_BIN and BARE_HYPER_BIN go together}"
  for b in "$APP" "$HYPER"; do [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }; done
else
  cargo build --release -q -p demo-app --bin demo-app --example bare_hyper
  APP="$TARGET/demo-app"
  HYPER="$TARGET/examples/bare_hyper"
fi
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 500); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.01
  done
  echo "server on port $1 did not start" >&2; return 1
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# wrk run: prints "req_per_s p50_ms p99_ms"
load() {
  local url="$1" out
  out="$(taskset -c 1 wrk -t1 -c50 -d"${DURATION}s" --latency "$url")"
  local rps p50 p99
  rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  local errors
  errors="$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")"
  [ -z "$errors" ] || echo "  warning: $errors" >&2
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}
to_ms() {
  python3 - "$1" <<'PY'
import re, sys
m = re.match(r"([\d.]+)(us|ms|s)$", sys.argv[1])
v, u = float(m.group(1)), m.group(2)
print(round(v / 1000 if u == "us" else v * 1000 if u == "s" else v, 3))
PY
}

# Start-up: exec to first accepted connection, median of 20 runs.
startup_ms() {
  python3 - "$APP" <<'PY'
import os, socket, subprocess, sys, time
app = sys.argv[1]
times = []
for _ in range(20):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1")
    t0 = time.perf_counter()
    p = subprocess.Popen(["taskset", "-c", "0", app], env=env, stdout=subprocess.DEVNULL)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
            break
        except OSError:
            if time.perf_counter() - t0 > 5:
                sys.exit("demo-app did not start")
    times.append((time.perf_counter() - t0) * 1000)
    p.terminate(); p.wait()
times.sort()
print(round(times[len(times) // 2], 2))
PY
}

echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores, wrk -t1 -c50 -d${DURATION}s, server on core 0, wrk on core 1"

PORT_H="$(free_port)"
taskset -c 0 "$HYPER" "$PORT_H" & HYPER_PID=$!; PIDS+=("$HYPER_PID")
wait_port "$PORT_H"

PORT_A="$(free_port)"
# Access logs go to a pipe read by another process on the other core, as a
# container's stdout goes to the log driver (awslogs runs outside the task).
PORT="$PORT_A" HOST=127.0.0.1 taskset -c 0 "$APP" > >(taskset -c 1 wc -l >"$WORK/lines") & APP_PID=$!; PIDS+=("$APP_PID")
wait_port "$PORT_A"
sleep 0.5
IDLE_KB="$(rss_kb "$APP_PID")"
# GET / against bare hyper: ROUNDS alternating runs each, medians compared (the
# machine is shared; alternating spreads its noise over both sides).
# /health joins the rotation: its target is a ratio to demo-app's own GET /.
H_RUNS=(); A_RUNS=(); HE_RUNS=()
for _ in $(seq 1 "$ROUNDS"); do
  H_RUNS+=("$(load "http://127.0.0.1:$PORT_H/")")
  A_RUNS+=("$(load "http://127.0.0.1:$PORT_A/")")
  HE_RUNS+=("$(load "http://127.0.0.1:$PORT_A/health")")
done
median() { printf '%s\n' "$@" | sort -n -k1,1 | sed -n "$(( ($# + 1) / 2 ))p"; }
read -r H_RPS H_P50 H_P99 <<<"$(median "${H_RUNS[@]}")"
read -r A_RPS A_P50 A_P99 <<<"$(median "${A_RUNS[@]}")"
read -r HE_RPS HE_P50 HE_P99 <<<"$(median "${HE_RUNS[@]}")"
kill "$HYPER_PID"; wait "$HYPER_PID" 2>/dev/null || true
read -r M_RPS M_P50 M_P99 < <(load "http://127.0.0.1:$PORT_A/metrics")
LOADED_KB="$(hwm_kb "$APP_PID")"
kill -TERM "$APP_PID"; wait "$APP_PID" 2>/dev/null || true
sleep 0.5
LINES="$(cat "$WORK/lines")"

# The same GET / with the log written to a file by the service's own core.
PORT_F="$(free_port)"
PORT="$PORT_F" HOST=127.0.0.1 taskset -c 0 "$APP" >"$WORK/app.log" & FILE_PID=$!; PIDS+=("$FILE_PID")
wait_port "$PORT_F"
read -r F_RPS F_P50 F_P99 < <(load "http://127.0.0.1:$PORT_F/")
kill -TERM "$FILE_PID"; wait "$FILE_PID" 2>/dev/null || true
START_MS="$(startup_ms)"

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
printf '\n| target | req/s | p50 ms | p99 ms | vs bare hyper |\n|---|---:|---:|---:|---:|\n'
printf '| bare hyper GET / (median of %s) | %s | %s | %s | 1.00 |\n' "$ROUNDS" "$H_RPS" "$H_P50" "$H_P99"
printf '| demo-app GET / (median of %s) | %s | %s | %s | %s |\n' "$ROUNDS" "$A_RPS" "$A_P50" "$A_P99" "$(ratio "$A_RPS" "$H_RPS")"
printf '| demo-app GET /, log to a file on the same core | %s | %s | %s | %s |\n' "$F_RPS" "$F_P50" "$F_P99" "$(ratio "$F_RPS" "$H_RPS")"
printf '| demo-app GET /health (median of %s) | %s | %s | %s | %s |\n' "$ROUNDS" "$HE_RPS" "$HE_P50" "$HE_P99" "$(ratio "$HE_RPS" "$H_RPS")"
printf '| demo-app GET /metrics | %s | %s | %s | %s |\n' "$M_RPS" "$M_P50" "$M_P99" "$(ratio "$M_RPS" "$H_RPS")"
printf '\n| demo-app | value |\n|---|---:|\n'
printf '| idle RSS | %.1f MB |\n' "$(python3 -c "print($IDLE_KB/1024)")"
printf '| peak RSS under load | %.1f MB |\n' "$(python3 -c "print($LOADED_KB/1024)")"
printf '| /health vs its own GET / (medians) | %s |\n' "$(ratio "$HE_RPS" "$A_RPS")"
printf '| start-up (exec to first connection, median of 20) | %s ms |\n' "$START_MS"
printf '| log lines the log consumer received (GET /, /health, /metrics runs) | %s |\n' "$LINES"
printf '\nRuns (req/s p50 p99): hyper GET /: %s| demo-app GET /: %s| demo-app /health: %s\n' \
  "$(printf '[%s] ' "${H_RUNS[@]}")" "$(printf '[%s] ' "${A_RUNS[@]}")" "$(printf '[%s] ' "${HE_RUNS[@]}")"
