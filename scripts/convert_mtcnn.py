#!/usr/bin/env python3
"""Convert facenet-pytorch's MTCNN weights (PyPI facenet-pytorch 2.6.0, MIT) into the project's model
directory: OUT/weights.safetensors with tensors named pnet.*, rnet.*, onet.* (the card, detector.json, is
part of the repository).  Usage: convert_mtcnn.py FACENET_WHEEL OUT_DIR"""
import io
import json
import os
import struct
import sys
import zipfile

import torch


def main(wheel, out):
    z = zipfile.ZipFile(wheel)
    tensors = {}
    for net in ("pnet", "rnet", "onet"):
        sd = torch.load(io.BytesIO(z.read(f"facenet_pytorch/data/{net}.pt")), map_location="cpu", weights_only=True)
        for k, v in sd.items():
            tensors[f"{net}.{k}"] = v.detach().to(torch.float32).contiguous()
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        b = tensors[name].numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, "weights.safetensors.part")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, os.path.join(out, "weights.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
