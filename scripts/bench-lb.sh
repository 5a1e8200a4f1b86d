#!/usr/bin/env bash
# The local load balancer against haproxy, and scale-out, in one run:
#
#   1. `up` with 2 tasks, and haproxy (nbthread 1, round robin, http-reuse always) over the
#      same 2 tasks: wrk at c=50 and at c=200 through each, REPS times alternately; median
#      req/s and p99 of each, and their ratios (load balancer / haproxy).
#      With BASELINE_BIN (an older build of devops-agent-demo, e.g. the commit before a change
#      to the load balancer), a second `up` of that build runs beside the first with its own 2
#      tasks and its own haproxy, and every rep measures all four alternately: the table then
#      also gives the baseline's ratio to its haproxy and the new load balancer's req/s over
#      the baseline's.
#   2. Scale-out: `scale 4`, then `scale 8` on the same `up` (each waits until that many
#      targets are healthy); at 2, 4 and 8 tasks: wrk c=50 through the load balancer and
#      through haproxy over the same tasks, and the collector's tick time from `up`'s own
#      /metrics (devops_agent_collector_tick_seconds: mean and worst bucket over the run).
#
# `up` (load balancer, scheduler, collector, log pipeline into SQLite), its tasks and haproxy
# all run on core 0, wrk on core 1. The tasks log every request in every measurement, so the
# runtime ingests logs while both proxies are measured.
# Usage: scripts/bench-lb.sh [DURATION_SECONDS] [REPS]   (defaults 10, 3)
#        SCALE=0 scripts/bench-lb.sh ...   skips part 2 (the load balancer vs haproxy table only)
#        LB_BIN=path/to/devops-agent-demo  measures that build instead of building the working tree
#        BASELINE_BIN=path/to/older/devops-agent-demo  adds the baseline columns to part 1
set -euo pipefail

DURATION="${1:-10}"
REPS="${2:-3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

# shellcheck source=scripts/lib/bench.sh
. "$ROOT/scripts/lib/bench.sh"
need_tools wrk haproxy taskset python3 curl

if [ -n "${LB_BIN:-}" ]; then
  BIN="$LB_BIN"
else
  cargo build --release -q --bin devops-agent-demo
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/devops-agent-demo"
fi
BASE="${BASELINE_BIN:-}"
for b in "$BIN" $BASE; do [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }; done
WORK="$(mktemp -d)"
STATE="$WORK/state"
UP_PID=""
HA_PID=""
B_UP_PID=""
B_HA_PID=""
cleanup() {
  for p in "$HA_PID" "$B_HA_PID"; do
    if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi
  done
  for p in "$UP_PID" "$B_UP_PID"; do
    if [ -n "$p" ]; then kill -INT "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

cpu_ticks() { # /proc/.../stat of the proxy -> its user + system clock ticks so far
  python3 -c 'import sys; f = open(sys.argv[1]).read().rsplit(")", 1)[1].split(); print(int(f[11]) + int(f[12]))' "$1"
}

load() { # url connections [stat] -> "req/s p99_ms errors cpu_us_per_request"
  local out before=0 after=0
  [ -n "${3:-}" ] && before="$(cpu_ticks "$3")"
  out="$(taskset -c 1 wrk -t1 -c"$2" -d"${DURATION}s" --latency "$1")"
  [ -n "${3:-}" ] && after="$(cpu_ticks "$3")"
  python3 - "$out" "$((after - before))" "$(getconf CLK_TCK)" <<'PY'
import re, sys
out, ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)$", v); x, u = float(m.group(1)), m.group(2)
    return round(x / 1000 if u == "us" else x * 1000 if u == "s" else x, 3)
rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
errs = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", out))
errs += sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
done = int(re.search(r"(\d+) requests in", out).group(1))
print(rps, p99, errs, round(ticks * 1e6 / hz / done, 1) if done else "nan")
PY
}

