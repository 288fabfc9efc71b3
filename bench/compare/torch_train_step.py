"""Time a training step in PyTorch exactly as `siamese bench --train-pairs N` does: the same network and
weights, the same inputs (the dump of `siamese bench --dump`; pair i is inputs i and 3i + 1, cyclically,
dissimilar when i is odd), contrastive loss (Y = 0 for a similar pair, margin 1), Adam at 1e-4. Prints one JSON line with
the first step's loss, so the harness can check both sides compute the same thing."""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from torch_models import build  # noqa: E402


def contrastive(ea, eb, dissimilar, margin=1.0):
    d2 = (ea - eb).square().sum(1)
    d = (d2 + 1e-12).sqrt()
    return ((1 - dissimilar) * 0.5 * d2 + dissimilar * 0.5 * (margin - d).relu().square()).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    net, card = build(a.model)
    net.train()
    inp = card["input"]
    x_all = torch.from_numpy(
        np.fromfile(Path(a.dump) / "inputs.f32", dtype="<f4").reshape(-1, inp["channels"], inp["height"], inp["width"])
    )
    b = a.pairs
    n = x_all.shape[0]
    x = x_all[[k % n for k in range(b)] + [(3 * k + 1) % n for k in range(b)]].contiguous()
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.tensor([float(k % 2) for k in range(b)])
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step():
        e = net(x)
        loss = contrastive(e[:b], e[b:], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    first = step()
    for _ in range(1, max(a.warmup, 1)):
        step()
    ms = []
    for _ in range(max(a.iters, 1)):
        t = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    p50 = ms[len(ms) // 2]
    side = "pytorch-channels_last" if a.channels_last else "pytorch-eager"
    print(json.dumps({
        "side": side, "model": card["id"], "train_pairs": b, "iters": len(ms), "ms_per_step_p50": p50,
        "pairs_per_second": b * 1e3 / p50, "first_loss": first, "threads": torch.get_num_threads(),
    }), flush=True)


if __name__ == "__main__":
    main()
