"""Regenerate space/tests/data/torchvision.json: parameters and multiply-adds of torchvision's
EfficientNet-B0…B7, MobileNetV2 and ResNet-18/34/50, the golden numbers of space/tests/golden.rs.

    .venv/bin/python scripts/golden/torchvision_costs.py > space/tests/data/torchvision.json

Runs on the project's venv (torch 2.11.0, torchvision 0.26.0); needs no network and no weights:
every model is built with default arguments (1000 classes, random initialisation).

- params: the sum of numel() over model.parameters() (buffers such as BN running statistics
  are not parameters).
- macs: multiply-adds of every Conv2d (output elements × in_channels/groups × kernel area) and
  Linear (in_features × out_features), counted with forward hooks on one image at the model's
  official resolution in eval mode. Bias additions, batch norm, activations, pooling and the
  SE gating multiply are not counted (the papers' convention, and the cost model's).

The JSON goes to stdout in the committed formatting (json.dumps with indent=1, no trailing
newline). A comparison with torchvision's own metadata (`_ops`, in GFLOPS) goes to stderr.
"""

import json
import sys

import torch
import torchvision
from torch import nn
from torchvision import models

EFFICIENTNET_RESOLUTIONS = [224, 240, 260, 300, 380, 456, 528, 600]

SOURCE = (
    "torchvision {tv} (torch {torch}), efficientnet_b0..b7(), mobilenet_v2() and resnet18/34/50() with default arguments, "
    "1000 classes. params: sum of numel() over parameters(); macs: multiply-adds of every Conv2d "
    "(output elements x in_channels/groups x kernel area) and Linear (in x out), counted with forward "
    "hooks on one image at the given resolution. torchvision's own metadata (_ops, GFLOPS) agrees to "
    "its three decimals for every model except b2, whose metadata was computed at 288 px, not the "
    "official 260."
)


def count(model: nn.Module, resolution: int, channels: int = 3) -> dict:
    """Parameters and multiply-adds of `model` on one `channels` × resolution² image."""
    macs = 0

    def conv_hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = module.kernel_size
        macs += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, inputs, _output) -> None:
        nonlocal macs
        rows = inputs[0].numel() // module.in_features
        macs += rows * module.in_features * module.out_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, channels, resolution, resolution))
    for handle in handles:
        handle.remove()
    params = sum(p.numel() for p in model.parameters())
    return {"resolution": resolution, "params": params, "macs": macs}


def metadata_gflops(weights_enum) -> float:
    return weights_enum.DEFAULT.meta["_ops"]


def main() -> None:
    torch.manual_seed(0)
    rows = []
    for index, resolution in enumerate(EFFICIENTNET_RESOLUTIONS):
        name = f"efficientnet_b{index}"
        row = {"model": f"b{index}", **count(getattr(models, name)(), resolution)}
        rows.append(row)
        weights = getattr(models, f"EfficientNet_B{index}_Weights")
        print(
            f"{name}: {row['params']} params, {row['macs'] / 1e9:.3f} GMACs at {resolution} px; "
            f"torchvision metadata {metadata_gflops(weights):.3f} GFLOPS",
            file=sys.stderr,
        )
    mobilenet = count(models.mobilenet_v2(), 224)
    print(
        f"mobilenet_v2: {mobilenet['params']} params, {mobilenet['macs'] / 1e9:.3f} GMACs at 224 px; "
        f"torchvision metadata {metadata_gflops(models.MobileNet_V2_Weights):.3f} GFLOPS",
        file=sys.stderr,
    )
    resnets = []
    for depth, weights in [(18, models.ResNet18_Weights), (34, models.ResNet34_Weights), (50, models.ResNet50_Weights)]:
        row = {"model": f"resnet{depth}", **count(getattr(models, f"resnet{depth}")(), 224)}
        resnets.append(row)
        print(
            f"resnet{depth}: {row['params']} params, {row['macs'] / 1e9:.3f} GMACs at 224 px; "
            f"torchvision metadata {metadata_gflops(weights):.3f} GFLOPS",
            file=sys.stderr,
        )
    tv_version = torchvision.__version__.split("+")[0]
    torch_version = torch.__version__.split("+")[0]
    golden = {
        "source": SOURCE.format(tv=tv_version, torch=torch_version),
        "efficientnet": rows,
        "mobilenet_v2": mobilenet,
        "resnet": resnets,
    }
    sys.stdout.write(json.dumps(golden, indent=1))


if __name__ == "__main__":
    main()
