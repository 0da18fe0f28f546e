"""Summarises a reproduce-b0 database from effnas's own JSON output (no figure typed by hand).

Usage: python3 report.py EFFNAS DB SEARCH_RUN (id or name) > summary.md
"""
import json
import subprocess
import sys

effnas, db, run = sys.argv[1], sys.argv[2], sys.argv[3]


def effnas_json(*args):
    out = subprocess.run([effnas, *args, "--db", db, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


search = next(r for r in effnas_json("runs") if str(r["id"]) == run or r["name"] == run)
trials = effnas_json("trials", "--run", run)
complete = [t for t in trials if t["state"] == "complete"]
ranked = sorted(complete, key=lambda t: t["reward"], reverse=True)
exported = json.loads(
    subprocess.run([effnas, "export", "--db", db, "--run", run, "--format", "json"], check=True, capture_output=True, text=True).stdout
)
images = sum((t.get("extra") or {}).get("images_seen", 0) for t in exported if t["reused_from"] is None)
trained = sum(1 for t in exported if t["state"] == "complete" and t["reused_from"] is None)

reused = search["trials_done"] - trained
print(f"- run {search['id']} ({search['name']}): {search['trials_done']} complete, {search['trials_failed']} failed, "
      f"{trained} trained" + (f", {reused} reused the result of an identical architecture" if reused else ""))
print(f"- wall-clock: {search['duration_seconds'] / 3600:.2f} h; images trained: {images:,}")
print(f"- best reward: {ranked[0]['reward']:.4f} (trial {ranked[0]['id']}, accuracy {ranked[0]['accuracy'] * 100:.2f}%, "
      f"{ranked[0]['flops'] / 1e6:.1f}M multiply-adds)")
for name in ("EfficientNet-B0", "MnasNet-A1"):
    for rank, t in enumerate(ranked, 1):
        if t.get("reference") == name:
            print(f"- {name}: trial {t['id']}, reward {t['reward']:.4f}, accuracy {t['accuracy'] * 100:.2f}%, "
                  f"rank {rank} of {len(ranked)} complete trials")
            break
    else:
        print(f"- {name}: not measured in this run")
