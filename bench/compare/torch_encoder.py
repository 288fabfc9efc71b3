"""Time one of the service's encoders in PyTorch: eager, channels_last, or TorchScript (traced, frozen,
`optimize_for_inference`), on the exact inputs the service prepared (a raw little-endian f32 file written by
`siamese bench --dump`), after checking that the outputs match the service's to a tolerance.

Prints one JSON line per batch size, in the same shape as `siamese bench`.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from torch_models import build  # noqa: E402


def prepare(net, variant, example):
    if variant == "eager":
        return net, lambda x: x
    if variant == "channels_last":
        net = net.to(memory_format=torch.channels_last)
        return net, lambda x: x.contiguous(memory_format=torch.channels_last)
    if variant == "torchscript":
        with torch.no_grad():
            ts = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, example).eval()))
        return ts, lambda x: x
    raise ValueError(variant)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--dump", required=True, help="folder written by `siamese bench --dump`")
    ap.add_argument("--variant", default="eager", choices=["eager", "channels_last", "torchscript"])
    ap.add_argument("--batch", default="1,16,64")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    net, card = build(a.model)
    inp = card["input"]
    shape = (inp["channels"], inp["height"], inp["width"])
    d = Path(a.dump)
    x_all = torch.from_numpy(np.fromfile(d / "inputs.f32", dtype="<f4").reshape(-1, *shape))
    ours = np.fromfile(d / "outputs.f32", dtype="<f4").reshape(x_all.shape[0], -1)
    batches = [int(b) for b in a.batch.split(",")]
    example = x_all[: min(batches)]
    net, fmt = prepare(net, a.variant, example)
    with torch.no_grad():
        got = torch.cat([net(fmt(x_all[i : i + 1])) for i in range(x_all.shape[0])]).numpy()
    diff = float(np.abs(got - ours).max())
    if not diff <= a.tolerance:
        print(json.dumps({"error": "parity", "variant": a.variant, "max_abs_diff": diff}))
        sys.exit(2)
    for b in batches:
        idx = [i % x_all.shape[0] for i in range(b)]
        x = fmt(x_all[idx].contiguous())
        with torch.no_grad():
            for _ in range(max(a.warmup, 1)):
                net(x)
            ms = []
            for _ in range(max(a.iters, 1)):
                t = time.perf_counter()
                net(x)
                ms.append((time.perf_counter() - t) * 1e3)
        ms.sort()
        p50 = ms[len(ms) // 2]
        print(json.dumps({
            "side": f"pytorch-{a.variant}", "model": card["id"], "batch": b, "iters": len(ms),
            "ms_per_batch_p50": p50, "ms_per_image": p50 / b, "max_abs_diff": diff,
            "threads": torch.get_num_threads(),
        }), flush=True)


if __name__ == "__main__":
    main()
