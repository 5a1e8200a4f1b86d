#!/usr/bin/env bash
# A store on a full disk (issue 13, finding 5): puts the state directory on a
# 2 MiB tmpfs with 248 KiB left, starts `up`, prints `status` while the disk is
# full, frees the space, prints `status` again, then `up`'s console. Shows the
# writer's health turning failing (counted), `up` saying "not ready" instead of
# "ready", and both recovering. Needs root (mount).
# Usage: sudo scripts/reliability-disk-full.sh
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
cargo build -q -p devops-agent-demo
BIN="$ROOT/target/debug/devops-agent-demo"
MNT="$(mktemp -d)"
OUT="$(mktemp -d)"
mount -t tmpfs -o size=2m tmpfs "$MNT"
trap 'kill -TERM $UP 2>/dev/null; wait $UP 2>/dev/null; umount "$MNT"; rm -rf "$MNT" "$OUT"' EXIT
dd if=/dev/zero of="$MNT/filler" bs=1k count=1800 2>/dev/null
"$BIN" --state-dir "$MNT/state" up --port 0 --control-port 0 --time-scale 20 >"$OUT/up.out" 2>"$OUT/up.err" &
UP=$!
sleep 12
echo "== status while the disk is full"
"$BIN" --state-dir "$MNT/state" status >"$OUT/status" && head -3 "$OUT/status"
rm "$MNT/filler"
sleep 5
echo "== status after freeing the space"
"$BIN" --state-dir "$MNT/state" status >"$OUT/status" && head -3 "$OUT/status"
echo "== up's console (alarm and investigation lines left out)"
grep -Ev 'alarm|report|investigation|^  [0-9]\.|fired|console' "$OUT/up.out" || true
echo "== up's stderr, most frequent lines"
sort "$OUT/up.err" | uniq -c | sort -rn | head -3
