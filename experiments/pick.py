"""The architecture a search run picks, from effnas's JSON: the finalists' answer when the run has
one, else the best reward at the highest rung any non-reference candidate reached (rewards of
different rungs do not compare: a higher rung trains on more images).

Usage: python3 experiments/pick.py RUNS_JSON TRIALS_JSON RUN_NAME [--json]
(RUNS_JSON from `effnas runs --json`, TRIALS_JSON from `effnas trials --run RUN --json`.)
Prints the picked architecture's block strings, comma-separated (a SPEC for `effnas train`), or
with --json an object {"trial", "setting", "reward", "accuracy", "flops", "blocks"}; nothing when
no candidate finished.
"""
import json
import sys

runs, trials, name = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
run = next(r for r in runs if r["name"] == name)
answer = run.get("answer")
if answer:
    picked = {"trial": answer["trial"], "setting": "finalists", "reward": answer["reward"]["mean"],
              "accuracy": answer["accuracy"]["mean"], "flops": answer["flops"], "blocks": answer["blocks"]}
else:
    first_final = ((run["config"] or {}).get("finalists") or {}).get("first_setting", 1 << 30)
    done = [t for t in trials if t["state"] == "complete" and t.get("reference") is None
            and t["setting"] < first_final]
    best = max(done, key=lambda t: (t["setting"], t["reward"])) if done else None
    picked = best and {k: best[k] for k in ("setting", "reward", "accuracy", "flops", "blocks")} | {"trial": best["id"]}
if "--json" in sys.argv:
    print(json.dumps(picked))
elif picked:
    print(",".join(picked["blocks"]))
