#!/usr/bin/env bash
# Store growth under requests with long paths (issue 13, finding 5): starts `up`
# on a fresh state directory with --store-max-mb CAP, sends N requests with a
# 60 KB path through the load balancer on one keep-alive connection, and prints
# how much state.db (+ WAL) grew and how often the size cap pruned.
# Usage: scripts/reliability-store.sh [N] [CAP_MIB]   (defaults 3000, 1024)
set -euo pipefail

N="${1:-3000}"
CAP="${2:-1024}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
cargo build -q -p devops-agent-demo
BIN="$ROOT/target/debug/devops-agent-demo"
STATE="$(mktemp -d)"
"$BIN" --state-dir "$STATE" up --port 0 --control-port 0 --time-scale 20 --store-max-mb "$CAP" \
    >"$STATE/up.out" 2>"$STATE/up.err" &
UP=$!
trap 'kill -TERM $UP 2>/dev/null; wait $UP 2>/dev/null; rm -rf "$STATE"' EXIT
for _ in $(seq 600); do grep -q '^ready:' "$STATE/up.out" && break; sleep 0.1; done
grep -q '^ready:' "$STATE/up.out" || { echo "up not ready within 60 s" >&2; exit 1; }
LB=$(grep -o 'load balancer   http://[^/]*' "$STATE/up.out" | sed 's|.*http://||')
python3 - "$LB" "$N" "$STATE" <<'PY'
import http.client, os, sys, time
host, port = sys.argv[1].split(':'); n = int(sys.argv[2]); state = sys.argv[3]
def size():
    return sum(os.path.getsize(os.path.join(state, f)) for f in os.listdir(state) if f.startswith('state.db'))
before, path, t = size(), '/api/' + 'a' * 60000, time.time()
c = http.client.HTTPConnection(host, int(port), timeout=10)
for _ in range(n):
    try:
        c.request('GET', path); c.getresponse().read()
    except Exception:
        c = http.client.HTTPConnection(host, int(port), timeout=10)
time.sleep(3)
print(f"{n} requests with 60 KB paths in {time.time() - t:.1f} s: "
      f"state.db + WAL {before / 1e6:.2f} MB -> {size() / 1e6:.2f} MB")
PY
echo "size-cap prunings: $(grep -c 'pruned the oldest' "$STATE/up.err" || true)"
grep 'pruned the oldest' "$STATE/up.err" | tail -1 || true
