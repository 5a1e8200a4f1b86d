#!/usr/bin/env bash
# How long a task outlives a SIGKILL of `up` (issue 13, finding 6): starts `up`,
# waits until ready, SIGKILLs it and polls /proc every 0.5 ms until both tasks
# are gone (a zombie counts as gone). RUNS times.
# Usage: scripts/reliability-kill.sh [RUNS]   (default 3)
set -euo pipefail

RUNS="${1:-3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
cargo build -q -p devops-agent-demo
BIN="$ROOT/target/debug/devops-agent-demo"
for _ in $(seq "$RUNS"); do
    STATE="$(mktemp -d)"
    "$BIN" --state-dir "$STATE" up --port 0 --control-port 0 --time-scale 20 >"$STATE/up.out" 2>&1 &
    UP=$!
    for _ in $(seq 600); do grep -q '^ready:' "$STATE/up.out" && break; sleep 0.1; done
    python3 - "$UP" $(pgrep -P "$UP") <<'PY'
import os, signal, sys, time
up, tasks = int(sys.argv[1]), [int(p) for p in sys.argv[2:]]
def alive(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return False
    return not stat[stat.rindex(')') + 2:].startswith('Z')
t = time.monotonic()
os.kill(up, signal.SIGKILL)
while any(alive(p) for p in tasks) and time.monotonic() - t < 5:
    time.sleep(0.0005)
left = [p for p in tasks if alive(p)]
print(f"tasks {tasks}: " + (f"{left} STILL RUNNING 5 s after SIGKILL of up" if left
      else f"gone {1000 * (time.monotonic() - t):.1f} ms after SIGKILL of up"))
PY
    wait "$UP" 2>/dev/null || true
    rm -rf "$STATE"
done
