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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flatten_cedar import otsu  # noqa: E402  (the same Otsu threshold as the service's)


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
