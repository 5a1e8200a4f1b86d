#!/usr/bin/env python3
"""Tabulate `scenario bench --json` output at two time scales side by side.

Usage: scenario-bench-table.py FAST.jsonl[,MORE.jsonl...] SLOW.jsonl[,MORE.jsonl...]

Each argument is a comma-separated list of JSON-lines files (one object per
scenario, as `scenario bench --json` writes them); a later file's line for a
scenario replaces an earlier one (a re-run). Prints a Markdown table, one row
per investigated alarm, and the totals; exits 1 when any scenario misses at
either scale or when the two scales disagree on any top-1.
"""
import json
import statistics
import sys


def load(arg):
    out = {}
    for path in arg.split(","):
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"{path}:{n}: not JSON: {e}")
                out[obj["result"]["scenario"]] = obj
    return out


def first(score):
    f = score.get("found")
    if not f:
        return "(none)"
    cat, ent, s = f
    return f"{cat} {ent or ''}".strip() + f" ({s:.2f})"


def expected(e):
    return f"{e['category']} {e.get('entity') or ''}".strip()


def same_top1(x, y):
    """The same answer in the strict top-1 sense: the same category, and the
    same entity when the scenario names one (a crash loop's list of replaced
    task ids depends on how many restarts fit before the alarm, and is not
    part of the expected answer)."""
    fx, fy = x.get("found"), y.get("found")
    if not fx or not fy:
        return False
    if fx[0] != fy[0]:
        return False
    return not x["expected"].get("entity") or fx[1] == fy[1]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    fast, slow = load(sys.argv[1]), load(sys.argv[2])
    fs = next(iter(fast.values()))["result"]["time_scale"] if fast else "?"
    ss = next(iter(slow.values()))["result"]["time_scale"] if slow else "?"
    names = list(fast) + [n for n in slow if n not in fast]
    print(f"| scenario | alarm | expected | found first, scale {fs:g} | found first, scale {ss:g} "
          f"| top-1 {fs:g}/{ss:g} | top-3 | not_blamed | evidence | same top-1 | alarm → report {fs:g}/{ss:g} |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    lat = {fs: [], ss: []}
    ok = {fs: 0, ss: 0}
    top1 = {fs: 0, ss: 0}
    top3 = {fs: 0, ss: 0}
    disagree = 0
    yn = lambda b: "yes" if b else "NO"
    for name in names:
        a, b = fast.get(name), slow.get(name)
        for sc, o in ((fs, a), (ss, b)):
            if o is None:
                continue
            r = o["result"]
            ok[sc] += bool(o["passed"])
            top1[sc] += all(x["top1"] for x in r["scores"]) and bool(r["scores"])
            top3[sc] += all(x["top3"] for x in r["scores"]) and bool(r["scores"])
            lat[sc] += [x["latency_ms"] for x in r["scores"] if x.get("latency_ms") is not None]
        alarms = [x["alarm"] for x in (a or b)["result"]["scores"]]
        for alarm in alarms:
            def get(o):
                if o is None:
                    return None
                return next((x for x in o["result"]["scores"] if x["alarm"] == alarm), None)
            x, y = get(a), get(b)
            same = x is not None and y is not None and same_top1(x, y)
            disagree += not same
            both = [s for s in (x, y) if s is not None]
            print("| " + " | ".join([
                name, alarm, expected((x or y)["expected"]),
                first(x) if x else "not run", first(y) if y else "not run",
                "/".join(yn(s["top1"]) if s else "-" for s in (x, y)),
                yn(all(s["top3"] for s in both)),
                yn(all(not s["blamed"] for s in both)),
                yn(all(not s["missing_evidence"] for s in both)),
                yn(same),
                "/".join(f"{s['latency_ms']} ms" if s else "-" for s in (x, y)),
            ]) + " |")
    print()
    for sc, d in ((fs, fast), (ss, slow)):
        med = statistics.median(lat[sc]) if lat[sc] else float("nan")
        print(f"- time scale {sc:g}: {len(d)} scenarios, top-1 {top1[sc]}/{len(d)}, top-3 {top3[sc]}/{len(d)}, "
              f"passed {ok[sc]}/{len(d)}, median alarm → report {med:.0f} ms")
    print(f"- alarms whose top-1 differs between the scales (category, and entity where the scenario names one): {disagree}")
    bad = disagree or ok[fs] < len(fast) or ok[ss] < len(slow)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
