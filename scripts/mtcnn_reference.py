#!/usr/bin/env python3
"""Reference detections from facenet-pytorch's MTCNN (PyPI facenet-pytorch 2.6.0), for the detector
fidelity test. Never used at serving time.  Usage: mtcnn_reference.py IMAGE...  → JSON {image: [faces]}"""
import json
import sys

from facenet_pytorch import MTCNN
from PIL import Image

m = MTCNN(keep_all=True, device="cpu")
out = {}
for path in sys.argv[1:]:
    img = Image.open(path).convert("RGB")
    boxes, probs, lms = m.detect(img, landmarks=True)
    faces = []
    if boxes is not None:
        for b, p, l in zip(boxes, probs, lms):
            faces.append({"bbox": [float(x) for x in b], "score": float(p), "landmarks": [[float(x), float(y)] for x, y in l]})
    out[path] = faces
json.dump(out, sys.stdout)
