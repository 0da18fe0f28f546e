"""Plain against ASHA at equal images: the summary of experiments/multi-fidelity from its raw files.

Usage: python3 report.py EXPERIMENT_DIR > EXPERIMENT_DIR/results/summary.md
Reads results/NAME-runs.json, NAME-export.json (images each trial trained), NAME-pick.json and
results/picks/NAME-sSEED.json for every search NAME. No figure is typed by hand.
"""
import glob
import json
import os
import statistics
import sys

results = os.path.join(sys.argv[1], "results")
runs, images = {}, {}
for path in glob.glob(os.path.join(results, "*-runs.json")):
    name = os.path.basename(path)[: -len("-runs.json")]
    runs[name] = next(r for r in json.load(open(path)) if r["name"] == name)
    exported = json.load(open(os.path.join(results, f"{name}-export.json")))
    images[name] = sum((t.get("extra") or {}).get("images_seen", 0) for t in exported
                       if t["state"] == "complete" and t.get("reused_from") is None)


def picks_of(name):
    out = []
    for path in sorted(glob.glob(os.path.join(results, "picks", f"{name}-s[0-9].json"))):
        out.append(json.load(open(path)))
    return out


def fmt(values, scale=100, digits=2):
    if not values:
        return "—"
    mean = statistics.mean(values) * scale
    return f"{mean:.{digits}f}" + (f" ± {statistics.stdev(values) * scale:.{digits}f}" if len(values) > 1 else "")


print("Written by `experiments/multi-fidelity/report.py` from the raw files in `results/`.\n")
print("| search | trials | images trained | minutes | pick: trial (rung), search accuracy | pick's multiply-adds | "
      "pick at the reference: test accuracy | validation reward |")
print("|---|---|---|---|---|---|---|---|")
by_kind = {"plain": [], "asha": []}
for name in sorted(runs, key=lambda n: (n.split("-s")[1], n)):
    run = runs[name]
    kind = name.split("-s")[0]
    pick_path = os.path.join(results, f"{name}-pick.json")
    if kind not in by_kind or not os.path.exists(pick_path):
        continue
    pick = json.load(open(pick_path))
    picks = [p for p in picks_of(name) if p.get("status") == "complete"]
    tests = [p["test_accuracy"] for p in picks]
    rewards = [p["reward"] for p in picks]
    by_kind[kind].append((tests, rewards, images.get(name, 0)))
    print(f"| {name} | {run['trials_done']} | {images.get(name, 0):,} | {run['duration_seconds'] / 60:.1f} | "
          f"{pick['trial']} ({pick['setting']}), {100 * pick['accuracy']:.2f}% | {pick['flops'] / 1e6:.1f}M | "
          f"{fmt(tests)} | {fmt(rewards, 1, 4)} |")

print("\nOver search seeds (each pick's reference trainings averaged first, then mean ± std over seeds):\n")
for kind, rows in by_kind.items():
    if not rows:
        continue
    per_seed_test = [statistics.mean(t) for t, _, _ in rows if t]
    per_seed_reward = [statistics.mean(r) for _, r, _ in rows if r]
    all_tests = [x for t, _, _ in rows for x in t]
    print(f"- {kind}: {len(rows)} searches, images {statistics.mean(i for _, _, i in rows):,.0f} on average; "
          f"pick's test accuracy {fmt(per_seed_test)} (per training: {', '.join(f'{100 * x:.2f}' for x in all_tests)}); "
          f"reward {fmt(per_seed_reward, 1, 4)}")
