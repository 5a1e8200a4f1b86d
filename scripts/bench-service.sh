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
# Two references: the bare hyper server (fixed 19-byte body, no log), and the same
# server with `--like-demo` (demo-app's response headers and body size, one access
# line per request through demo-app's logger to a pipe, the same metrics update):
# the first is the issue's ceiling, the second separates the work every GET / must do
# from what routing, middleware and the connection limits add.
#
# Usage: scripts/bench-service.sh [DURATION_SECONDS]   (default 10; ROUNDS=3)
#        scripts/bench-service.sh instructions [REQUESTS]   (default 2000)
#
# `instructions` counts the user-space instructions each server executes per request
# (valgrind's callgrind; one keep-alive connection, REQUESTS sequential requests, the
# count of a 200-request run subtracted so start-up cancels out). Unlike req/s it
# does not depend on what else the machine runs, and it needs no lock; it does not
# see the kernel, which both servers pay alike (the same syscalls per request).
#
# The script builds both servers, then measures. To measure without building
# (e.g. under a lock shared with other benchmarks, which must not wait on
# cargo), build first and pass the binaries: DEMO_APP_BIN=... BARE_HYPER_BIN=...
# OLD_DEMO_APP_BIN=... adds an earlier demo-app build to the same rotation (GET / and
# /health), with its idle RSS and start-up measured alternately with the new one.
set -euo pipefail

MODE=throughput
N=2000
if [ "${1:-}" = instructions ]; then MODE=instructions; N="${2:-2000}"; set --; fi
DURATION="${1:-10}"
ROUNDS="${ROUNDS:-3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

# shellcheck source=scripts/lib/bench.sh
. "$ROOT/scripts/lib/bench.sh"
if [ "$MODE" = instructions ]; then
  need_tools valgrind taskset python3
else
  need_tools wrk taskset python3
fi
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores: server on core 0, wrk on core 1" >&2; exit 2; }

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
if [ -n "${DEMO_APP_BIN:-}" ] || [ -n "${BARE_HYPER_BIN:-}" ]; then
  APP="${DEMO_APP_BIN:?DEMO_APP_BIN and BARE_HYPER_BIN go together}"
  HYPER="${BARE_HYPER_BIN:?DEMO_APP_BIN and BARE_HYPER_BIN go together}"
  for b in "$APP" "$HYPER"; do [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }; done
  OLD="${OLD_DEMO_APP_BIN:-}"
  [ -z "$OLD" ] || [ -x "$OLD" ] || { echo "not an executable: $OLD" >&2; exit 2; }
else
  cargo build --release -q -p demo-app --bin demo-app --example bare_hyper
  APP="$TARGET/demo-app"
  HYPER="$TARGET/examples/bare_hyper"
  OLD="${OLD_DEMO_APP_BIN:-}"
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

