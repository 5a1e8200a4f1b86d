#!/usr/bin/env bash
# Load balancer overhead and log pipeline completeness, in one run:
#
#   1. wrk straight to one task, through the local load balancer (2 tasks),
#      and through haproxy (round robin over the same 2 tasks): req/s, p50, p99.
#   2. No data lost: a sustained run through the load balancer at >= 4,000 req/s
#      (2 tasks at >= 2,000 req/s each) for LOSS_SECONDS, then `up` is stopped and
#      every task's own count of lines written (logged as its last line) is
#      compared with the lines stored in SQLite.
#
# Everything under test (runtime, tasks, haproxy) runs on core 0, wrk on core 1.
# Usage: scripts/bench-runtime.sh [DURATION_SECONDS] [LOSS_SECONDS]   (defaults 10, 60)
set -euo pipefail

DURATION="${1:-10}"
LOSS_SECONDS="${2:-60}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

# shellcheck source=scripts/lib/bench.sh
. "$ROOT/scripts/lib/bench.sh"
need_tools wrk haproxy taskset python3

cargo build --release -q --bin devops-agent-demo
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/devops-agent-demo"
WORK="$(mktemp -d)"
UP_PID=""
HA_PID=""
cleanup() {
  if [ -n "$HA_PID" ]; then kill "$HA_PID" 2>/dev/null || true; fi
  if [ -n "$UP_PID" ]; then kill -INT "$UP_PID" 2>/dev/null || true; wait "$UP_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

load() { # url -> "req/s p50 p99 non2xx+socket-errors"
  local out
  out="$(taskset -c 1 wrk -t1 -c50 -d"${2:-$DURATION}s" --latency "$1")"
  python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)$", v); x, u = float(m.group(1)), m.group(2)
    return round(x / 1000 if u == "us" else x * 1000 if u == "s" else x, 3)
rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
errs = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", out))
errs += sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
print(rps, p50, p99, errs)
PY
}

LB_PORT="$(free_port)"; CTL_PORT="$(free_port)"; HA_PORT="$(free_port)"
taskset -c 0 "$BIN" --state-dir "$WORK/state" up --port "$LB_PORT" --control-port "$CTL_PORT" --time-scale 20 >"$WORK/up.log" 2>&1 &
UP_PID=$!
wait_ready "$WORK/up.log" 30 "$UP_PID"
mapfile -t PORTS < <("$BIN" --state-dir "$WORK/state" status --json | python3 -c 'import json,sys; [print(t["port"]) for t in json.load(sys.stdin)["tasks"]]')

cat >"$WORK/haproxy.cfg" <<CFG
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:${HA_PORT}
  default_backend tasks
backend tasks
  balance roundrobin
  http-reuse always
  server t1 127.0.0.1:${PORTS[0]}
  server t2 127.0.0.1:${PORTS[1]}
CFG
taskset -c 0 haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 &
HA_PID=$!
sleep 0.5

echo "# $(date -u +%FT%TZ) $(nproc) cores; runtime, tasks and haproxy on core 0, wrk -t1 -c50 -d${DURATION}s on core 1"
read -r D_RPS D_P50 D_P99 D_ERR < <(load "http://127.0.0.1:${PORTS[0]}/api/products/3")
read -r L_RPS L_P50 L_P99 L_ERR < <(load "http://127.0.0.1:${LB_PORT}/api/products/3")
read -r H_RPS H_P50 H_P99 H_ERR < <(load "http://127.0.0.1:${HA_PORT}/api/products/3")
printf '\n| path | req/s | p50 ms | p99 ms | errors | vs haproxy |\n|---|---:|---:|---:|---:|---:|\n'
printf '| straight to one task | %s | %s | %s | %s | %s |\n' "$D_RPS" "$D_P50" "$D_P99" "$D_ERR" "$(ratio "$D_RPS" "$H_RPS")"
printf '| local load balancer, 2 tasks | %s | %s | %s | %s | %s |\n' "$L_RPS" "$L_P50" "$L_P99" "$L_ERR" "$(ratio "$L_RPS" "$H_RPS")"
printf '| haproxy, same 2 tasks | %s | %s | %s | %s | 1.00 |\n' "$H_RPS" "$H_P50" "$H_P99" "$H_ERR"
kill "$HA_PID"; HA_PID=""

echo
echo "## no data lost: ${LOSS_SECONDS}s through the load balancer, then stop and count"
read -r S_RPS _ _ S_ERR < <(load "http://127.0.0.1:${LB_PORT}/api/products/3" "$LOSS_SECONDS")
kill -INT "$UP_PID"; wait "$UP_PID" || true; UP_PID=""
echo "wrk errors during the run: $S_ERR"
python3 - "$WORK/state/state.db" "$S_RPS" "$LOSS_SECONDS" <<'PY'
import json, sqlite3, sys
db, rps, secs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
con = sqlite3.connect(db)
stored = dict(con.execute("SELECT task_id, COUNT(*) FROM logs GROUP BY task_id"))
print(f"sustained {rps:.0f} req/s for {secs} s ({rps/2:.0f} req/s per task)\n")
print("| task | lines the task wrote | lines stored | lost |\n|---|---:|---:|---:|")
bad = 0
for task_id, line in con.execute("SELECT task_id, line FROM logs WHERE message = 'Drain complete, exiting' ORDER BY task_id"):
    written = json.loads(line)["log_lines_written"]
    lost = written - stored[task_id]
    bad += lost != 0
    print(f"| {task_id} | {written} | {stored[task_id]} | {lost} |")
sys.exit(1 if bad else 0)
PY
