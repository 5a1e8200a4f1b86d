#!/usr/bin/env bash
# Benchmark the log template miner (crates/logmine) on the loghub-2k samples:
# grouping accuracy with the bench data's evaluator, and single-core throughput
# (masking included), side by side with drain3 when it is installed.
#
#   scripts/bench-logmine.sh                 # all datasets
#   DATASETS="HDFS BGL" scripts/bench-logmine.sh
#
# Environment:
#   LOGHUB     bench data directory (default: ../shared/bench-data/loghub from the repo root)
#   BENCH_OUT  scratch directory for logs and predictions (default: a fresh mktemp dir)
#   REPEAT     copies of each 2k log concatenated for the throughput run (default 100)
#   CPU        core to pin to with taskset (default 1)
#   NO_DRAIN3  set to skip drain3
#
# The miner runs with ONE configuration for every dataset (its defaults); only
# the dataset's masks and line format come from datasets.json. drain3 runs with
# the per-dataset depth/st from datasets.json, as in its published figure.
# Accuracy on logs the miner was not tuned on: scripts/logmine-loo.py.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOGHUB=${LOGHUB:-$(cd "$ROOT/../shared/bench-data/loghub" && pwd)}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/bench-logmine.XXXXXX)}
REPEAT=${REPEAT:-100}
CPU=${CPU:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-logmine}

PIN=()
if command -v taskset >/dev/null; then PIN=(taskset -c "$CPU"); fi

echo "== building (release)" >&2
cargo build --release --quiet -p demo-logmine --bin logmine --manifest-path "$ROOT/Cargo.toml"
BIN="$CARGO_TARGET_DIR/release/logmine"

mkdir -p "$OUT/logs" "$OUT/ours" "$OUT/drain3"
rm -f "$OUT/drain3.tsv"
DATASETS=${DATASETS:-$(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["datasets"]))' "$LOGHUB/datasets.json")}
read -ra DS <<<"$DATASETS"  # the names, one word each

# The 2k samples ship as structured CSV; when the raw log is absent, rebuild it
# from the parsed fields and the format (the literal text between fields is
# the format's, unescaped). Written to the scratch dir, never to the repo.
python3 - "$LOGHUB" "$OUT/logs" "$REPEAT" "${DS[@]}" <<'PY'
import csv, json, os, re, sys
loghub, out, repeat, names = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
meta = json.load(open(os.path.join(loghub, "datasets.json")))["datasets"]
csv.field_size_limit(sys.maxsize)
for name in names:
    d = meta[name]
    raw = os.path.join(loghub, "data", d["log_file"])
    dst = os.path.join(out, f"{name}_2k.log")
    if os.path.exists(raw):
        lines = open(raw, encoding="utf-8", errors="replace").read().splitlines()
    else:
        parts = re.split(r"(<[^<>]+>)", d["log_format"])
        rows = list(csv.DictReader(open(os.path.join(loghub, "data", name, f"{name}_2k.log_structured.csv"), encoding="utf-8", newline="")))
        rows.sort(key=lambda r: int(r["LineId"]))
        lines = []
        for r in rows:
            s = ""
            for p in parts:
                if p.startswith("<") and p.endswith(">"):
                    s += r[p[1:-1]]
                else:
                    s += re.sub(r"\\(.)", r"\1", p)
            lines.append(s)
    with open(dst, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(dst + ".big", "w", encoding="utf-8") as f:
        f.write(("\n".join(lines) + "\n") * repeat)
PY

mask_args() {
  python3 -c 'import json,sys; [print(r) for r in json.load(open(sys.argv[1]))["datasets"][sys.argv[2]]["regex"]]' "$LOGHUB/datasets.json" "$1"
}
field() {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["datasets"][sys.argv[2]][sys.argv[3]])' "$LOGHUB/datasets.json" "$1" "$2"
}

: > "$OUT/ours.tsv"
for name in "${DS[@]}"; do
  fmt=$(field "$name" log_format)
  args=(--format "$fmt" --no-default-masks)
  while IFS= read -r rx; do args+=(--mask "$rx"); done < <(mask_args "$name")
  "${PIN[@]}" "$BIN" "${args[@]}" --output "$OUT/ours/${name}_2k.log_structured.csv" "$OUT/logs/${name}_2k.log"
  best=0
  for _ in 1 2 3; do
    lps=$("${PIN[@]}" "$BIN" "${args[@]}" --stats --output /dev/null "$OUT/logs/${name}_2k.log.big" 2>&1 >/dev/null \
          | sed -n 's/.*lines_per_sec=\([0-9]*\).*/\1/p')
    if [ "${lps:-0}" -gt "$best" ]; then best=$lps; fi
  done
  printf '%s\t%s\n' "$name" "$best" >> "$OUT/ours.tsv"
done

HAVE_DRAIN3=0
if [ -z "${NO_DRAIN3:-}" ] && python3 -c 'import drain3' 2>/dev/null; then
  HAVE_DRAIN3=1
  echo "== drain3 $(python3 -c 'import importlib.metadata as m; print(m.version("drain3"))')" >&2
  for name in "${DS[@]}"; do
    "${PIN[@]}" python3 - "$LOGHUB" "$OUT" "$name" <<'PY'
