#!/usr/bin/env python3
"""Offline study of subject scoring on signature embeddings: which score, and which threshold, transfers from the
validation writers to the test writers of each set (the enrolment protocol of `siamese eval --references`).

    siamese embed --model M <scans...> > emb.jsonl   (scans of the union folder of scripts/signature_sets.py)
    python3 scripts/signature_scores.py emb.jsonl SETS/folds.env [K]

For each writer: the first K genuine scans (natural order) are references, its other genuine scans genuine probes,
its skilled forgeries impostor probes. Scores: `mean3` (mean of the 3 smallest distances to the references), and
`mean3` divided by the references' own spread (their mean pairwise distance) and standardised by it. For each score:
EER on VAL and on each test fold, and FAR/FRR on each test fold at the threshold chosen on pooled VAL (EER point,
and the point where VAL's FAR is half its FRR). Needs numpy.
"""
import json
import re
import sys

import numpy as np


def natural(s):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def load(path):
    by_writer = {}
    for line in open(path):
        r = json.loads(line)
        m = re.search(r"(original|forgeries)_(\d+)_(\d+)\.\w+$", r["file"])
        kind, w = m.group(1), f"w{m.group(2)}"
        g, f = by_writer.setdefault(w, ([], []))
        (g if kind == "original" else f).append((r["file"], np.asarray(r["vector"], dtype=np.float64)))
    for g, f in by_writer.values():
        g.sort(key=lambda x: natural(x[0]))
        f.sort(key=lambda x: natural(x[0]))
    return by_writer


def scores(by_writer, writers, k):
    """(kind, value) per probe: kind 1 genuine, 0 forgery; three scores each."""
    out = []
    for w in writers:
        g, f = by_writer[w]
        refs = np.stack([v for _, v in g[:k]])
        pd = np.linalg.norm(refs[:, None] - refs[None], axis=-1)
        spread = pd[np.triu_indices(len(refs), 1)].mean()
        for kind, probes in ((1, g[k:]), (0, f)):
            for _, v in probes:
                d = np.sort(np.linalg.norm(refs - v, axis=1))
                m3 = d[:3].mean()
                out.append((kind, m3, m3 / spread, m3 - spread))
    return np.array(out)


def eer(gen, imp):
    ts = np.unique(np.concatenate([gen, imp]))
    best = (2.0, 0.0)
    for t in ts:
        frr, far = (gen > t).mean(), (imp <= t).mean()
        if abs(frr - far) < best[0]:
            best = (abs(frr - far), (frr + far) / 2, t)
    return best[1], best[2]


def point(gen, imp, ratio):
    """The threshold where FAR ≈ ratio × FRR."""
    ts = np.unique(np.concatenate([gen, imp]))
    diffs = [abs((imp <= t).mean() - ratio * (gen > t).mean()) for t in ts]
    return ts[int(np.argmin(diffs))]


def main():
    emb, folds_path = sys.argv[1:3]
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    folds = dict(l.strip().split("=", 1) for l in open(folds_path) if "=" in l)
    by_writer = load(emb)
    val = scores(by_writer, folds["VAL"].split(","), k)
    tests = {s: scores(by_writer, folds[f"TEST_{s}"].split(","), k) for s in ("CEDAR", "BHSIG", "SIGCOMP")}
    for col, name in ((1, "mean3"), (2, "mean3 / spread"), (3, "mean3 - spread")):
        gv, iv = val[val[:, 0] == 1, col], val[val[:, 0] == 0, col]
        e, t_eer = eer(gv, iv)
        t_half = point(gv, iv, 0.5)
        print(f"{name}: VAL EER {100 * e:.2f}% ({len(gv)} genuine, {len(iv)} forgeries)")
        for s, a in tests.items():
            g, i = a[a[:, 0] == 1, col], a[a[:, 0] == 0, col]
            line = f"  {s}: EER {100 * eer(g, i)[0]:.2f}%"
            for label, t in (("VAL EER point", t_eer), ("VAL FAR=FRR/2", t_half)):
                line += f"; at {label}: FAR {100 * (i <= t).mean():.1f}% FRR {100 * (g > t).mean():.1f}%"
            print(line)


if __name__ == "__main__":
    main()