task_ports() { # [bin state]
  "${1:-$BIN}" --state-dir "${2:-$STATE}" status --json | python3 -c '
import json, sys
for t in json.load(sys.stdin)["tasks"]:
    if t["health"] == "healthy" and not t["stopping"]:
        print(t["port"])'
}

wait_healthy() { # n [bin state]
  for _ in $(seq 1 600); do
    [ "$(task_ports "${2:-$BIN}" "${3:-$STATE}" | wc -l)" -ge "$1" ] && return 0
    sleep 0.2
  done
  "${2:-$BIN}" --state-dir "${3:-$STATE}" status >&2
  echo "fewer than $1 healthy tasks after 120 s" >&2
  exit 1
}

start_haproxy() { # ports... (on HA_PORT; sets HA_PID)
  haproxy_on "$HA_PORT" "$@"; HA_PID="$LAST_PID"
}

haproxy_on() { # port ports... (sets LAST_PID)
  local port="$1"; shift
  {
    cat <<CFG
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:${port}
  default_backend tasks
backend tasks
  balance roundrobin
  http-reuse always
CFG
    local i=0
    for p in "$@"; do i=$((i + 1)); echo "  server t$i 127.0.0.1:$p"; done
  } >"$WORK/haproxy-$port.cfg"
  taskset -c 0 haproxy -f "$WORK/haproxy-$port.cfg" -db >/dev/null 2>&1 &
  LAST_PID=$!
  for _ in $(seq 1 50); do
    curl -fs -o /dev/null "http://127.0.0.1:${port}/health" && return 0
    sleep 0.1
  done
  echo "haproxy did not start" >&2; exit 1
}

stop_haproxy() { kill "$HA_PID"; wait "$HA_PID" 2>/dev/null || true; HA_PID=""; }

ticks() { # -> "count sum_seconds le_bucket_counts..." of the collector tick histogram
  curl -fs -H "authorization: Bearer $(cat "$STATE/control.token")" "http://127.0.0.1:${CTL_PORT}/metrics" |
    python3 -c '
import sys
count = total = 0.0
buckets = []
for line in sys.stdin:
    if line.startswith("devops_agent_collector_tick_seconds_bucket"):
        le = line.split("le=\"")[1].split("\"")[0]
        buckets.append(f"{le}={line.split()[-1]}")
    elif line.startswith("devops_agent_collector_tick_seconds_count"):
        count = float(line.split()[-1])
    elif line.startswith("devops_agent_collector_tick_seconds_sum"):
        total = float(line.split()[-1])
print(int(count), total, *buckets)'
}

tick_summary() { # before after -> "ticks mean_ms worst_bucket_ms"
  python3 - "$1" "$2" <<'PY'
import sys
b, a = sys.argv[1].split(), sys.argv[2].split()
n = int(a[0]) - int(b[0])
mean = (float(a[1]) - float(b[1])) / n * 1000 if n else float("nan")
worst = "-"
for x, y in zip(b[2:], a[2:]):
    le, before = x.split("="); _, after = y.split("=")
    if int(after) - int(before) == n:  # the first bucket holding every tick of the run
        worst = "≤ " + ("∞" if le == "+Inf" else f"{float(le) * 1000:g}")
        break
print(n, f"{mean:.2f}", worst)
PY
}

