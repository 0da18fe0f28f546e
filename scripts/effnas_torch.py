"""effnas checkpoints in PyTorch, and PyTorch weights for effnas.

    python scripts/effnas_torch.py evaluate CHECKPOINT [--builder auto|torchvision|effnas]
    python scripts/effnas_torch.py logits CHECKPOINT --input IO.safetensors --out OUT.safetensors
    python scripts/effnas_torch.py torchvision-fixture --model efficientnet_b0 --out DIR
    python scripts/effnas_torch.py torchscript-check MODEL.pt CHECKPOINT

CHECKPOINT is a folder written by `effnas train --save` (arch.json, meta.json,
weights.safetensors) or one file written by `effnas export-model` (the architecture and
metadata in its safetensors header). Weights carry torchvision's names, so:

- `build(arch, meta, "torchvision")` makes torchvision's EfficientNet (B0 layout at any width) or
  ResNet (effnas's `basic_`/`bottle_` networks at torchvision's widths) and loads the state dict
  strictly;
- `build(arch, meta, "effnas")` makes `EffnasNet`, a module written here for any member of the
  MnasNet-style spaces (MBConv, depthwise-separable and regular convolutions; kernels,
  expansions, squeeze-and-excitation, identity, pooling or no shortcut; any stem and head),
  whose parameter names are effnas's, so it loads any such checkpoint strictly.

Batch norm takes the checkpoint's eps (effnas trains with 1e-3, torchvision uses 1e-5), and
`preprocess` applies the checkpoint's resolution and normalisation exactly as effnas does
(bilinear resize of the uint8 images, rounded back to uint8; then x · (1 / 255σ) − μ / σ).

Reads and writes safetensors itself (8-byte little-endian header length, JSON header, raw
little-endian data), so it needs only torch and torchvision.
"""

import argparse
import gzip
import json
import struct
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "BF16": torch.bfloat16, "F16": torch.float16}
NAMES = {v: k for k, v in DTYPES.items()}


# ---- safetensors --------------------------------------------------------------------------------

def read_safetensors(path):
    """(tensors by name, metadata dict) of a safetensors file."""
    raw = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    body = raw[8 + length:]
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[start:end]), dtype=DTYPES[info["dtype"]]) if end > start \
            else torch.empty(0, dtype=DTYPES[info["dtype"]])
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None):
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        data = t.numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))


# ---- checkpoints --------------------------------------------------------------------------------

def load_checkpoint(path):
    """(arch dict, meta dict, state dict) of a checkpoint folder or an exported file."""
    path = Path(path)
    if path.is_dir():
        arch = json.loads((path / "arch.json").read_text())
        meta_file = path / "meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {"batch_norm_eps": 1e-3}
        state, _ = read_safetensors(path / "weights.safetensors")
        return arch, meta, state
    state, header = read_safetensors(path)
    if "effnas.arch" not in header:
        raise SystemExit(f"{path}: no effnas.arch in the safetensors header (not an effnas export)")
    return json.loads(header["effnas.arch"]), json.loads(header.get("effnas.meta", '{"batch_norm_eps": 0.001}')), state


def parse_block(text):
    """A canonical block string (`ds_r1_k3_s11_i32_o16_se0.25_noskip`) as a dict."""
    tokens = text.split("_")
    op = "ir"
    if tokens[0] in ("ds", "cn", "ir", "basic", "bottle"):
        op = tokens.pop(0)
    block = {"op": op, "e": 4 if op == "bottle" else 1, "se": 0.0, "skip": "identity"}
    for t in tokens:
        if t == "noskip":
            block["skip"] = "none"
        elif t == "poolskip":
            block["skip"] = "pool"
        elif t.startswith("se"):
            block["se"] = float(t[2:])
        elif t[0] == "s":
            block["s"] = int(t[1])
        elif t[0] in "rkeio":
            block[t[0]] = int(t[1:])
        elif t[0] == "c":
            block["o"] = int(t[1:])
        else:
            raise SystemExit(f"block {text!r}: unknown token {t!r}")
    return block


# ---- EffnasNet: any member of the MnasNet-style spaces, with effnas's names ---------------------

def activation(arch):
    return nn.ReLU() if arch.get("activation", "silu") == "relu" else nn.SiLU()


def conv_bn(c_in, c_out, k, stride, groups, eps, act):
    """torchvision's Conv2dNormActivation layout: `.0` conv, `.1` batch norm, `.2` activation."""
    parts = [nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out, eps=eps)]
    if act is not None:
        parts.append(act)
    return nn.Sequential(*parts)


class SqueezeExcite(nn.Module):
    def __init__(self, channels, squeeze, act):
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Conv2d(channels, squeeze, 1), nn.Conv2d(squeeze, channels, 1), act

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(s))))


