"""The service's networks rebuilt in plain PyTorch, loaded from the same safetensors files.

Independent of the Rust code: the architecture is read from the model card (`model.json`), the weights from
`weights.safetensors` (parsed here: an 8-byte little-endian header length, a JSON header, raw tensors), so
the comparison harness can check that both sides compute the same embeddings before timing either.
"""
import json
import math
import struct
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}


def read_safetensors(path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        t = torch.frombuffer(bytearray(raw[base + a : base + b]), dtype=DTYPES[meta["dtype"]])
        out[name] = t.reshape(meta["shape"]).clone()
    return out


def add_zero_padded(a, b):
    """dlib's add_prev: zero-pad both operands to the larger shape, aligned at index 0, then add."""
    if a.shape == b.shape:
        return a + b
    m = [max(x, y) for x, y in zip(a.shape, b.shape)]

    def pad(t):
        s = t.shape
        return F.pad(t, (0, m[3] - s[3], 0, m[2] - s[2], 0, m[1] - s[1]))

    return pad(a) + pad(b)


class DlibBlock(nn.Module):
    def __init__(self, c_in, c, down):
        super().__init__()
        s = 2 if down else 1
        self.conv1 = nn.Conv2d(c_in, c, 3, stride=s, padding=0 if down else 1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.down = down

    def forward(self, h):
        y = self.conv2(F.relu(self.conv1(h)))
        skip = F.avg_pool2d(h, 2, 2) if self.down else h
        return F.relu(add_zero_padded(skip, y))


# (channels, down, stage) of each residual block, as in dlib's network definition.
DLIB_PLAN = (
    [(32, False, 1)] * 3
    + [(64, True, 2)]
    + [(64, False, 2)] * 3
    + [(128, True, 3)]
    + [(128, False, 3)] * 2
    + [(256, True, 4)]
    + [(256, False, 4)] * 2
    + [(256, True, 5)]
)


class DlibResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        blocks, c_in = [], 32
        for c, down, _ in DLIB_PLAN:
            blocks.append(DlibBlock(c_in, c, down))
            c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        h = self.blocks(h)
        return self.fc(h.mean(dim=(2, 3)))

    def load(self, w):
        sd = {"stem.weight": w["stage0.stem.weight"], "stem.bias": w["stage0.stem.bias"], "fc.weight": w["stage6.fc.weight"]}
        for i, (_, _, stage) in enumerate(DLIB_PLAN):
            for k in ("conv1", "conv2"):
                for p in ("weight", "bias"):
                    sd[f"blocks.{i}.{k}.{p}"] = w[f"stage{stage}.b{i}.{k}.{p}"]
        self.load_state_dict(sd)
        return self


class ConvNet(nn.Module):
    def __init__(self, arch, in_channels, height, width):
        super().__init__()
        layers, c_in = [], in_channels
        self.stage_sizes = []
        for i, (c, n) in enumerate(zip(arch["channels"], arch["convs"])):
            for j in range(n):
                layers.append(nn.Conv2d(c_in, c, 3, padding=1, bias=False))
                layers.append(nn.BatchNorm2d(c))
                c_in = c
            self.stage_sizes.append(n)
        self.layers = nn.ModuleList(layers)
        head = arch["head"]
        pools = len(arch["channels"]) - 1
        if head == "global_average":
            self.pool, feats = (1, 1), c_in
        elif head == "flatten":
            self.pool, feats = None, c_in * (height >> pools) * (width >> pools)
        else:
            g = head["grid"]
            self.pool, feats = (g["rows"], g["cols"]), c_in * g["rows"] * g["cols"]
        self.proj = nn.Linear(feats, arch["embedding"])
        self.dropout = arch.get("dropout", 0.0)
        self.l2 = arch.get("l2_normalize", True)

    def forward(self, x):
        h, k = x, 0
        last = len(self.stage_sizes) - 1
        for i, n in enumerate(self.stage_sizes):
            for _ in range(n):
                h = F.relu(self.layers[k + 1](self.layers[k](h)))
                k += 2
            if i < last:
                h = F.max_pool2d(h, 2)
        if self.pool is not None:
            h = F.adaptive_avg_pool2d(h, self.pool)
        h = self.proj(F.dropout(h.flatten(1), self.dropout, self.training))
        return F.normalize(h, dim=1, eps=1e-12) if self.l2 else h

    def load(self, w, prefix=""):
        sd, k = {}, 0
        for i, n in enumerate(self.stage_sizes):
            for j in range(n):
                sd[f"layers.{k}.weight"] = w[f"{prefix}stage{i}.conv{j}.weight"]
                for p in ("weight", "bias", "running_mean", "running_var"):
                    sd[f"layers.{k + 1}.{p}"] = w[f"{prefix}stage{i}.bn{j}.{p}"]
                sd[f"layers.{k + 1}.num_batches_tracked"] = torch.tensor(0)
                k += 2
        sd["proj.weight"] = w[f"{prefix}proj.weight"]
        sd["proj.bias"] = w[f"{prefix}proj.bias"]
        self.load_state_dict(sd)
        return self


class Ensemble(nn.Module):
    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        e = torch.cat([m(x) for m in self.members], 1) / math.sqrt(len(self.members))
        return F.normalize(e, dim=1, eps=1e-12)


def build(model_dir):
    """(network in eval mode, card) for a model directory of the service."""
    card = json.loads((Path(model_dir) / "model.json").read_text())
    w = read_safetensors(Path(model_dir) / "weights.safetensors")
    arch, inp = card["architecture"], card["input"]

    def one(a, prefix=""):
        if a["kind"] == "dlib_resnet":
            return DlibResNet().load(w)
        if a["kind"] == "conv_net":
            return ConvNet(a, inp["channels"], inp["height"], inp["width"]).load(w, prefix)
        if a["kind"] == "ensemble":
            return Ensemble([one(m, f"{prefix}member{i}.") for i, m in enumerate(a["members"])])
        raise ValueError(f"unknown architecture {a['kind']}")

    return one(arch).eval(), card
