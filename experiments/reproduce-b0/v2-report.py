"""Summarises a reproduce-b0 version-2 results folder from the raw JSON `v2` wrote there.

Usage: python3 v2-report.py RESULTS > RESULTS/summary.md
(RESULTS holds runs.json, trials.json, search.json, answer.txt and final/NAME-sSEED.json.)
No figure is typed by hand: every number below is read from those files.
"""
import glob
import json
import os
import statistics
import sys

results = sys.argv[1]
load = lambda name: json.load(open(os.path.join(results, name)))
runs, trials = load("runs.json"), load("trials.json")
run = next(r for r in runs if r["kind"] == "search")
config = run["config"]
first_final = (config.get("finalists") or {}).get("first_setting")
settings = [config["proxy"], *config.get("rungs", [])]


def stage(t):
    if first_final is not None and t["setting"] >= first_final:
        return "finalist"
    return f"rung {t['setting']}"


def pct(x):
    return f"{100 * x:.2f}%"


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0), len(values)


print(f"Written by `experiments/reproduce-b0/v2-report.py` from the raw JSON in this folder.\n")
print("## The search\n")
print(f"- run {run['id']} ({run['name']}): status {run['status']}, {run['trials_done']} complete, "
      f"{run['trials_failed']} failed, wall-clock {run['duration_seconds'] / 60:.1f} min")
for index, s in enumerate(settings):
    at = [t for t in trials if t["setting"] == index and stage(t) == f"rung {index}"]
    done = [t for t in at if t["state"] == "complete"]
    print(f"- rung {index}: {s['train_images']:,} images × {s['epochs']} epochs at width {s['width']}, "
          f"depth {s['depth']}, {s['resolution']} px, stem stride {s.get('stem_stride') or 'own'}: "
          f"{len(done)} complete of {len(at)}")

rung0 = sorted((t for t in trials if t["setting"] == 0 and t["state"] == "complete"),
               key=lambda t: t["reward"], reverse=True)
for name in ("EfficientNet-B0", "MnasNet-A1"):
    rank = next((i for i, t in enumerate(rung0, 1) if t.get("reference") == name), None)
    reached = max((t["setting"] for t in trials if t.get("reference") == name and stage(t) != "finalist"),
                  default=None)
    if rank:
        t = rung0[rank - 1]
        print(f"- {name} at rung 0: reward {t['reward']:.4f}, accuracy {pct(t['accuracy'])}, rank {rank} of "
              f"{len(rung0)}; highest rung reached: {reached}")

finalists = [t for t in trials if stage(t) == "finalist" and t["state"] == "complete"]
if finalists:
    print("\n## Finalists (top-rung budget, fresh seeds)\n")
    print("| architecture | multiply-adds | seeds | validation accuracy | reward |")
    print("|---|---|---|---|---|")
    by_hash = {}
    for t in finalists:
        by_hash.setdefault(t["arch_hash"], []).append(t)
    rows = []
    for h, ts in by_hash.items():
        acc, acc_sd, n = mean_std([t["accuracy"] for t in ts])
        rew, rew_sd, _ = mean_std([t["reward"] for t in ts])
        rows.append((rew, ts[0].get("reference") or f"`{h}`", ts[0]["flops"], n, acc, acc_sd, rew_sd))
    for rew, label, flops, n, acc, acc_sd, rew_sd in sorted(rows, reverse=True):
        print(f"| {label} | {flops / 1e6:.1f}M | {n} | {pct(acc)} ± {100 * acc_sd:.2f} | {rew:.4f} ± {rew_sd:.4f} |")
answer = (run.get("answer") or {})
print(f"\nThe run's answer: trial {answer.get('trial', 'none (the search did not finish its finalists)')}, "
      f"blocks `{open(os.path.join(results, 'answer.txt')).read().strip()}`.")

print("\n## The answer, B0 and MnasNet-A1 on all of Fashion-MNIST\n")
finals = {}
for path in sorted(glob.glob(os.path.join(results, "final", "*-s[0-9].json"))):
    label, seed = os.path.basename(path)[:-5].rsplit("-s", 1)
    try:
        result = json.load(open(path))
    except json.JSONDecodeError:
        print(f"- {os.path.basename(path)}: no result (the training did not finish)")
        continue
    finals.setdefault(label, []).append(result)
if finals:
    some = next(iter(finals.values()))[0]
    print(f"Each trained {some['train_images']:,} images for {some['images_seen'] // some['train_images']} epochs "
          f"at {some['resolution']} px on {some['device']}; test accuracy on the data set's test images.\n")
    print("| network | params (proxy) | multiply-adds (224 px, 1000 classes) | seeds | test accuracy | validation accuracy |")
    print("|---|---|---|---|---|---|")
    flops_224 = {"efficientnet-b0": None, "mnasnet-a1": None}
    summary = {}
    for label in ("answer", "efficientnet-b0", "mnasnet-a1"):
        rs = [r for r in finals.get(label, []) if r.get("status") == "complete"]
        if not rs:
            continue
        test, test_sd, n = mean_std([r.get("test_accuracy") for r in rs])
        val, val_sd, _ = mean_std([r["accuracy"] for r in rs])
        ref = "EfficientNet-B0" if label == "efficientnet-b0" else "MnasNet-A1" if label == "mnasnet-a1" else None
        answer_blocks = open(os.path.join(results, "answer.txt")).read().strip()
        match = [t for t in trials if (t.get("reference") == ref if ref else
                                       ",".join(t["blocks"]) == answer_blocks)]
        flops = match[0]["flops"] if match else None
        summary[label] = (test, test_sd, flops)
        print(f"| {label} | {rs[0]['params']:,} | {flops / 1e6:.1f}M | {n} | {pct(test)} ± {100 * test_sd:.2f} | "
              f"{pct(val)} ± {100 * val_sd:.2f} |" if flops else
              f"| {label} | {rs[0]['params']:,} | ? | {n} | {pct(test)} ± {100 * test_sd:.2f} | {pct(val)} ± {100 * val_sd:.2f} |")
    if "answer" in summary and "efficientnet-b0" in summary:
        (a, a_sd, a_f), (b, b_sd, b_f) = summary["answer"], summary["efficientnet-b0"]
        spread = max(a_sd, b_sd)
        verdict = "a tie" if abs(a - b) <= spread else ("the answer ahead" if a > b else "B0 ahead")
        print(f"\nAnswer − B0: {100 * (a - b):+.2f} points of test accuracy; the larger seed std is "
              f"{100 * spread:.2f} points, so this is {verdict}"
              + (f"; the answer costs {a_f / b_f:.2f}× B0's multiply-adds." if a_f and b_f else "."))
