#!/usr/bin/env python3
"""Copy a CEDAR-style signature folder with every scan's paper made pure white (the shortcut check of the accuracy
protocol: a model that reads the ink gives the same figures on both copies).

    python3 scripts/whiten_paper.py SRC OUT     (SRC: full_org/ and full_forg/; OUT gets the same names, as PNG)

Each scan is read as 8-bit grey; every pixel above its Otsu threshold (the service's own rule for paper vs ink,
`preprocess::otsu_threshold`) becomes 255; ink pixels are kept as they are. Needs numpy and Pillow (the project's
torch environment has both). Writes outside the project: the scans are research data.
"""
import os
import sys

import numpy as np
from PIL import Image


def otsu(img: np.ndarray) -> int:
    hist = np.bincount(img.ravel(), minlength=256).astype(np.float64)
    total, sum_all = hist.sum(), (np.arange(256) * hist).sum()
    w0 = sum0 = 0.0
    best, best_t = -1.0, 0
    for t in range(256):
        w0 += hist[t]
        if w0 == 0:
            continue
        w1 = total - w0
        if w1 == 0:
            break
        sum0 += t * hist[t]
        m0, m1 = sum0 / w0, (sum_all - sum0) / w1
        between = w0 * w1 * (m0 - m1) ** 2
        if between > best:
            best, best_t = between, t
    return best_t


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1:]
    n = 0
    for sub in ("full_org", "full_forg"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
        for f in sorted(os.listdir(os.path.join(src, sub))):
            img = np.asarray(Image.open(os.path.join(src, sub, f)).convert("L"))
            white = np.where(img > otsu(img), 255, img).astype(np.uint8)
            Image.fromarray(white).save(os.path.join(out, sub, os.path.splitext(f)[0] + ".png"))
            n += 1
    print(f"{n} scans whitened into {out}")


if __name__ == "__main__":
    main()
