#!/usr/bin/env python3
"""One table over bench/scale.sh's reports: calls/s, CPU per call and p99
per thread count, weir beside HAProxy, and each proxy's speed-up over its
own run with the fewest threads.

    python3 bench/scale_table.py --out bench/results/scale.md scale-t1.jsonl scale-t2.jsonl ...
"""
import argparse
import json
import os
import statistics
import sys

sys.dont_write_bytecode = True  # no bench/__pycache__ in the working tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import med, paired_ratios, parse_cpus  # noqa: E402


def load(path):
    meta, runs = None, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if rec.get("kind") == "meta":
                meta = rec
            elif (rec.get("kind") == "run" and rec.get("scenario") == "scale"
                  and rec.get("ok") and not rec.get("discarded")):
                runs.append(rec)
    if meta is None:
        raise SystemExit(f"{path}: no meta record (not a bench/harness.py report?)")
    return meta, runs


def fmt(v, spec, unit=""):
    return "–" if v is None else format(v, spec) + unit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("reports", nargs="+")
    args = ap.parse_args()

    rows = []
    for path in args.reports:
        meta, runs = load(path)
        n = int(meta["proxy_threads"])
        load_cpus = sorted(parse_cpus(meta["load_cpus"]))
        layout = "shared" if meta["proxy_cpus"] == meta["load_cpus"] else "split"
        row = dict(threads=n, layout=layout, proxy_cpus=meta["proxy_cpus"],
                   load_cpus=meta["load_cpus"], h2load_threads=meta["h2load_threads"],
                   nproc=meta["nproc"], cpu_model=meta["cpu_model"], path=path, t={})
        for target in ("direct", "weir", "haproxy"):
            rs = [r for r in runs if r["target"] == target]
            busy = [statistics.mean(r.get(f"busy_pct_cpu{c}", 0.0) for c in load_cpus)
                    for r in rs] if load_cpus else []
            row["t"][target] = dict(
                n=len(rs),
                rps=med([r["rps"] for r in rs]),
                cpu=med([r.get("cpu_us_per_call") for r in rs]),
                p99=med([r.get("p99_us") for r in rs]),
                load_busy=med(busy),
            )
        row["cpu_pairs"] = paired_ratios(runs, "weir", "haproxy", "cpu_us_per_call")
        row["rps_pairs"] = paired_ratios(runs, "weir", "haproxy", "rps")
        rows.append(row)
    rows.sort(key=lambda r: r["threads"])
    if not rows:
        raise SystemExit("no reports")

    base = rows[0]
    L = ["# Multi-core scaling: weir and HAProxy by thread count", ""]
    L.append(f"- machine: {base['nproc']} CPUs ({base['cpu_model']}); scenario (scale): unary, "
             "64-byte payload, h2load -c 64 -m 8; medians over the repetitions of each report")
    L.append("- layout `split`: the proxy alone on CPUs 0..N-1, h2load and the two backends on "
             "the others; `shared`: everything on every CPU (the load competes with the proxy)")
    L.append(f"- speed-up: calls/s ÷ the same proxy's calls/s at {base['threads']} thread(s); "
             "`direct` is h2load straight at a backend on the load CPUs (the load side's limit)")
    L.append("- reports: " + ", ".join(r["path"] for r in rows))
    L.append("")
    L.append("| threads | layout | direct calls/s | weir calls/s | HAProxy calls/s | weir ÷ HAProxy calls/s (pairs) "
             "| weir CPU/call | HAProxy CPU/call | weir ÷ HAProxy CPU (pairs) | weir speed-up | HAProxy speed-up "
             "| weir p99 | HAProxy p99 | load CPUs busy (weir run) |")
    L.append("|" + "---|" * 14)
    for r in rows:
        d, w, h = r["t"]["direct"], r["t"]["weir"], r["t"]["haproxy"]
        bw, bh = base["t"]["weir"]["rps"], base["t"]["haproxy"]["rps"]

        def pairs(ps):
            if not ps:
                return "–"
            return f"{statistics.median(ps):.2f} ({min(ps):.2f}–{max(ps):.2f})"

        L.append("| " + " | ".join([
            str(r["threads"]),
            f"{r['layout']} (proxy {r['proxy_cpus']}; load {r['load_cpus']}, h2load -t {r['h2load_threads']})",
            fmt(d["rps"], ",.0f"), fmt(w["rps"], ",.0f"), fmt(h["rps"], ",.0f"),
            pairs(r["rps_pairs"]),
            fmt(w["cpu"], ".1f", " µs"), fmt(h["cpu"], ".1f", " µs"), pairs(r["cpu_pairs"]),
            fmt(w["rps"] / bw if w["rps"] and bw else None, ".2f", "×"),
            fmt(h["rps"] / bh if h["rps"] and bh else None, ".2f", "×"),
            fmt(w["p99"] / 1000 if w["p99"] else None, ".1f", " ms"),
            fmt(h["p99"] / 1000 if h["p99"] else None, ".1f", " ms"),
            fmt(w["load_busy"], ".0f", " %"),
        ]) + " |")
    L.append("")
    missing = [f"{r['threads']}: {t}" for r in rows for t, v in r["t"].items() if v["n"] == 0]
    if missing:
        L.append("Targets with no valid run (see their reports): " + ", ".join(missing))
        L.append("")
    text = "\n".join(L)
    with open(args.out, "w") as f:
        f.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
