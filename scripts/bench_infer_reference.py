"""PyTorch eager side of scripts/bench-infer: torchvision's efficientnet_b0 (random weights,
1000 classes), eval mode, under torch.no_grad(), timed as effnas's `time_inference` times
(evaluator/src/train/measure.rs): per batch size, `--warmup` untimed forward passes of one random
batch, then `--runs` timed ones; median, 90th percentile (nearest rank), images/s at the median.

    python scripts/bench_infer_reference.py --batch 1,8,64 --resolution 224 --threads 2 --runs 10

Prints one JSON document shaped like `effnas bench-infer --json`'s `timings`.
"""

import argparse
import json
import math
import time

import torch
import torchvision


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", default="1,8,64")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--runs", type=int, default=30)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model = torchvision.models.efficientnet_b0().eval()
    timings = []
    with torch.no_grad():
        for batch in [int(b) for b in a.batch.split(",")]:
            x = torch.randn(batch, 3, a.resolution, a.resolution)
            for _ in range(a.warmup):
                model(x)
            times = []
            for _ in range(max(1, a.runs)):
                t = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - t) * 1e3)
            times.sort()
            median = times[len(times) // 2]
            p90 = times[max(0, math.ceil(len(times) * 0.9) - 1)]
            timings.append({"batch": batch, "resolution": a.resolution, "runs": len(times), "median_ms": median,
                            "p90_ms": p90, "images_per_second": batch / (median / 1e3)})
    print(json.dumps({"network": "torchvision efficientnet_b0", "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "warmup": a.warmup, "timings": timings}))


if __name__ == "__main__":
    main()