# Start-up: exec to first accepted connection, median of 20 runs per binary, the
# binaries alternating (so the machine's load falls on each alike). Prints one median
# per binary given, in order.
startup_ms() {
  python3 - "$@" <<'PY'
import os, socket, subprocess, sys, time
apps = sys.argv[1:]
times = {a: [] for a in apps}
for _ in range(20):
    for app in apps:
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
                    sys.exit(f"{app} did not start")
        times[app].append((time.perf_counter() - t0) * 1000)
        p.terminate(); p.wait()
print(" ".join(str(round(sorted(t)[len(t) // 2], 2)) for t in times.values()))
PY
}

# User-space instructions per request under callgrind (see the header).
# ir_per_request NAME PATH N BIN [--like-demo]: prints "NAME PATH instructions". demo-app
# (NAME app or old) takes its port from PORT, the bare server as its first argument.
ir_per_request() {
  local name="$1" path="$2" n="$3" bin="$4" extra=("${@:5}")
  local totals=()
  for count in 200 $((200 + n)); do
    local port out pid args=()
    port="$(free_port)"
    out="$WORK/callgrind.$name.$count"
    case "$name" in app|old) ;; *) args=("$port" "${extra[@]}") ;; esac
    PORT="$port" HOST=127.0.0.1 valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" "${args[@]}" \
      >/dev/null 2>&1 & pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
    python3 - "$port" "$path" "$count" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for _ in range(int(sys.argv[3])):
    c.request("GET", sys.argv[2]); r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
    sleep 0.3; kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    totals+=("$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')")
  done
  echo "$name $path $(( (totals[1] - totals[0]) / n ))"
}

if [ "$MODE" = instructions ]; then
  echo "# $(date -u +%FT%TZ) user-space instructions per request (callgrind), $N sequential keep-alive requests"
  printf '\n| server | path | instructions/request | vs bare hyper |\n|---|---|---:|---:|\n'
  read -r _ _ BARE < <(ir_per_request bare / "$N" "$HYPER")
  printf '| bare hyper | / | %s | 1.00 |\n' "$BARE"
  read -r _ _ LIKE < <(ir_per_request like / "$N" "$HYPER" --like-demo)
  printf '| bare hyper --like-demo | / | %s | %s |\n' "$LIKE" "$(ratio "$LIKE" "$BARE")"
  for who in app old; do
    bin="$APP"; [ "$who" = app ] || bin="$OLD"
    [ -n "$bin" ] || continue
    for path in / /health; do
      read -r _ _ IR < <(ir_per_request "$who" "$path" "$N" "$bin")
      printf '| %s | %s | %s | %s |\n' "$([ "$who" = app ] && echo demo-app || echo "old demo-app")" "$path" "$IR" "$(ratio "$IR" "$BARE")"
    done
  done
  exit 0
fi

echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores, wrk -t1 -c50 -d${DURATION}s, server on core 0, wrk on core 1"

PORT_H="$(free_port)"
taskset -c 0 "$HYPER" "$PORT_H" & HYPER_PID=$!; PIDS+=("$HYPER_PID")
wait_port "$PORT_H"
PORT_L="$(free_port)"
taskset -c 0 "$HYPER" "$PORT_L" --like-demo > >(taskset -c 1 wc -l >/dev/null) & LIKE_PID=$!; PIDS+=("$LIKE_PID")
wait_port "$PORT_L"

PORT_A="$(free_port)"
# Access logs go to a pipe read by another process on the other core, as a
# container's stdout goes to the log driver (awslogs runs outside the task).
PORT="$PORT_A" HOST=127.0.0.1 taskset -c 0 "$APP" > >(taskset -c 1 wc -l >"$WORK/lines") & APP_PID=$!; PIDS+=("$APP_PID")
wait_port "$PORT_A"
if [ -n "$OLD" ]; then
  PORT_O="$(free_port)"
  PORT="$PORT_O" HOST=127.0.0.1 taskset -c 0 "$OLD" > >(taskset -c 1 wc -l >/dev/null) & OLD_PID=$!; PIDS+=("$OLD_PID")
  wait_port "$PORT_O"
fi
sleep 0.5
IDLE_KB="$(rss_kb "$APP_PID")"
[ -z "$OLD" ] || OLD_IDLE_KB="$(rss_kb "$OLD_PID")"
# GET / against bare hyper: ROUNDS alternating runs each, medians compared (the
# machine is shared; alternating spreads its noise over every side).
# /health joins the rotation: its target is a ratio to demo-app's own GET /.
H_RUNS=(); L_RUNS=(); A_RUNS=(); HE_RUNS=(); O_RUNS=(); OHE_RUNS=()
for _ in $(seq 1 "$ROUNDS"); do
  H_RUNS+=("$(load "http://127.0.0.1:$PORT_H/")")
  L_RUNS+=("$(load "http://127.0.0.1:$PORT_L/")")
  A_RUNS+=("$(load "http://127.0.0.1:$PORT_A/")")
  HE_RUNS+=("$(load "http://127.0.0.1:$PORT_A/health")")
  if [ -n "$OLD" ]; then
    O_RUNS+=("$(load "http://127.0.0.1:$PORT_O/")")
    OHE_RUNS+=("$(load "http://127.0.0.1:$PORT_O/health")")
  fi
done
median() { printf '%s\n' "$@" | sort -n -k1,1 | sed -n "$(( ($# + 1) / 2 ))p"; }
read -r H_RPS H_P50 H_P99 <<<"$(median "${H_RUNS[@]}")"
read -r A_RPS A_P50 A_P99 <<<"$(median "${A_RUNS[@]}")"
read -r HE_RPS HE_P50 HE_P99 <<<"$(median "${HE_RUNS[@]}")"
read -r L_RPS L_P50 L_P99 <<<"$(median "${L_RUNS[@]}")"
if [ -n "$OLD" ]; then
  read -r O_RPS O_P50 O_P99 <<<"$(median "${O_RUNS[@]}")"
  read -r OHE_RPS OHE_P50 OHE_P99 <<<"$(median "${OHE_RUNS[@]}")"
  kill "$OLD_PID"; wait "$OLD_PID" 2>/dev/null || true
fi
kill "$HYPER_PID" "$LIKE_PID"; wait "$HYPER_PID" "$LIKE_PID" 2>/dev/null || true
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
if [ -n "$OLD" ]; then read -r START_MS OLD_START_MS <<<"$(startup_ms "$APP" "$OLD")"; else START_MS="$(startup_ms "$APP")"; fi

printf '\n| target | req/s | p50 ms | p99 ms | vs bare hyper |\n|---|---:|---:|---:|---:|\n'
printf '| bare hyper GET / (median of %s) | %s | %s | %s | 1.00 |\n' "$ROUNDS" "$H_RPS" "$H_P50" "$H_P99"
printf '| bare hyper --like-demo GET / (median of %s) | %s | %s | %s | %s |\n' "$ROUNDS" "$L_RPS" "$L_P50" "$L_P99" "$(ratio "$L_RPS" "$H_RPS")"
printf '| demo-app GET / (median of %s) | %s | %s | %s | %s |\n' "$ROUNDS" "$A_RPS" "$A_P50" "$A_P99" "$(ratio "$A_RPS" "$H_RPS")"
printf '| demo-app GET /, log to a file on the same core | %s | %s | %s | %s |\n' "$F_RPS" "$F_P50" "$F_P99" "$(ratio "$F_RPS" "$H_RPS")"
printf '| demo-app GET /health (median of %s) | %s | %s | %s | %s |\n' "$ROUNDS" "$HE_RPS" "$HE_P50" "$HE_P99" "$(ratio "$HE_RPS" "$H_RPS")"
printf '| demo-app GET /metrics | %s | %s | %s | %s |\n' "$M_RPS" "$M_P50" "$M_P99" "$(ratio "$M_RPS" "$H_RPS")"
if [ -n "$OLD" ]; then
  printf '| old demo-app GET / (median of %s) | %s | %s | %s | %s |\n' "$ROUNDS" "$O_RPS" "$O_P50" "$O_P99" "$(ratio "$O_RPS" "$H_RPS")"
  printf '| old demo-app GET /health (median of %s) | %s | %s | %s | %s |\n' "$ROUNDS" "$OHE_RPS" "$OHE_P50" "$OHE_P99" "$(ratio "$OHE_RPS" "$H_RPS")"
fi
printf '\n| demo-app | value |\n|---|---:|\n'
printf '| idle RSS | %.1f MB |\n' "$(python3 -c "print($IDLE_KB/1024)")"
printf '| peak RSS under load | %.1f MB |\n' "$(python3 -c "print($LOADED_KB/1024)")"
printf '| /health vs its own GET / (medians) | %s |\n' "$(ratio "$HE_RPS" "$A_RPS")"
printf '| start-up (exec to first connection, median of 20) | %s ms |\n' "$START_MS"
printf '| GET / vs the --like-demo reference (medians) | %s |\n' "$(ratio "$A_RPS" "$L_RPS")"
if [ -n "$OLD" ]; then
  printf '| old: idle RSS | %.1f MB |\n' "$(python3 -c "print($OLD_IDLE_KB/1024)")"
  printf '| old: /health vs its own GET / (medians) | %s |\n' "$(ratio "$OHE_RPS" "$O_RPS")"
  printf '| old: start-up (alternating with the new, median of 20) | %s ms |\n' "$OLD_START_MS"
  printf '| new GET / vs old GET / (medians) | %s |\n' "$(ratio "$A_RPS" "$O_RPS")"
fi
printf '| log lines the log consumer received (GET /, /health, /metrics runs) | %s |\n' "$LINES"
printf '\nRuns (req/s p50 p99): hyper GET /: %s| like-demo GET /: %s| demo-app GET /: %s| demo-app /health: %s\n' \
  "$(printf '[%s] ' "${H_RUNS[@]}")" "$(printf '[%s] ' "${L_RUNS[@]}")" "$(printf '[%s] ' "${A_RUNS[@]}")" "$(printf '[%s] ' "${HE_RUNS[@]}")"
if [ -n "$OLD" ]; then
  printf 'Old (req/s p50 p99): GET /: %s| /health: %s\n' "$(printf '[%s] ' "${O_RUNS[@]}")" "$(printf '[%s] ' "${OHE_RUNS[@]}")"
fi
