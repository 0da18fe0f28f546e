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
    print("| network | params (proxy) | multiply-adds (224 px, 1000 classes) | seeds | test accuracy (per seed) | validation accuracy | reward (validation) |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for label in ("answer", "efficientnet-b0", "mnasnet-a1"):
        rs = [r for r in finals.get(label, []) if r.get("status") == "complete"]
        if not rs:
            continue
        test, test_sd, n = mean_std([r.get("test_accuracy") for r in rs])
        val, val_sd, _ = mean_std([r["accuracy"] for r in rs])
        rew, rew_sd, _ = mean_std([r["reward"] for r in rs])
        ref = "EfficientNet-B0" if label == "efficientnet-b0" else "MnasNet-A1" if label == "mnasnet-a1" else None
        answer_blocks = open(os.path.join(results, "answer.txt")).read().strip()
        match = [t for t in trials if (t.get("reference") == ref if ref else
                                       ",".join(t["blocks"]) == answer_blocks)]
        flops = match[0]["flops"] if match else None
        summary[label] = (test, test_sd, flops, n)
        per_seed = ", ".join(f"{100 * r['test_accuracy']:.2f}" for r in rs)
        cost = f"{flops / 1e6:.1f}M" if flops else "?"
        print(f"| {label} | {rs[0]['params']:,} | {cost} | {n} | {pct(test)} ± {100 * test_sd:.2f} ({per_seed}) | "
              f"{pct(val)} ± {100 * val_sd:.2f} | {rew:.4f} ± {rew_sd:.4f} |")
    # A difference counts only when it exceeds twice its standard error (Welch: the two
    # networks' seed variances over their seed counts) and the larger seed spread: with 3 seeds
    # anything closer is a tie.
    for other, label in (("efficientnet-b0", "B0"), ("mnasnet-a1", "MnasNet-A1")):
        if "answer" not in summary or other not in summary:
            continue
        (a, a_sd, a_f, a_n), (b, b_sd, b_f, b_n) = summary["answer"], summary[other]
        se = (a_sd ** 2 / a_n + b_sd ** 2 / b_n) ** 0.5
        bar = max(2 * se, a_sd, b_sd)
        verdict = "a tie" if abs(a - b) <= bar else ("the answer ahead" if a > b else f"{label} ahead")
        print(f"\nAnswer − {label}: {100 * (a - b):+.2f} points of test accuracy; standard error of the "
              f"difference {100 * se:.2f}, larger seed std {100 * max(a_sd, b_sd):.2f}: {verdict}"
              + (f". The answer costs {a_f / b_f:.2f}× {label}'s multiply-adds." if a_f and b_f else "."))
