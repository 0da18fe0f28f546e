"""Regenerate evaluator/tests/data/torchvision_b0_state_dict.json: the name and shape of every
tensor in torchvision's `efficientnet_b0(num_classes=10).state_dict()` and its parameter count,
the golden data of `b0_variables_match_torchvision_state_dict` in evaluator/tests/model.rs.

    .venv/bin/python scripts/golden/b0_state_dict.py > evaluator/tests/data/torchvision_b0_state_dict.json

Runs on the project's venv (torch 2.11.0, torchvision 0.26.0); needs no network and no weights.
"params" is the sum of numel() over parameters() (buffers such as BN running statistics and
num_batches_tracked are in "tensors" but not counted). Tensors are listed in state-dict order.

The JSON goes to stdout in the committed formatting (json.dumps with indent=0, no trailing
newline). The "source" text says "generated once" because that is what the committed file says;
this script is how it was, and can again be, generated.
"""

import json
import sys

import torch
import torchvision
from torchvision import models


def main() -> None:
    model = models.efficientnet_b0(num_classes=10)
    tensors = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    tv_version = torchvision.__version__.split("+")[0]
    torch_version = torch.__version__.split("+")[0]
    golden = {
        "source": f"torchvision {tv_version} efficientnet_b0(num_classes=10).state_dict(), "
        f"torch {torch_version}, generated once",
        "tensors": tensors,
        "params": sum(p.numel() for p in model.parameters()),
    }
    sys.stdout.write(json.dumps(golden, indent=0))
    print(f"{len(tensors)} tensors, {golden['params']} parameters", file=sys.stderr)


if __name__ == "__main__":
    main()