class Layer(nn.Module):
    """Layer `index` of a block: `block` (its parts numbered in order), and `shortcut` (a pooling
    shortcut's projection) when it has one."""

    def __init__(self, b, index, arch, eps):
        super().__init__()
        c_in, c_out = (b["i"], b["o"]) if index == 0 else (b["o"], b["o"])
        stride = b["s"] if index == 0 else 1
        k, op, act = b["k"], b["op"], lambda: activation(arch)
        squeeze = max(1, int(c_in * b["se"])) if b["se"] > 0 else None
        parts = []
        if op == "ir":
            hidden = c_in * b["e"]
            if hidden != c_in:
                parts.append(conv_bn(c_in, hidden, 1, 1, 1, eps, act()))
            parts.append(conv_bn(hidden, hidden, k, stride, hidden, eps, act()))
            if squeeze:
                parts.append(SqueezeExcite(hidden, squeeze, act()))
            parts.append(conv_bn(hidden, c_out, 1, 1, 1, eps, None))
        elif op == "ds":
            parts.append(conv_bn(c_in, c_in, k, stride, c_in, eps, act()))
            if squeeze:
                parts.append(SqueezeExcite(c_in, squeeze, act()))
            parts.append(conv_bn(c_in, c_out, 1, 1, 1, eps, act()))
        elif op == "cn":
            parts.append(conv_bn(c_in, c_out, k, stride, 1, eps, act()))
            if squeeze:
                parts.append(SqueezeExcite(c_out, squeeze, act()))
        else:
            raise SystemExit(f"EffnasNet builds MBConv, ds_ and cn_ blocks, not {op}_ (use --builder torchvision)")
        self.block = nn.Sequential(*parts)
        agree = stride == 1 and c_in == c_out
        self.kind = "none" if b["skip"] == "none" else "identity" if agree else "pool" if b["skip"] == "pool" else "none"
        self.stride = stride
        if self.kind == "pool" and c_in != c_out:
            self.shortcut = conv_bn(c_in, c_out, 1, 1, 1, eps, None)

    def forward(self, x):
        y = self.block(x)
        if self.kind == "none":
            return y
        if self.kind == "pool":
            # Kernel = stride, ceil mode: the size of the padded strided convolution, odd sizes too.
            if self.stride > 1:
                x = F.avg_pool2d(x, self.stride, self.stride, 0, ceil_mode=True, count_include_pad=True)
            if hasattr(self, "shortcut"):
                x = self.shortcut(x)
        return y + x


class EffnasNet(nn.Module):
    """Stem `features.0`, block s layer l `features.{s}.{l}`, head `features.{blocks+1}`, global
    average pooling, `classifier` (dropout, linear) — effnas's builder in PyTorch."""

    def __init__(self, arch, eps):
        super().__init__()
        blocks = [parse_block(t) for t in arch["blocks"]]
        stem = arch.get("stem_channels", 32)
        features = [conv_bn(arch.get("input_channels", 3), stem, arch.get("stem_kernel", 3), 2, 1, eps, activation(arch))]
        self.stem_max_pool = arch.get("stem_max_pool", False)
        for b in blocks:
            features.append(nn.Sequential(*[Layer(b, i, arch, eps) for i in range(b["r"])]))
        last = blocks[-1]["o"] if blocks else stem
        head = arch.get("head_channels", 1280)
        if head is not None:
            features.append(conv_bn(last, head, 1, 1, 1, eps, activation(arch)))
            last = head
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(arch.get("dropout", 0.2)), nn.Linear(last, arch["num_classes"]))

    def forward(self, x):
        x = self.features[0](x)
        if self.stem_max_pool:
            x = F.max_pool2d(x, 3, 2, 1)
        for layer in self.features[1:]:
            x = layer(x)
        return self.classifier(x.mean((2, 3)))


# ---- torchvision's own models -------------------------------------------------------------------

def torchvision_model(arch, eps):
    """torchvision's ResNet or EfficientNet (B0's layout at the checkpoint's width)."""
    from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
    blocks = [parse_block(t) for t in arch["blocks"]]
    channels = arch.get("input_channels", 3)
    if all(b["op"] in ("basic", "bottle") for b in blocks):
        kinds = {b["op"] for b in blocks}
        if len(kinds) != 1 or len(blocks) != 4:
            raise SystemExit(f"not a torchvision ResNet layout: {arch['blocks']}")
        model = ResNet(BasicBlock if kinds == {"basic"} else Bottleneck, [b["r"] for b in blocks], num_classes=arch["num_classes"])
        if channels != 3:
            model.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
    else:
        settings, last = _efficientnet_conf("efficientnet_b0", width_mult=arch.get("stem_channels", 32) / 32.0, depth_mult=1.0)
        model = EfficientNet(settings, arch.get("dropout", 0.2), last_channel=last, num_classes=arch["num_classes"])
        if channels != 3:
            old = model.features[0][0]
            model.features[0][0] = nn.Conv2d(channels, old.out_channels, 3, 2, 1, bias=False)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = eps
    return model


def build(arch, meta, builder="auto"):
    eps = meta.get("batch_norm_eps", 1e-3)
    if builder == "auto":
        residual = all(parse_block(t)["op"] in ("basic", "bottle") for t in arch["blocks"])
        builder = "torchvision" if residual else "effnas"
    return torchvision_model(arch, eps) if builder == "torchvision" else EffnasNet(arch, eps)


