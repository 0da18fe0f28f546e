"""Regenerate evaluator/tests/data/torchvision_resnet_state_dicts.json: the name and shape of every
tensor in torchvision's `resnet18/34/50(num_classes=10).state_dict()` and each model's parameter
count, the golden data of `resnet_variables_match_torchvision_state_dicts` in
evaluator/tests/model.rs (the exchange check of the ResNet presets, as b0_state_dict.py is B0's).

    .venv/bin/python scripts/golden/resnet_state_dicts.py > evaluator/tests/data/torchvision_resnet_state_dicts.json

Runs on the project's venv (torch 2.11.0, torchvision 0.26.0); needs no network and no weights.
"params" is the sum of numel() over parameters() (buffers such as BN running statistics and
num_batches_tracked are in "tensors" but not counted). Tensors are listed in state-dict order.
The JSON goes to stdout (json.dumps with indent=0, no trailing newline).
"""

import json
import sys

import torch
import torchvision
from torchvision import models


def main() -> None:
    tv_version = torchvision.__version__.split("+")[0]
    torch_version = torch.__version__.split("+")[0]
    golden = {
        "source": f"torchvision {tv_version} resnet18/34/50(num_classes=10).state_dict(), torch {torch_version}",
        "models": {},
    }
    for depth in (18, 34, 50):
        model = getattr(models, f"resnet{depth}")(num_classes=10)
        tensors = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
        params = sum(p.numel() for p in model.parameters())
        golden["models"][f"resnet{depth}"] = {"tensors": tensors, "params": params}
        print(f"resnet{depth}: {len(tensors)} tensors, {params} parameters", file=sys.stderr)
    sys.stdout.write(json.dumps(golden, indent=0))


if __name__ == "__main__":
    main()
