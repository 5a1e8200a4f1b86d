#!/usr/bin/env python3
"""Leave-one-out evaluation of the log template miner (crates/logmine) on the
Loghub-2k samples in ../shared/bench-data/loghub.

Why leave-one-out: the miner has one configuration for every log it will ever
see, so its figure must be the one on logs it was not tuned on. For each
dataset D, every configuration of the grid is scored on the 7 other datasets,
the one with the best average GA there is chosen (ties: the first in grid
order), and D is scored with it. The per-dataset masks and line format from
datasets.json are inputs of the run, not tuned.

    scripts/logmine-loo.py                          # builds release, grid below, drain3 if installed
    scripts/logmine-loo.py --bin OLD/logmine --label before   # another build of the miner
    scripts/logmine-loo.py --param threshold=0.7,0.8 --param min-values=3,4

Each --param NAME=V1,V2 is the miner flag --NAME; the grid is their cartesian
product. --fixed NAME=V passes a flag without tuning it. The default grid
tunes --threshold, --min-values, --split-max and --split-min-count (160
configurations); an older
build without those flags takes --param threshold=... alone. Prints one Markdown table: per dataset
the held-out GA, FGA and PA with the configuration chosen for it, the GA of
the default configuration (no tuning at all), and drain3 when importable
(published per-dataset depth/st from datasets.json, and its own
leave-one-out over st). Scratch files go to --out (a fresh temp dir by
default), never into the repository.
"""
import argparse
import csv
import importlib.util
import itertools
import json
import logging
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
csv.field_size_limit(sys.maxsize)


