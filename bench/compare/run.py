"""`make compare`: the service against PyTorch on this machine, side by side, in one run.

1. Encoders (face dlib ResNet, signature ensemble): `siamese bench --network-only --dump` prepares real
   inputs (LFW View 1 photos detected and aligned by the service's pipeline; CEDAR signatures) and writes
   them with the service's embeddings; each PyTorch variant (eager, channels_last, TorchScript frozen +
   optimize_for_inference) must reproduce those embeddings to 1e-4 before it is timed. Rounds alternate the
   sides; the table gives the median per side and the ratio ours / PyTorch's best with its spread over rounds
   (and ours without the oneDNN plan, `SIAMESE_ONEDNN=0`, for what the plan is worth).
2. Training step (face network, contrastive loss, Adam): ours vs PyTorch eager; first-step losses compared.
3. HTTP verify (two 150×150 face chips per request, `detect=false`, mirror averaging on both sides):
   the service vs FastAPI + uvicorn + TorchScript, naive (one forward per request) and batched, at 1, 8 and
   32 concurrent clients, driven by the same load generator (`examples/loadgen.rs`), alternating; four pairs
   through every service first must give the same distances (within 0.01) and verdicts.

Prints a markdown table and writes every raw line to `--out` (JSON). Options: `--rounds`, `--quick`.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PY = sys.executable


def sh(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_ready(url, proc, secs=120):
    t = time.time()
    while time.time() - t < secs:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.3)
    raise RuntimeError(f"{url}: not ready after {secs} s")


def spread(xs):
    return f"{min(xs):.2f}–{max(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"


def lfw_photos(data, n):
    root = Path(data) / "lfw-view1"
    people = sorted(p for p in root.rglob("*") if p.is_dir() and any(p.glob("*.jpg")))
    out = []
    for p in people:
        out.append(sorted(p.glob("*.jpg"))[0])
        if len(out) == n:
            break
    return out


def cedar_scans(data, n):
    return sorted((Path(data) / "cedar-dev" / "full_org").glob("*.png"))[:n]


def encoders(a, bin_, dump_root, results):
    models = [("face", ROOT / "models/face-dlib-r29-v1", lfw_photos(a.data, 16)),
              ("signature", ROOT / "models/signature-cedar-v1", cedar_scans(a.data, 16))]
    batches = "1,16,64" if not a.quick else "1,16"
    table = []
    for name, model, images in models:
        dump = dump_root / name
        base = [str(bin_), "bench", "--model", model.name, "--network-only", "--batch", batches,
                "--iters", str(a.iters), "--warmup", "3"]
        sh(base[:2] + ["--model", model.name, "--network-only", "--batch", "1", "--iters", "1",
                       "--dump", str(dump)] + [str(p) for p in images], cwd=ROOT)
        if not a.time_encoders:
            continue
        per = {}  # (side, batch) -> [ms per image]
        variants = ["eager", "channels_last", "torchscript"]
        for r in range(a.rounds):
            for side in (["ours", "ours-modules"] + variants) if r % 2 == 0 else (variants + ["ours-modules", "ours"]):
                if side.startswith("ours"):
                    # ours-modules: the same binary without its oneDNN plan (SIAMESE_ONEDNN=0), tch's modules.
                    env = dict(os.environ, SIAMESE_ONEDNN="0" if side == "ours-modules" else "1")
                    lines = sh(base + [str(p) for p in images], cwd=ROOT, env=env)
                    lines = [dict(l, side=side) for l in lines]
                else:
                    cmd = [PY, str(HERE / "torch_encoder.py"), "--model", str(model), "--dump", str(dump),
                           "--variant", side, "--batch", batches, "--iters", str(a.iters)]
                    try:
                        lines = sh(cmd)
                    except RuntimeError as e:
                        msg = str(e).splitlines()[-1][:160]
                        results.append({"model": name, "side": f"pytorch-{side}", "error": msg})
                        per.setdefault((f"pytorch-{side}", "error"), msg)
                        continue
                for l in lines:
                    results.append(dict(l, model_kind=name, round=r))
                    per.setdefault((l["side"], l["batch"]), []).append(l["ms_per_image"])
        for b in [int(x) for x in batches.split(",")]:
            ours = per.get(("ours", b), [])
            row = {"model": name, "batch": b, "ours": statistics.median(ours),
                   "modules": statistics.median(per[("ours-modules", b)])}
            best, best_side = None, None
            for v in variants:
                xs = per.get((f"pytorch-{v}", b))
                if xs:
                    row[v] = statistics.median(xs)
                    if best is None or row[v] < best:
                        best, best_side = row[v], v
                else:
                    row[v] = None
            ratios = [o / min(per[(f"pytorch-{v}", b)][i] for v in variants if per.get((f"pytorch-{v}", b)))
                      for i, o in enumerate(ours)]
            row.update(best=best_side, ratio=statistics.median(ratios), ratio_spread=spread(ratios))
            table.append(row)
    if not table:
        return table
    print("\n### Encoder, ms per image (median of rounds); ratio = ours / PyTorch's best, spread over rounds\n")
    print("| network | batch | ours | ours without oneDNN plan | PyTorch eager | channels_last | TorchScript opt. | ratio (spread) |")
    print("|---|---|---|---|---|---|---|---|")
    f = lambda x: "failed" if x is None else f"{x:.2f}"
    for r in table:
        print(f"| {r['model']} | {r['batch']} | {r['ours']:.2f} | {r['modules']:.2f} | {f(r['eager'])} | {f(r['channels_last'])} | "
              f"{f(r['torchscript'])} | **{r['ratio']:.2f}** ({r['ratio_spread']}, best: {r['best']}) |")
    return table


def train_step(a, bin_, dump_root, results):
    dump = dump_root / "face"
    pairs = str(a.train_pairs)
    ours, theirs, loss = [], [], []
    for r in range(a.rounds):
        order = ["ours", "pytorch"] if r % 2 == 0 else ["pytorch", "ours"]
        for side in order:
            if side == "ours":
                l = sh([str(bin_), "bench", "--model", "face-dlib-r29-v1", "--train-pairs", pairs, "--iters",
                        str(a.train_iters), "--warmup", "2"] + [str(p) for p in lfw_photos(a.data, 16)], cwd=ROOT)[0]
                ours.append(l["pairs_per_second"])
                loss.append(("ours", l["first_loss"]))
            else:
                l = sh([PY, str(HERE / "torch_train_step.py"), "--model", str(ROOT / "models/face-dlib-r29-v1"),
                        "--dump", str(dump), "--pairs", pairs, "--iters", str(a.train_iters)])[0]
                theirs.append(l["pairs_per_second"])
                loss.append(("pytorch", l["first_loss"]))
            results.append(dict(l, round=r, part="train"))
    lo = [x for s, x in loss if s == "ours"][0]
    lt = [x for s, x in loss if s == "pytorch"][0]
    ratios = [o / t for o, t in zip(ours, theirs)]
    print(f"\n### Training step, face ResNet, {pairs} pairs (pairs/s, median of rounds)\n")
    print("| ours | PyTorch eager | ratio ours / PyTorch (spread) | first loss ours / PyTorch |")
    print("|---|---|---|---|")
    print(f"| {statistics.median(ours):.1f} | {statistics.median(theirs):.1f} | **{statistics.median(ratios):.2f}** "
          f"({spread(ratios)}) | {lo:.6f} / {lt:.6f} |")
    if abs(lo - lt) > 1e-4 * max(1.0, abs(lt)):
        raise RuntimeError(f"training parity: first loss {lo} vs {lt}")


def chips(dump, out, n=16):
    """The face inputs back to 150×150 JPEG chips (what a client with its own aligner would send)."""
    import numpy as np
    from PIL import Image
    card = json.loads((ROOT / "models/face-dlib-r29-v1/model.json").read_text())
    mean = np.array(card["input"]["mean"], dtype=np.float32).reshape(3, 1, 1)
    std = np.array(card["input"]["std"], dtype=np.float32).reshape(3, 1, 1)
    x = np.fromfile(dump / "inputs.f32", dtype="<f4").reshape(-1, 3, 150, 150)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, t in enumerate(x[:n]):
        px = np.clip((t * std + mean) * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        f = out / f"chip{i:02}.jpg"
        Image.fromarray(px).save(f, quality=95)
        files.append(str(f))
    return files


def http(a, bin_, loadgen, dump_root, results):
    files = chips(dump_root / "face", dump_root / "chips")
    work = Path(tempfile.mkdtemp(prefix="siamese-compare-"))
    servers = {}
    procs = []
    try:
        port = free_port()
        env = dict(os.environ, SIAMESE_LOG="warn")
        p = subprocess.Popen([str(bin_), "serve", "--bind", f"127.0.0.1:{port}", "--database-url",
                              f"sqlite://{work}/s.db", "--work-dir", str(work / "w")], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        wait_ready(f"http://127.0.0.1:{port}/readyz", p)
        servers["ours"] = f"http://127.0.0.1:{port}/v1/verify"
        for mode in ("naive", "batched"):
            port = free_port()
            p = subprocess.Popen([PY, str(HERE / "fastapi_service.py"), "--model", str(ROOT / "models/face-dlib-r29-v1"),
                                  "--port", str(port), "--mode", mode, "--mirror"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_ready(f"http://127.0.0.1:{port}/healthz", p)
            servers[f"fastapi-{mode}"] = f"http://127.0.0.1:{port}/v1/verify"
        # Parity first: the same pairs through every service give the same distances and verdicts (JPEG
        # decoders differ slightly between image-rs and Pillow, hence the tolerance).
        import requests
        for i in range(0, 8, 2):
            got = {}
            for side, url in servers.items():
                upload = {"image_a": open(files[i], "rb"), "image_b": open(files[i + 1], "rb")}
                r = requests.post(url, files=upload, data={"detect": "false"}, timeout=60)
                r.raise_for_status()
                got[side] = r.json()
            d = {k: v["distance"] for k, v in got.items()}
            if max(d.values()) - min(d.values()) > 1e-2 or len({v["verified"] for v in got.values()}) > 1:
                raise RuntimeError(f"HTTP parity: pair {i // 2} answered {got}")
            results.append({"part": "http-parity", "pair": i // 2, "distances": d})
        print(f"\nHTTP parity: 4 pairs, distances agree within {max(max(r['distances'].values()) - min(r['distances'].values()) for r in results if r.get('part') == 'http-parity'):.2g}")
        per = {}
        levels = [1, 8, 32] if not a.quick else [8]
        for r in range(a.rounds):
            for c in levels:
                sides = list(servers) if r % 2 == 0 else list(reversed(servers))
                for side in sides:
                    l = sh([str(loadgen), "--url", servers[side], "--clients", str(c), "--secs", str(a.http_secs),
                            "--warmup-secs", "2", "--field", "detect=false"] + files)[0]
                    results.append(dict(l, side=side, round=r, part="http"))
                    per.setdefault((side, c), []).append(l["pairs_per_second"])
                    bad = {k: v for k, v in l["statuses"].items() if k != "200"}
                    if bad:
                        raise RuntimeError(f"{side} at {c} clients answered {bad}")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
    print("\n### HTTP verify, pairs/s (two chips per pair, mirror-averaged, median of rounds)\n")
    print("| clients | ours | FastAPI batched | FastAPI naive | ours / batched (spread) | ours / naive (spread) |")
    print("|---|---|---|---|---|---|")
    for c in levels:
        o, b, n = per[("ours", c)], per[("fastapi-batched", c)], per[("fastapi-naive", c)]
        rb = [x / y for x, y in zip(o, b)]
        rn = [x / y for x, y in zip(o, n)]
        print(f"| {c} | {statistics.median(o):.1f} | {statistics.median(b):.1f} | {statistics.median(n):.1f} | "
              f"**{statistics.median(rb):.2f}** ({spread(rb)}) | **{statistics.median(rn):.2f}** ({spread(rn)}) |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target/release/siamese"))
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--data", default=os.environ.get("SIAMESE_DATA", ""))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--train-pairs", type=int, default=16)
    ap.add_argument("--train-iters", type=int, default=5)
    ap.add_argument("--http-secs", type=float, default=8)
    ap.add_argument("--parts", default="encoder,train,http")
    ap.add_argument("--quick", action="store_true", help="fewer batch sizes and client counts (a smoke run)")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    if not a.data or not Path(a.data).is_dir():
        sys.exit("bench/compare needs the real images: set SIAMESE_DATA")
    import torch
    print(f"# siamese vs PyTorch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, {a.rounds} alternated rounds")
    bin_ = Path(a.bin)
    results = []
    dump_root = Path(tempfile.mkdtemp(prefix="siamese-compare-dump-"))
    parts = a.parts.split(",")
    a.time_encoders = "encoder" in parts
    try:
        encoders(a, bin_, dump_root, results)  # also writes the dumps the other parts use
        if "train" in parts:
            train_step(a, bin_, dump_root, results)
        if "http" in parts:
            http(a, bin_, Path(a.loadgen), dump_root, results)
    finally:
        if a.out:
            Path(a.out).write_text(json.dumps(results, indent=1))
        shutil.rmtree(dump_root, ignore_errors=True)


if __name__ == "__main__":
    main()
