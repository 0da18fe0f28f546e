"""The scaling study's tables and figure, from archs/points.tsv and results/trainings/*.json.

Usage: python3 report.py EXPERIMENT_DIR [TRAININGS_DIR]
writes points.md, points.json and figure8.svg beside the trainings' folder (results/ for the
default results/trainings/), or into TRAININGS_DIR itself when one is given (a folder of
trainings kept apart, such as results/cpu-check/).
Every number is read from the trainings' JSON (`effnas train --json`); none is typed by hand.
A point's accuracy is the mean over its seeds; its spread is the standard deviation across them.
"""
import csv
import glob
import json
import os
import statistics
import sys

here = sys.argv[1]
trainings = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "results", "trainings")
results = trainings if len(sys.argv) > 2 else os.path.join(here, "results")
points = list(csv.DictReader(open(os.path.join(here, "archs", "points.tsv")), delimiter="\t"))
runs = {}
for path in glob.glob(os.path.join(trainings, "*-s[0-9].json")):
    point, seed = os.path.basename(path)[:-5].rsplit("-s", 1)
    result = json.load(open(path))
    if result.get("status") == "complete" and result.get("test_accuracy") is not None:
        runs.setdefault(point, []).append(result)

rows = []
for p in points:
    rs = runs.get(p["point"], [])
    tests = [r["test_accuracy"] for r in rs]
    rows.append({
        **p, "multiply_adds": int(p["multiply_adds"]), "ratio": float(p["ratio"]), "seeds": len(rs),
        "test_mean": statistics.mean(tests) if tests else None,
        "test_std": statistics.stdev(tests) if len(tests) > 1 else None,
        "tests": tests, "device": sorted({r["device"] for r in rs}),
        "train_seconds": [round(r["train_seconds"], 1) for r in rs],
    })
json.dump(rows, open(os.path.join(results, "points.json"), "w"), indent=1)

with open(os.path.join(results, "points.md"), "w") as md:
    source = os.path.relpath(trainings, here)
    md.write(f"Written by `experiments/scaling-dimensions/run report` from `{source}/*.json`.\n\n")
    md.write("| point | method | target | multiply-adds | × base | seeds | test accuracy (mean ± std) | per seed |\n")
    md.write("|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        acc = "—" if r["test_mean"] is None else f"{100 * r['test_mean']:.2f}%" + (
            f" ± {100 * r['test_std']:.2f}" if r["test_std"] is not None else "")
        per = ", ".join(f"{100 * t:.2f}" for t in r["tests"])
        md.write(f"| {r['point']} | {r['method']} | {r['target']} | {r['multiply_adds'] / 1e6:.2f}M | "
                 f"{r['ratio']:.2f} | {r['seeds']} | {acc} | {per} |\n")
    stds = [r["test_std"] for r in rows if r["test_std"] is not None]
    if stds:
        md.write(f"\nSeed spread over {len(stds)} points with ≥ 2 seeds: median std "
                 f"{100 * statistics.median(stds):.2f} points, largest {100 * max(stds):.2f}.\n")

# Figure 8: accuracy against multiply-adds, one panel per base, one line per method (the base
# point starts every line).
labels = {"grid": "own grid (α 1.0, β 1.1, γ 1.3)"}
colours = {"width": "#1f77b4", "depth": "#2ca02c", "resolution": "#d62728", "compound": "#000000",
           "grid": "#9467bd"}
bases = [b for b in dict.fromkeys(r["base"] for r in rows)]
panel_w, panel_h, pad = 360, 280, 50
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{len(bases) * panel_w}" height="{panel_h + 40}" '
       'font-family="sans-serif" font-size="11">', '<rect width="100%" height="100%" fill="white"/>']
for i, base in enumerate(bases):
    mine = [r for r in rows if r["base"] == base and r["test_mean"] is not None]
    if not mine:
        continue
    x0 = i * panel_w
    xs = [r["ratio"] for r in mine]
    lo = [r["test_mean"] - (r["test_std"] or 0) for r in mine]
    hi = [r["test_mean"] + (r["test_std"] or 0) for r in mine]
    ymin, ymax = min(lo) - 0.005, max(hi) + 0.005
    xmax = max(xs) * 1.05
    X = lambda v: x0 + pad + (v / xmax) * (panel_w - pad - 15)
    Y = lambda v: 20 + (1 - (v - ymin) / (ymax - ymin)) * (panel_h - 40)
    svg.append(f'<text x="{x0 + panel_w / 2}" y="14" text-anchor="middle">{base}: test accuracy vs multiply-adds (× base)</text>')
    svg.append(f'<line x1="{X(0)}" y1="{Y(ymin)}" x2="{X(xmax)}" y2="{Y(ymin)}" stroke="#888"/>')
    svg.append(f'<line x1="{X(0)}" y1="{Y(ymin)}" x2="{X(0)}" y2="{Y(ymax)}" stroke="#888"/>')
    for k in range(5):
        v = ymin + k * (ymax - ymin) / 4
        svg.append(f'<text x="{X(0) - 4}" y="{Y(v) + 4}" text-anchor="end">{100 * v:.1f}</text>')
    for v in sorted({round(x) for x in xs if x >= 1}):
        svg.append(f'<text x="{X(v)}" y="{Y(ymin) + 14}" text-anchor="middle">{v}×</text>')
    base_row = next((r for r in mine if r["method"] == "base"), None)
    for legend, (method, colour) in enumerate(colours.items()):
        line = sorted([r for r in mine if r["method"] == method], key=lambda r: r["ratio"])
        if not line:
            continue
        if base_row:
            line = [base_row] + line
        pts = " ".join(f"{X(r['ratio']):.1f},{Y(r['test_mean']):.1f}" for r in line)
        svg.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        for r in line:
            if r["test_std"] is not None:
                svg.append(f'<line x1="{X(r["ratio"]):.1f}" x2="{X(r["ratio"]):.1f}" y1="{Y(r["test_mean"] - r["test_std"]):.1f}" '
                           f'y2="{Y(r["test_mean"] + r["test_std"]):.1f}" stroke="{colour}"/>')
            svg.append(f'<circle cx="{X(r["ratio"]):.1f}" cy="{Y(r["test_mean"]):.1f}" r="2.5" fill="{colour}"/>')
        svg.append(f'<text x="{x0 + panel_w - 175}" y="{Y(ymin) - 10 - 13 * legend}" fill="{colour}">{labels.get(method, method)}</text>')
svg.append("</svg>")
open(os.path.join(results, "figure8.svg"), "w").write("\n".join(svg))
print(f"wrote {results}/points.md, points.json, figure8.svg ({sum(r['seeds'] for r in rows)} trainings)")
