"""PyTorch eager reference for scripts/bench-train and scripts/gpu-bench: trains torchvision's
EfficientNet-B0 on synthetic uint8 data with the same loop effnas runs (gather a uint8 batch on the
device, convert and normalise, forward, label-smoothed cross-entropy, backward, SGD momentum 0.9
with weight decay), and prints one JSON line with images per second.

    python scripts/bench_reference.py [--batch 32] [--resolution 32] [--classes 10] [--steps 50]
        [--warmup 10] [--device cpu|cuda] [--precision fp32|bf16] [--channels-last] [--threads N]
"""

import argparse
import json
import time

import torch
import torchvision


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int)
    p.add_argument("--width", type=float, default=1.0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device = torch.device(a.device)
    if a.width == 1.0:
        model = torchvision.models.efficientnet_b0(num_classes=a.classes)
    else:
        from functools import partial
        from torchvision.models.efficientnet import _efficientnet_conf, EfficientNet
        settings, last = _efficientnet_conf("efficientnet_b0", width_mult=a.width, depth_mult=1.0)
        model = EfficientNet(settings, 0.2, last_channel=last, num_classes=a.classes)
    model = model.to(device)
    memory_format = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-5)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    n = a.batch * (a.steps + a.warmup)
    images = torch.randint(0, 256, (n, 3, a.resolution, a.resolution), dtype=torch.uint8, device=device)
    labels = torch.randint(0, a.classes, (n,), device=device)
    scale = torch.full((1, 3, 1, 1), 1.0 / (255 * 0.25), device=device)
    shift = torch.full((1, 3, 1, 1), -2.0, device=device)
    order = torch.randperm(n, device=device)

    def step(i: int) -> None:
        idx = order[i * a.batch:(i + 1) * a.batch]
        x = images.index_select(0, idx).float().mul(scale).add_(shift)
        x = x.contiguous(memory_format=memory_format)
        y = labels.index_select(0, idx)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for i in range(a.warmup):
        step(i)
    sync()
    t = time.perf_counter()
    for i in range(a.warmup, a.warmup + a.steps):
        step(i)
    sync()
    seconds = time.perf_counter() - t
    print(json.dumps({
        "tool": "pytorch",
        "batch": a.batch,
        "resolution": a.resolution,
        "steps": a.steps,
        "precision": a.precision,
        "channels_last": a.channels_last,
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in model.parameters()),
        "images_per_second": round(a.batch * a.steps / seconds, 2),
    }))


if __name__ == "__main__":
    main()
