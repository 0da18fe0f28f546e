"""Load an effnas checkpoint (`effnas train ... --save DIR`) into torchvision's EfficientNet or
ResNet and, optionally, evaluate it on Fashion-MNIST's test set in PyTorch.

    python scripts/load_in_torchvision.py DIR [--evaluate-fashion-mnist]

It reads DIR/weights.safetensors without the `safetensors` package (the format is an 8-byte
little-endian header length, a JSON header, then raw little-endian tensors), builds
torchvision's EfficientNet-B0 with the checkpoint's width, classes and input channels, sets batch
norm eps to effnas's 1e-3, and calls `load_state_dict(strict=True)`: every name and shape must match.
Works for architectures that are EfficientNet-B0 scaled in width (the effnas presets), and for
ResNets of effnas's `basic_`/`bottle_` blocks at torchvision's widths (64…512 a stage: the
resnet-18/34/50 presets and their depth-scaled versions, since torchvision's `ResNet` takes any
number of layers a stage), built as `ResNet(BasicBlock or Bottleneck, layers)`. Other members of
the search space have layouts torchvision does not build.
"""

import argparse
import gzip
import json
import struct
import sys
from pathlib import Path

import torch
import torchvision
from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "BF16": torch.bfloat16, "F16": torch.float16}


def read_safetensors(path: Path) -> dict:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    body = raw[8 + length:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[start:end]), dtype=DTYPES[info["dtype"]])
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors


def build_resnet(arch: dict) -> torch.nn.Module:
    """torchvision's ResNet with the checkpoint's block kind, layers a stage and classes."""
    blocks = arch["blocks"]
    kinds = {block.split("_")[0] for block in blocks}
    if kinds not in ({"basic"}, {"bottle"}) or len(blocks) != 4:
        raise SystemExit(f"not a torchvision ResNet layout: {blocks}")
    layers = [int(next(t[1:] for t in block.split("_") if t.startswith("r"))) for block in blocks]
    model = ResNet(BasicBlock if kinds == {"basic"} else Bottleneck, layers, num_classes=arch["num_classes"])
    channels = arch.get("input_channels", 3)
    if channels != 3:
        model.conv1 = torch.nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
    return model


def build(arch: dict) -> torch.nn.Module:
    if all(block.startswith(("basic_", "bottle_")) for block in arch["blocks"]):
        model = build_resnet(arch)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eps = 1e-3
        return model
    stem = arch.get("stem_channels", 32)
    width = stem / 32.0
    settings, last = _efficientnet_conf("efficientnet_b0", width_mult=width, depth_mult=1.0)
    model = EfficientNet(settings, arch.get("dropout", 0.2), last_channel=last, num_classes=arch["num_classes"])
    channels = arch.get("input_channels", 3)
    if channels != 3:
        old = model.features[0][0]
        model.features[0][0] = torch.nn.Conv2d(channels, old.out_channels, 3, 2, 1, bias=False)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-3
    return model


def fashion_mnist_test():
    root = Path("/usr/share/datasets/fashion-mnist")
    images = gzip.decompress((root / "t10k-images-idx3-ubyte.gz").read_bytes())[16:]
    labels = gzip.decompress((root / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:]
    x = torch.frombuffer(bytearray(images), dtype=torch.uint8).reshape(-1, 1, 28, 28)
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    return x, y


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("dir", type=Path)
    p.add_argument("--evaluate-fashion-mnist", action="store_true")
    a = p.parse_args()
    arch = json.loads((a.dir / "arch.json").read_text())
    state = read_safetensors(a.dir / "weights.safetensors")
    model = build(arch)
    model.load_state_dict(state, strict=True)
    print(f"loaded {len(state)} tensors into torchvision {torchvision.__version__} {type(model).__name__} (strict)")
    if a.evaluate_fashion_mnist:
        # Normalisation as effnas: per-channel mean/std of the proxy's training images, taken
        # from result.json when present; otherwise Fashion-MNIST's usual figures.
        x, y = fashion_mnist_test()
        r = arch["resolution"]
        xf = torch.nn.functional.interpolate(x.float(), size=(r, r), mode="bilinear", align_corners=False).round().clamp(0, 255)
        mean, std = 72.94, 90.02  # Fashion-MNIST training images, pixel units
        xf = (xf - mean) / std
        model.eval()
        with torch.no_grad():
            predicted = torch.cat([model(xf[i:i + 500]).argmax(-1) for i in range(0, len(xf), 500)])
        print(f"test accuracy in PyTorch: {(predicted == y).float().mean().item():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
