#!/usr/bin/env python3
# Face quality (low_quality) over HTTP: AT&T and 300 LFW View 1 photos, and blurred copies, each uploaded
# alone as a subject of collection `qa` of a running server. Usage: python scripts/face_quality_eval.py URL
# (SIAMESE_DATA set; Pillow from the project venv). Prints one JSON line per set (docs/quality.md).
import io, json, os, subprocess, sys, random
from PIL import Image, ImageFilter
base = sys.argv[1]; data = os.environ["SIAMESE_DATA"]
def post(path, body=None, files=None):
    cmd = ["curl", "-s", "-X", "POST", base + path]
    if body is not None: cmd += ["-H", "content-type: application/json", "-d", json.dumps(body)]
    for f in files or []: cmd += ["-F", "image=@" + f]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True).stdout or "{}")
post("/v1/collections", {"name": "qa", "modality": "face"})
att = [f"{data}/att_faces/s{s}/{k}.pgm" for s in range(1, 41) for k in range(1, 11)]
lfw_all = sorted(os.path.join(d, f) for d, _, fs in os.walk(f"{data}/lfw-view1/lfw") for f in fs if f.endswith(".jpg"))
lfw = lfw_all[:: max(1, len(lfw_all) // 300)][:300]
os.makedirs("/tmp/lq", exist_ok=True)
def blurred(p, r):
    out = f"/tmp/lq/{abs(hash(p))}_{r}.png"; Image.open(p).filter(ImageFilter.GaussianBlur(r)).save(out); return out
n = 0
def run(label, paths):
    global n
    rows = []
    for p in paths:
        n += 1; subj = f"q{n}"
        post("/v1/collections/qa/subjects", {"name": subj})
        v = post(f"/v1/collections/qa/subjects/{subj}/samples", files=[p])
        r = (v.get("results") or [{}])[0]
        q = r.get("quality")
        if not q: rows.append(None); continue
        rows.append((q["flags"], q.get("face"), q["reasons"]))
    got = [x for x in rows if x]
    lq = [x for x in got if "low_quality" in x[0]]
    reasons = {}
    for x in lq:
        for t in x[2]:
            k = next((w for w in ("blurred", "turned", "px", "detector score") if w in t), None)
            if k: reasons[k] = reasons.get(k, 0) + 1
    f = lambda key: sorted(x[1][key] for x in got if x[1])
    def q(v, p): return v[int(p * (len(v) - 1))] if v else float("nan")
    print(json.dumps({"set": label, "images": len(paths), "stored": len(got), "low_quality": len(lq), "reasons": reasons,
        "sharpness_p5_p50": [round(q(f("sharpness"), .05), 4), round(q(f("sharpness"), .5), 4)],
        "size_p5": round(q(f("size"), .05), 1), "abs_yaw_p95": round(q(sorted(abs(y) for y in f("yaw")), .95), 3),
        "score_p5": round(q(f("score"), .05), 4),
        "sharpness_below": {t: sum(1 for v in f("sharpness") if v < t) for t in (0.002, 0.003, 0.004, 0.005, 0.006)}}), flush=True)
run("AT&T all 400", att)
run("LFW View 1, 300 spread", lfw)
random.seed(1)
run("LFW, Gaussian blur r=3", [blurred(p, 3) for p in random.sample(lfw, 100)])
run("AT&T, Gaussian blur r=2", [blurred(p, 2) for p in random.sample(att, 100)])