def load_model(path, builder="auto"):
    arch, meta, state = load_checkpoint(path)
    model = build(arch, meta, builder)
    model.load_state_dict(state, strict=True)
    return model.eval(), arch, meta


# ---- data ---------------------------------------------------------------------------------------

def preprocess(images, meta, resolution):
    """uint8 [N, C, H, W] → the float batch effnas feeds the network."""
    x = images
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x.float(), size=(resolution, resolution), mode="bilinear", align_corners=False)
        x = x.round().clamp(0, 255)
    norm = meta.get("input")
    if norm is None:
        raise SystemExit("the checkpoint records no input normalisation (written before meta.json)")
    std = torch.tensor([max(s * 255.0, 1e-3) for s in norm["std"]], dtype=torch.float64)
    mean = torch.tensor(norm["mean"], dtype=torch.float64) * 255.0
    scale = (1.0 / std).float().reshape(1, -1, 1, 1)
    shift = (-mean / std).float().reshape(1, -1, 1, 1)
    return x.float() * scale + shift


def fashion_mnist_test(root="/usr/share/datasets/fashion-mnist"):
    root = Path(root)
    images = gzip.decompress((root / "t10k-images-idx3-ubyte.gz").read_bytes())[16:]
    labels = gzip.decompress((root / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:]
    x = torch.frombuffer(bytearray(images), dtype=torch.uint8).reshape(-1, 1, 28, 28)
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    return x, y


# ---- commands -----------------------------------------------------------------------------------

def cmd_evaluate(a):
    model, arch, meta = load_model(a.checkpoint, a.builder)
    x, y = fashion_mnist_test()
    xs = preprocess(x, meta, arch["resolution"])
    with torch.no_grad():
        predicted = torch.cat([model(xs[i:i + 1000]).argmax(-1) for i in range(0, len(xs), 1000)])
    correct = int((predicted == y).sum())
    print(json.dumps({"builder": type(model).__name__, "images": len(y), "correct": correct, "accuracy": correct / len(y)}))


def cmd_logits(a):
    model, _, _ = load_model(a.checkpoint, a.builder)
    io, _ = read_safetensors(a.input)
    with torch.no_grad():
        logits = model(io["x"])
    write_safetensors(a.out, {"logits": logits})
    print(json.dumps({"builder": type(model).__name__, "shape": list(logits.shape)}))


def cmd_torchvision_fixture(a):
    """torchvision's model with seeded random weights and random batch-norm statistics (so that
    eps and the statistics matter), its state dict, an input and its eval-mode logits."""
    import torchvision
    torch.manual_seed(a.seed)
    model = getattr(torchvision.models, a.model)(num_classes=a.num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    model.eval()
    x = torch.randn(2, 3, a.resolution, a.resolution)
    with torch.no_grad():
        logits = model(x)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / "torchvision.safetensors", model.state_dict(), {"format": "pt"})
    write_safetensors(out / "io.safetensors", {"x": x, "logits": logits})
    eps = {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    print(json.dumps({"model": a.model, "torchvision": torchvision.__version__, "batch_norm_eps": sorted(eps),
                      "tensors": len(model.state_dict())}))


def cmd_torchscript_check(a):
    """A TorchScript file from `effnas export-model --format torchscript` against the checkpoint
    loaded into EffnasNet: max |difference| of the logits on random input."""
    scripted = torch.jit.load(a.torchscript).eval()
    model, arch, _ = load_model(a.checkpoint, "effnas")
    x = torch.randn(3, arch.get("input_channels", 3), arch["resolution"], arch["resolution"])
    with torch.no_grad():
        gap = (scripted(x) - model(x)).abs().max().item()
    print(json.dumps({"max_abs_difference": gap}))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("evaluate", help="Fashion-MNIST test accuracy of a checkpoint in PyTorch")
    e.add_argument("checkpoint")
    e.add_argument("--builder", choices=["auto", "torchvision", "effnas"], default="auto")
    lg = sub.add_parser("logits", help="logits of io['x'] (a safetensors file) written to --out")
    lg.add_argument("checkpoint")
    lg.add_argument("--input", required=True)
    lg.add_argument("--out", required=True)
    lg.add_argument("--builder", choices=["auto", "torchvision", "effnas"], default="auto")
    t = sub.add_parser("torchvision-fixture", help="a torchvision model with random weights, an input and its logits")
    t.add_argument("--model", default="efficientnet_b0")
    t.add_argument("--num-classes", type=int, default=1000)
    t.add_argument("--resolution", type=int, default=224)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True)
    ts = sub.add_parser("torchscript-check", help="an exported TorchScript module against the checkpoint")
    ts.add_argument("torchscript")
    ts.add_argument("checkpoint")
    a = p.parse_args()
    {"evaluate": cmd_evaluate, "logits": cmd_logits, "torchvision-fixture": cmd_torchvision_fixture,
     "torchscript-check": cmd_torchscript_check}[a.command](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
