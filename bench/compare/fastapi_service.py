"""The reference a team would otherwise deploy: FastAPI + uvicorn + PyTorch serving face verification with
the same dlib weights (TorchScript, frozen, `optimize_for_inference`), for the HTTP side of the comparison.

`POST /v1/verify` takes the service's multipart fields `image_a` and `image_b` (ready 150×150 face chips,
what the service does with `detect=false`), normalises them as the model card says, embeds both (mirror
averaged when `--mirror`), and answers distance and verdict at the card's threshold.

`--mode naive`: one forward pass per request, run in FastAPI's thread pool.
`--mode batched`: requests queue; one worker thread takes up to `--max-batch` images or waits `--max-wait-ms`
after the first, runs one forward pass, and answers each request (what the Rust service does).
"""
import argparse
import asyncio
import io
import json
import sys
import queue
import threading
import time
from pathlib import Path

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from torch_models import build  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--mode", choices=["naive", "batched"], default="batched")
ap.add_argument("--mirror", action="store_true")
ap.add_argument("--max-batch", type=int, default=16)
ap.add_argument("--max-wait-ms", type=float, default=5.0)
ap.add_argument("--threads", type=int, default=0)
a = ap.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)

net, card = build(a.model)
inp = card["input"]
H, W = inp["height"], inp["width"]
mean = np.array(inp["mean"], dtype=np.float32).reshape(3, 1, 1)
std = np.array(inp["std"], dtype=np.float32).reshape(3, 1, 1)
metric = card["default_metric"]
threshold = card["thresholds"][metric]["value"]
with torch.no_grad():
    example = torch.zeros(1, 3, H, W)
    model = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, example).eval()))
    for b in (1, 2, 4, 8, 16):
        model(torch.zeros(b, 3, H, W))


def prepare(raw):
    img = Image.open(io.BytesIO(raw)).convert("RGB")
    if img.size != (W, H):
        img = img.resize((W, H), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return torch.from_numpy((x - mean) / std)


def embed(x):
    with torch.no_grad():
        if a.mirror:
            n = x.shape[0]
            e = model(torch.cat([x, x.flip(3)]))
            return (e[:n] + e[n:]) / 2
        return model(x)


def verdict(e):
    if metric == "cosine":
        d = 1.0 - torch.nn.functional.cosine_similarity(e[0:1], e[1:2]).item()
    else:
        d = (e[0] - e[1]).norm().item()
    return {"verified": d <= threshold, "distance": d, "metric": metric, "threshold": threshold}


jobs = queue.Queue()


def worker():
    while True:
        batch = [jobs.get()]
        n = batch[0][0].shape[0]
        end = time.monotonic() + a.max_wait_ms / 1e3
        while n < a.max_batch:
            left = end - time.monotonic()
            if left <= 0:
                break
            try:
                j = jobs.get(timeout=left)
            except queue.Empty:
                break
            batch.append(j)
            n += j[0].shape[0]
        e = embed(torch.cat([j[0] for j in batch]))
        k = 0
        for x, loop, fut in batch:
            m = x.shape[0]
            loop.call_soon_threadsafe(fut.set_result, e[k : k + m])
            k += m


if a.mode == "batched":
    threading.Thread(target=worker, daemon=True).start()

app = FastAPI()


@app.post("/v1/verify")
async def verify(image_a: UploadFile = File(...), image_b: UploadFile = File(...)):
    x = torch.stack([prepare(await image_a.read()), prepare(await image_b.read())])
    if a.mode == "naive":
        e = await asyncio.get_running_loop().run_in_executor(None, embed, x)
    else:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        jobs.put((x, loop, fut))
        e = await fut
    return verdict(e)


@app.get("/healthz")
def healthz():
    return {"status": "ok", "model": card["id"], "mode": a.mode}


uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", access_log=False)