import csv, json, logging, os, re, sys, time
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig
from drain3.masking import MaskingInstruction
logging.disable(logging.CRITICAL)
loghub, out, name = sys.argv[1:4]
d = json.load(open(os.path.join(loghub, "datasets.json")))["datasets"][name]

# logparser's format regex: fields lazy, space runs -> \s+, anchored.
parts = re.split(r"(<[^<>]+>)", d["log_format"])
rx = "".join(f"(?P<{p[1:-1]}>.*?)" if p.startswith("<") and p.endswith(">") else re.sub(" +", r"\\s+", p) for p in parts)
fmt = re.compile("^" + rx + "$")

def miner():
    c = TemplateMinerConfig()
    c.drain_sim_th, c.drain_depth, c.drain_max_children = d["st"], d["depth"], d["max_children"]
    c.masking_instructions = [MaskingInstruction(r, "*") for r in d["regex"]]
    c.mask_prefix, c.mask_suffix = "<", ">"
    c.profiling_enabled = False
    return TemplateMiner(config=c)

def run(path):
    m, ids = miner(), []
    t0 = time.process_time()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            g = fmt.match(line.strip())
            ids.append((n, m.add_log_message(g.group("Content"))["cluster_id"]))
    return m, ids, time.process_time() - t0

m, ids, _ = run(os.path.join(out, "logs", f"{name}_2k.log"))
with open(os.path.join(out, "drain3", f"{name}_2k.log_structured.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["LineId", "EventId", "EventTemplate"])
    tpl = {c.cluster_id: c.get_template() for c in m.drain.clusters}
    for n, cid in ids:
        w.writerow([n, f"E{cid}", tpl[cid]])
best = 0.0
for _ in range(3):
    _, ids, secs = run(os.path.join(out, "logs", f"{name}_2k.log.big"))
    best = max(best, len(ids) / secs)
with open(os.path.join(out, "drain3.tsv"), "a") as f:
    f.write(f"{name}\t{best:.0f}\n")
PY
  done
elif [ -n "${NO_DRAIN3:-}" ]; then
  echo "== drain3 skipped (NO_DRAIN3 set)" >&2
else
  echo "== drain3 not installed (python3 -c 'import drain3' failed): no side-by-side" >&2
fi

python3 "$LOGHUB/evaluate.py" --data "$LOGHUB/data" --pred-dir "$OUT/ours" --datasets "${DS[@]}" --json "$OUT/ours.json" > /dev/null
if [ "$HAVE_DRAIN3" = 1 ]; then
  python3 "$LOGHUB/evaluate.py" --data "$LOGHUB/data" --pred-dir "$OUT/drain3" --datasets "${DS[@]}" --json "$OUT/drain3.json" > /dev/null
fi

python3 - "$OUT" "$HAVE_DRAIN3" "$REPEAT" <<'PY'
import json, os, sys
out, have, repeat = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
ours = json.load(open(os.path.join(out, "ours.json")))["per_dataset"]
lps = dict(l.split("\t") for l in open(os.path.join(out, "ours.tsv")).read().split("\n") if l)
if have:
    d3 = json.load(open(os.path.join(out, "drain3.json")))["per_dataset"]
    d3lps = dict(l.split("\t") for l in open(os.path.join(out, "drain3.tsv")).read().split("\n") if l)
hdr = f"| {'dataset':<10} | {'GA':>6} | {'FGA':>6} | {'PA':>6} | {'lines/s':>10} |"
if have:
    hdr += f" {'drain3 GA':>9} | {'drain3 lines/s':>14} | {'speed-up':>8} |"
print(hdr)
print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
avg = {"ga": [], "fga": [], "pa": [], "lps": [], "dga": [], "dlps": [], "ratio": []}
for name, r in ours.items():
    l = float(lps[name])
    row = f"| {name:<10} | {r['GA']:>6.3f} | {r['FGA']:>6.3f} | {r['PA']:>6.3f} | {l:>10,.0f} |"
    avg["ga"].append(r["GA"]); avg["fga"].append(r["FGA"]); avg["pa"].append(r["PA"]); avg["lps"].append(l)
    if have:
        dl = float(d3lps[name])
        row += f" {d3[name]['GA']:>9.3f} | {dl:>14,.0f} | {l / dl:>7.1f}x |"
        avg["dga"].append(d3[name]["GA"]); avg["dlps"].append(dl); avg["ratio"].append(l / dl)
    print(row)
mean = lambda v: sum(v) / len(v)
row = f"| {'average':<10} | {mean(avg['ga']):>6.3f} | {mean(avg['fga']):>6.3f} | {mean(avg['pa']):>6.3f} | {mean(avg['lps']):>10,.0f} |"
if have:
    row += f" {mean(avg['dga']):>9.3f} | {mean(avg['dlps']):>14,.0f} | {mean(avg['lps']) / mean(avg['dlps']):>7.1f}x |"
print(row)
print(f"\nlines/s = lines per CPU second (process CPU time, pinned to one core), best of 3 runs over {repeat}"
      " concatenated copies of each 2k log. logmine: whole pipeline (read, format split, masking, mining,"
      " CSV write). drain3: format split + add_log_message (masking + mining), best of 3.")
print(f"scratch: {out}")
PY