def load_evaluator(loghub):
    spec = importlib.util.spec_from_file_location("loghub_evaluate", os.path.join(loghub, "evaluate.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rebuild_logs(loghub, meta, out):
    """The bench data ships structured CSVs; rebuild each raw line from its
    fields and the dataset's format (literal text between fields unescaped)."""
    paths = {}
    for name, d in meta.items():
        dst = os.path.join(out, f"{name}_2k.log")
        raw = os.path.join(loghub, "data", d["log_file"])
        if os.path.exists(raw):
            lines = open(raw, encoding="utf-8", errors="replace").read().splitlines()
        else:
            parts = re.split(r"(<[^<>]+>)", d["log_format"])
            src = os.path.join(loghub, "data", name, f"{name}_2k.log_structured.csv")
            rows = sorted(csv.DictReader(open(src, encoding="utf-8", newline="")), key=lambda r: int(r["LineId"]))
            lines = []
            for r in rows:
                s = ""
                for p in parts:
                    s += r[p[1:-1]] if p.startswith("<") and p.endswith(">") else re.sub(r"\\(.)", r"\1", p)
                lines.append(s)
        with open(dst, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        paths[name] = dst
    return paths


def score(ev, loghub, name, pred):
    gt = ev.load_gt(os.path.join(loghub, "data", name, f"{name}_2k.log_structured.csv"))
    p, has_tpl = ev.load_pred(pred)
    return ev.evaluate(gt, p, has_tpl)


def run_miner(binary, d, log, flags, dst):
    args = [binary, "--format", d["log_format"], "--no-default-masks", "--output", dst]
    for rx in d["regex"]:
        args += ["--mask", rx]
    subprocess.run(args + flags + [log], check=True)


def drain3_predict(d, log, dst, st, depth):
    from drain3 import TemplateMiner
    from drain3.masking import MaskingInstruction
    from drain3.template_miner_config import TemplateMinerConfig

    logging.disable(logging.CRITICAL)
    parts = re.split(r"(<[^<>]+>)", d["log_format"])
    rx = "".join(f"(?P<{p[1:-1]}>.*?)" if p.startswith("<") and p.endswith(">") else re.sub(" +", r"\\s+", p) for p in parts)
    fmt = re.compile("^" + rx + "$")
    c = TemplateMinerConfig()
    c.drain_sim_th, c.drain_depth, c.drain_max_children = st, depth, d["max_children"]
    c.masking_instructions = [MaskingInstruction(r, "*") for r in d["regex"]]
    c.mask_prefix, c.mask_suffix = "<", ">"
    c.profiling_enabled = False
    m = TemplateMiner(config=c)
    ids = []
    with open(log, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            ids.append((n, m.add_log_message(fmt.match(line.strip()).group("Content"))["cluster_id"]))
    tpl = {cl.cluster_id: cl.get_template() for cl in m.drain.clusters}
    with open(dst, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["LineId", "EventId", "EventTemplate"])
        for n, cid in ids:
            w.writerow([n, f"E{cid}", tpl[cid]])


def loo(results, names):
    """results: config key -> dataset -> metrics. -> dataset -> (key, metrics)."""
    keys = list(results)
    out = {}
    for held in names:
        train = [n for n in names if n != held]
        best = max(keys, key=lambda k: (sum(results[k][n]["GA"] for n in train), -keys.index(k)))
        out[held] = (best, results[best][held])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loghub", default=os.path.join(ROOT, "..", "shared", "bench-data", "loghub"))
    ap.add_argument("--bin", help="logmine binary (default: build release into $CARGO_TARGET_DIR or /work/target-logmine)")
    ap.add_argument("--label", default="logmine")
    ap.add_argument("--param", action="append", default=[], help="NAME=V1,V2,... (miner flag --NAME), tuned")
    ap.add_argument("--fixed", action="append", default=[], help="NAME=V (miner flag --NAME), not tuned")
    ap.add_argument("--out", help="scratch directory")
    ap.add_argument("--no-drain3", action="store_true")
    ap.add_argument("--json", help="write every score here")
    a = ap.parse_args()

    loghub = os.path.abspath(a.loghub)
    meta = json.load(open(os.path.join(loghub, "datasets.json")))["datasets"]
    names = list(meta)
    ev = load_evaluator(loghub)
    out = a.out or tempfile.mkdtemp(prefix="logmine-loo.")
    os.makedirs(out, exist_ok=True)
    binary = a.bin
    if not binary:
        target = os.environ.get("CARGO_TARGET_DIR", "/work/target-logmine")
        subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "demo-logmine", "--bin", "logmine",
                        "--manifest-path", os.path.join(ROOT, "Cargo.toml")],
                       check=True, env={**os.environ, "CARGO_TARGET_DIR": target})
        binary = os.path.join(target, "release", "logmine")
    logs = rebuild_logs(loghub, meta, out)

    # The miner's tunables: similarity, the values that make a word a
    # variable, the values that make it a constant (see crates/logmine).
    params = a.param or ["threshold=0.7,0.75,0.8,0.85,0.9", "min-values=0,3,4,5", "split-max=0,2,3,4",
                         "split-min-count=1,2"]
    axes = []
    for p in params:
        k, _, vs = p.partition("=")
        axes.append([(k, v) for v in vs.split(",")])
    fixed = []
    for f in a.fixed:
        k, _, v = f.partition("=")
        fixed += [f"--{k}", v]
    grid = [tuple(c) for c in itertools.product(*axes)]

    def key(combo):
        return " ".join(f"{k}={v}" for k, v in combo) or "default"

    def flags(combo):
        return [x for k, v in combo for x in (f"--{k}", v)] + fixed

    results = {}
    for combo in [()] + grid:
        results[key(combo)] = {}
        for name in names:
            dst = os.path.join(out, f"{name}.{len(results)}.csv")
            run_miner(binary, meta[name], logs[name], flags(combo), dst)
            results[key(combo)][name] = score(ev, loghub, name, dst)
    default = results.pop("default")
    chosen = loo(results, names)

    d3 = d3loo = None
    if not a.no_drain3:
        try:
            import drain3  # noqa: F401
            d3, d3grid = {}, {}
            for name in names:
                d = meta[name]
                dst = os.path.join(out, f"{name}.drain3.csv")
                drain3_predict(d, logs[name], dst, d["st"], d["depth"])
                d3[name] = score(ev, loghub, name, dst)
                for st in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
                    dst = os.path.join(out, f"{name}.drain3.{st}.csv")
                    drain3_predict(d, logs[name], dst, st, 4)
                    d3grid.setdefault(f"st={st}", {})[name] = score(ev, loghub, name, dst)
            d3loo = loo(d3grid, names)
        except ImportError:
            print("drain3 not importable: no reference column", file=sys.stderr)

    mean = lambda xs: sum(xs) / len(xs)
    hdr = f"| dataset | {a.label} LOO GA | FGA | PA | chosen on the other 7 | {a.label} default GA |"
    sep = "|---|---|---|---|---|---|"
    if d3:
        hdr += " drain3 GA (datasets.json depth/st) | drain3 LOO GA (st chosen on the other 7) |"
        sep += "---|---|"
    print(hdr)
    print(sep)
    for name in names:
        k, r = chosen[name]
        row = f"| {name} | {r['GA']:.3f} | {r['FGA']:.3f} | {r['PA']:.3f} | {k} | {default[name]['GA']:.3f} |"
        if d3:
            row += f" {d3[name]['GA']:.3f} | {d3loo[name][1]['GA']:.3f} ({d3loo[name][0]}) |"
        print(row)
    row = (f"| **average** | **{mean([chosen[n][1]['GA'] for n in names]):.3f}** "
           f"| {mean([chosen[n][1]['FGA'] for n in names]):.3f} | {mean([chosen[n][1]['PA'] for n in names]):.3f} "
           f"| | {mean([default[n]['GA'] for n in names]):.3f} |")
    if d3:
        row += f" {mean([d3[n]['GA'] for n in names]):.3f} | {mean([d3loo[n][1]['GA'] for n in names]):.3f} |"
    print(row)
    print(f"\nworst held-out GA: {min(chosen[n][1]['GA'] for n in names):.3f}; scratch: {out}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"grid": results, "default": default, "loo": chosen, "drain3": d3,
                       "drain3_loo": d3loo}, f, indent=1)


if __name__ == "__main__":
    main()
