#!/usr/bin/env bash
# Log pipeline ceiling: how many lines a second `up` stores (tasks' stdout ->
# the task drain in crates/runtime/src/task.rs -> the store writer) with
# nothing lost, and what happens past that rate.
#
#   1. The store writer alone (crates/store/examples/ingest.rs): LINES access
#      lines shaped like demo-app's, parsed as the drain parses them, sent
#      through Writer::log as fast as one thread can; lines/s to commit, lines
#      lost (exact count), the writer's peak backlog.
#   2. The pipeline alone, without HTTP load (crates/runtime/examples/drain.rs):
#      2 generator processes write LINES demo-app-shaped lines each to their
#      stdout as fast as the pipes take them, drained by the same code `up`
#      runs (task::drain) into a store; lines/s until the last is committed,
#      lines lost and filter matches checked exactly, the writer's peak
#      backlog (bounded: the drains pause at the limit, the generators' writes
#      block) and how long the drains paused.
#   3. The whole pipeline: a release `up` with 2 tasks, wrk straight to both
#      tasks (every request is an access line) for SECONDS; `status --json`
#      sampled every second for the writer's backlog; then `up` is stopped with
#      SIGINT and each task's own count of lines written (its last line) is
#      compared with the lines stored.
#
#   flock /tmp/suite.lock scripts/bench-ingest.sh [SECONDS] [LINES]   (defaults 20, 1000000)
#
# Loopback only; every process is stopped at exit. Installs wrk if missing.
set -euo pipefail

SECONDS_RUN="${1:-20}"
LINES="${2:-1000000}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

# shellcheck source=scripts/lib/bench.sh
. "$ROOT/scripts/lib/bench.sh"
need_tools wrk python3

cargo build --release -q --bin devops-agent-demo
cargo build --release -q -p demo-store --example ingest
cargo build --release -q -p demo-runtime --example drain
BIN="$TARGET/release/devops-agent-demo"
WORK="$(mktemp -d)"
UP_PID=""
WRK_PIDS=()
cleanup() {
  for p in "${WRK_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$UP_PID" ]; then kill -INT "$UP_PID" 2>/dev/null || true; wait "$UP_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD), $(nproc) cores shared with other builds"
echo
echo "## 1. the store writer alone"
"$TARGET/release/examples/ingest" "$LINES"

echo
echo "## 2. the pipeline alone: 2 generator tasks, $LINES lines each, through the drain"
"$TARGET/release/examples/drain" 2 "$LINES"

echo
echo "## 3. the whole pipeline: wrk straight to both tasks for ${SECONDS_RUN} s"
LB_PORT="$(free_port)"; CTL_PORT="$(free_port)"
"$BIN" --state-dir "$WORK/state" up --port "$LB_PORT" --control-port "$CTL_PORT" --time-scale 20 >"$WORK/up.log" 2>&1 &
UP_PID=$!
wait_ready "$WORK/up.log" 30 "$UP_PID"
mapfile -t PORTS < <("$BIN" --state-dir "$WORK/state" status --json | python3 -c 'import json,sys; [print(t["port"]) for t in json.load(sys.stdin)["tasks"]]')

before="$(python3 -c "import sqlite3; print(sqlite3.connect('$WORK/state/state.db').execute('SELECT COUNT(*) FROM logs').fetchone()[0])")"
for p in "${PORTS[@]}"; do
  wrk -t1 -c32 -d"${SECONDS_RUN}s" "http://127.0.0.1:$p/api/products/3" >"$WORK/wrk-$p.txt" 2>&1 &
  WRK_PIDS+=($!)
done
: >"$WORK/backlog"
for _ in $(seq 1 "$SECONDS_RUN"); do
  sleep 1
  "$BIN" --state-dir "$WORK/state" status --json 2>/dev/null \
    | python3 -c 'import json,sys; s=json.load(sys.stdin)["store"]; print(s.get("backlog_records",0), s.get("peak_backlog_records",0))' >>"$WORK/backlog" || true
done
for p in "${WRK_PIDS[@]}"; do wait "$p" || true; done
WRK_PIDS=()
kill -INT "$UP_PID"; wait "$UP_PID" || true; UP_PID=""
grep -h "Requests/sec" "$WORK"/wrk-*.txt | sed 's/^/wrk: /'
grep -h "store: the writer is" "$WORK/up.log" | head -3 || true
python3 - "$WORK/state/state.db" "$SECONDS_RUN" "$before" "$WORK/backlog" <<'PY'
import json, sqlite3, sys
db, secs, before, backlog = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
con = sqlite3.connect(db)
stored = dict(con.execute("SELECT task_id, COUNT(*) FROM logs GROUP BY task_id"))
total = sum(stored.values())
samples = [tuple(map(int, l.split())) for l in open(backlog) if l.strip()]
print(f"\nstored during the run: {total - before} lines in {secs} s = {(total - before) / secs:.0f} lines/s")
print(f"writer backlog sampled each second: max {max((s[0] for s in samples), default=0)}, peak reported {max((s[1] for s in samples), default=0)}")
print("\n| task | lines the task wrote | lines stored | lost |\n|---|---:|---:|---:|")
bad = 0
for task_id, line in con.execute("SELECT task_id, line FROM logs WHERE message = 'Drain complete, exiting' ORDER BY task_id"):
    written = json.loads(line)["log_lines_written"]
    lost = written - stored[task_id]
    bad += lost != 0
    print(f"| {task_id} | {written} | {stored[task_id]} | {lost} |")
sys.exit(1 if bad else 0)
PY
