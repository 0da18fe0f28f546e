"""Parameters and multiply-adds of EfficientNet-B0 as a proxy network (scaled in width and depth,
with its own input channels, classes and resolution), counted in torchvision 0.26 with the same
forward hooks as torchvision_costs.py. An independent check of the cost effnas reports for a proxy.

    .venv/bin/python scripts/golden/b0_proxy_cost.py [--width 0.25] [--depth 1.0] \
        [--resolution 32] [--in-channels 1] [--classes 10]

The defaults are the proxy of docs/BENCHMARKS.md ("Proxy accuracy on Fashion-MNIST"): B0 at
width 0.25, full depth, 1-channel 32 × 32 input, 10 classes. Channels round as torchvision's
`_make_divisible` (the same rule as effnas's `round_channels`), layers as `ceil(depth × n)`; the
stem is replaced by a convolution with `--in-channels` inputs, as scripts/load_in_torchvision.py
does. Prints one JSON object.
"""

import argparse
import json

from torch import nn
from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf

from torchvision_costs import count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--depth", type=float, default=1.0)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--in-channels", type=int, default=1)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    settings, last_channel = _efficientnet_conf("efficientnet_b0", width_mult=args.width, depth_mult=args.depth)
    model = EfficientNet(settings, 0.2, last_channel=last_channel, num_classes=args.classes)
    stem = model.features[0][0]
    model.features[0][0] = nn.Conv2d(args.in_channels, stem.out_channels, 3, 2, 1, bias=False)
    result = {
        "model": "efficientnet_b0",
        "width": args.width,
        "depth": args.depth,
        "in_channels": args.in_channels,
        "classes": args.classes,
        **count(model, args.resolution, args.in_channels),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