median() { python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

start_up() { # bin state lb_port ctl_port log (sets LAST_PID)
  taskset -c 0 "$1" --state-dir "$2" up --count 2 --port "$3" --control-port "$4" --time-scale 20 >"$5" 2>&1 &
  LAST_PID=$!
}

LB_PORT="$(free_port)"; CTL_PORT="$(free_port)"; HA_PORT="$(free_port)"
start_up "$BIN" "$STATE" "$LB_PORT" "$CTL_PORT" "$WORK/up.log"; UP_PID="$LAST_PID"
if [ -n "$BASE" ]; then
  B_STATE="$WORK/baseline-state"; B_LB_PORT="$(free_port)"; B_CTL_PORT="$(free_port)"; B_HA_PORT="$(free_port)"
  start_up "$BASE" "$B_STATE" "$B_LB_PORT" "$B_CTL_PORT" "$WORK/baseline-up.log"; B_UP_PID="$LAST_PID"
fi
wait_ready "$WORK/up.log"
wait_healthy 2
mapfile -t PORTS < <(task_ports)
start_haproxy "${PORTS[@]}"
if [ -n "$BASE" ]; then
  wait_ready "$WORK/baseline-up.log"
  wait_healthy 2 "$BASE" "$B_STATE"
  mapfile -t B_PORTS < <(task_ports "$BASE" "$B_STATE")
  haproxy_on "$B_HA_PORT" "${B_PORTS[@]}"; B_HA_PID="$LAST_PID"
fi

lb_stat() { # up pid -> /proc stat of its lb-data-path thread
  local tid
  tid="$(ps -T -p "$1" -o spid=,comm= | awk '$2 == "lb-data-path" { print $1 }')"
  [ -n "$tid" ] || { echo "no lb-data-path thread in $1" >&2; exit 1; }
  echo "/proc/$1/task/$tid/stat"
}
LB_STAT="$(lb_stat "$UP_PID")"
B_LB_STAT=""
if [ -n "$BASE" ]; then B_LB_STAT="$(lb_stat "$B_UP_PID")"; fi

URL_PATH="/api/products/3"
echo "# $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates scripts || echo '+changes'), $(nproc) cores"
echo "# measured: $BIN${BASE:+; baseline: $BASE}"
echo "# up, its tasks and haproxy on core 0; wrk -t1 -d${DURATION}s on core 1; medians of $REPS reps, load balancer and haproxy alternating"
if [ -z "$BASE" ]; then
  printf '\n| tasks | clients | local LB req/s | haproxy req/s | ratio | LB p99 ms | haproxy p99 ms | p99 ratio | errors LB/haproxy |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
else
  printf '\n| clients | LB req/s | haproxy req/s | ratio | baseline LB req/s | its haproxy req/s | baseline ratio | LB / baseline | LB p99 ms | haproxy p99 ms | p99 ratio | baseline p99 ms | its haproxy p99 ms | baseline p99 ratio | errors |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
fi
CPU_ROWS=()
for c in 50 200; do
  L_RPS=(); L_P99=(); H_RPS=(); H_P99=(); BL_RPS=(); BL_P99=(); BH_RPS=(); BH_P99=(); L_E=0; H_E=0; B_E=0
  L_CPU=(); H_CPU=(); BL_CPU=(); BH_CPU=()
  for _ in $(seq 1 "$REPS"); do
    read -r r p e u < <(load "http://127.0.0.1:${LB_PORT}${URL_PATH}" "$c" "$LB_STAT"); L_RPS+=("$r"); L_P99+=("$p"); L_E=$((L_E + e)); L_CPU+=("$u")
    read -r r p e u < <(load "http://127.0.0.1:${HA_PORT}${URL_PATH}" "$c" "/proc/$HA_PID/stat"); H_RPS+=("$r"); H_P99+=("$p"); H_E=$((H_E + e)); H_CPU+=("$u")
    if [ -n "$BASE" ]; then
      read -r r p e u < <(load "http://127.0.0.1:${B_LB_PORT}${URL_PATH}" "$c" "$B_LB_STAT"); BL_RPS+=("$r"); BL_P99+=("$p"); B_E=$((B_E + e)); BL_CPU+=("$u")
      read -r r p e u < <(load "http://127.0.0.1:${B_HA_PORT}${URL_PATH}" "$c" "/proc/$B_HA_PID/stat"); BH_RPS+=("$r"); BH_P99+=("$p"); B_E=$((B_E + e)); BH_CPU+=("$u")
    fi
  done
  CPU_ROWS+=("| $c | $(median "${L_CPU[@]}") | $(median "${H_CPU[@]}")${BASE:+ | $(median "${BL_CPU[@]}") | $(median "${BH_CPU[@]}")} |")
  lr="$(median "${L_RPS[@]}")"; hr="$(median "${H_RPS[@]}")"; lp="$(median "${L_P99[@]}")"; hp="$(median "${H_P99[@]}")"
  if [ -z "$BASE" ]; then
    printf '| 2 | %s | %.0f | %.0f | **%s** | %s | %s | **%s** | %s/%s |\n' "$c" "$lr" "$hr" "$(ratio "$lr" "$hr")" "$lp" "$hp" "$(ratio "$lp" "$hp")" "$L_E" "$H_E"
  else
    blr="$(median "${BL_RPS[@]}")"; bhr="$(median "${BH_RPS[@]}")"; blp="$(median "${BL_P99[@]}")"; bhp="$(median "${BH_P99[@]}")"
    printf '| %s | %.0f | %.0f | **%s** | %.0f | %.0f | %s | **%s** | %s | %s | **%s** | %s | %s | %s | %s/%s/%s |\n' \
      "$c" "$lr" "$hr" "$(ratio "$lr" "$hr")" "$blr" "$bhr" "$(ratio "$blr" "$bhr")" "$(ratio "$lr" "$blr")" \
      "$lp" "$hp" "$(ratio "$lp" "$hp")" "$blp" "$bhp" "$(ratio "$blp" "$bhp")" "$L_E" "$H_E" "$B_E"
  fi
done
printf '\nCPU per request (µs, medians; the load balancer: its lb-data-path thread; haproxy: its process)\n\n'
if [ -z "$BASE" ]; then
  printf '| clients | LB | haproxy |\n|---:|---:|---:|\n'
else
  printf '| clients | LB | haproxy | baseline LB | its haproxy |\n|---:|---:|---:|---:|---:|\n'
fi
printf '%s\n' "${CPU_ROWS[@]}"
if [ -n "$BASE" ]; then
  kill "$B_HA_PID" 2>/dev/null || true; wait "$B_HA_PID" 2>/dev/null || true; B_HA_PID=""
  kill -INT "$B_UP_PID" 2>/dev/null || true; wait "$B_UP_PID" 2>/dev/null || true; B_UP_PID=""
fi
stop_haproxy
[ "${SCALE:-1}" = 0 ] && exit 0

printf '\n## scale-out: c=50, one %ss run per proxy per count\n' "$DURATION"
printf '\n| tasks | local LB req/s | haproxy req/s | ratio | LB p99 ms | haproxy p99 ms | collector ticks | mean tick ms | every tick ≤ ms |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for n in 2 4 8; do
  if [ "$n" -ne 2 ]; then
    "$BIN" --state-dir "$STATE" scale "$n" >/dev/null
    wait_healthy "$n"
  fi
  mapfile -t PORTS < <(task_ports)
  [ "${#PORTS[@]}" -eq "$n" ] || { echo "expected $n healthy tasks, found ${#PORTS[@]}" >&2; exit 1; }
  before="$(ticks)"
  read -r lr lp le _ < <(load "http://127.0.0.1:${LB_PORT}${URL_PATH}" 50)
  after="$(ticks)"
  read -r tn tmean tworst < <(tick_summary "$before" "$after")
  start_haproxy "${PORTS[@]}"
  read -r hr hp he _ < <(load "http://127.0.0.1:${HA_PORT}${URL_PATH}" 50)
  stop_haproxy
  [ "$le" -eq 0 ] && [ "$he" -eq 0 ] || echo "errors at $n tasks: load balancer $le, haproxy $he" >&2
  printf '| %s | %.0f | %.0f | %s | %s | %s | %s | %s | %s |\n' "$n" "$lr" "$hr" "$(ratio "$lr" "$hr")" "$lp" "$hp" "$tn" "$tmean" "$tworst"
done
