#!/usr/bin/env python3
"""Turns the RESULT lines that scripts/gpu-check.sh collected (figures.tsv) into one Markdown
table: each figure of the project's benches beside the same figure of the original code
(bench/ref/ref_gpu.py prints it as ref_<name>) from the same run, with their ratio (how many
times faster ours is) and the issue's target where there is one.

  gpu-figures.py FIGURES_TSV          prints the table on stdout

A line is `step=S name=N batch=B device=D dtype=T value=V unit=U [key=value ...]`; lines with
other keys keep them in the last column.
"""
# SPDX-License-Identifier: GPL-3.0-or-later
import sys

# Figures with a target in issue 23: name -> (comparison, bound, text, fields the line must have)
TARGETS = {
    "grounded_answer_ms": ("<", 200.0, "< 200 ms", {}),
    "pipeline_seconds_per_study": ("<", 60.0, "< 60 s per 300-slice study", {"slices": "300"}),
}
RATIO_TARGET = 3.0  # every stage at least 3x the reference's throughput


def parse(path):
    rows = []
    with open(path) as f:
        for line in f:
            fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            if "name" in fields and "value" in fields:
                rows.append(fields)
    return rows


def faster_when_lower(unit):
    return unit in ("s", "ms", "us", "s/study", "ms/token")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    rows = parse(sys.argv[1])
    # A figure and its original-code twin share name, batch and (prefill) token count.
    def key(r, name):
        return name, r.get("batch", "1"), r.get("tokens", "")

    ref = {key(r, r["name"][4:]): r for r in rows if r["name"].startswith("ref_")}
    print("| figure | batch | device | dtype | ours | original code | ours vs original | target | other |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["name"].startswith("ref_"):
            continue
        name, batch, unit = r["name"], r.get("batch", "1"), r.get("unit", "")
        value = float(r["value"])
        ours = "%.4g %s" % (value, unit)
        theirs, ratio, verdict = "", "", ""
        twin = ref.get(key(r, name))
        # Only figures of the released sizes compare with the original code (the --cpu check's
        # tiny checkpoint and cut-down layer counts are smoke runs).
        full_size = r.get("config", "real") != "tiny" and r.get("layers", "24") == "24"
        if twin is not None and full_size:
            rv = float(twin["value"])
            theirs = "%.4g %s" % (rv, twin.get("unit", ""))
            if rv > 0 and value > 0:
                x = rv / value if faster_when_lower(unit) else value / rv
                ratio = "%.2fx" % x
                verdict = "ok" if x >= RATIO_TARGET else "below %.0fx" % RATIO_TARGET
        target = TARGETS.get(name)
        if target and all(r.get(k) == v for k, v in target[3].items()):
            op, bound, text, _ = target
            met = value < bound if op == "<" else value > bound
            verdict = (verdict + "; " if verdict else "") + text + (" met" if met else " MISSED")
        other = " ".join("%s=%s" % (k, v) for k, v in r.items()
                         if k not in ("step", "name", "batch", "device", "dtype", "value", "unit"))
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, batch, r.get("device", ""), r.get("dtype", ""), ours, theirs, ratio, verdict, other))
    unmatched = sorted(set(ref) - {key(r, r["name"]) for r in rows})
    for name, batch, _ in unmatched:
        r = ref[(name, batch, _)]
        print("| (original only) %s | %s | %s | %s | | %s %s | | | |" % (
            name, batch, r.get("device", ""), r.get("dtype", ""), r["value"], r.get("unit", "")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
