#!/usr/bin/env python3
"""The three signature sets as one CEDAR-style folder, and the writer-disjoint folds every signature figure uses.

    python3 scripts/signature_sets.py OUT        (reads $SIAMESE_DATA; writes OUT/full_org, OUT/full_forg, OUT/folds.env)
    python3 scripts/signature_sets.py --draw     (prints the folds drawn afresh; they are kept in signature_folds.env)

OUT holds symbolic links to the scans (nothing is copied): writer w of CEDAR becomes w1<www>, of BHSig260 Bengali
w2<www>, of SigComp 2011 Dutch w3<www> (e.g. cedar w7 = w1007), so `siamese train` and `siamese eval` read all three
sets as one. OUT/folds.env (shell syntax) names the folds as identity lists of that folder:

- TEST_CEDAR, TEST_BHSIG, TEST_SIGCOMP, TEST: each set's test writers (nothing is chosen on them);
- VAL_CEDAR, VAL_BHSIG, VAL_SIGCOMP, VAL: validation writers (epochs, ensemble members, thresholds);
- TRAIN: every other writer.

The folds were drawn once (`--draw`: a seeded shuffle of each set's writers) and are kept, in each set's own writer
numbers, in scripts/signature_folds.env, which the tests read too: CEDAR's validation is w41-w45 (what the earlier
CEDAR-only recipe was chosen on, so it can never be a test fold) and its test fold 10 writers drawn from w1-w40;
BHSig 20 test and 10 validation writers; SigComp 14 test and 8 validation writers.
"""
import os
import random
import re
import sys

SETS = [  # (name, folder under SIAMESE_DATA, union prefix, test count, validation count)
    ("CEDAR", "cedar-dev", 1000, 10, 0),
    ("BHSIG", "bhsig-bengali", 2000, 20, 10),
    ("SIGCOMP", "sigcomp2011-dutch", 3000, 14, 8),
]
SEED = 20261203
PATTERN = re.compile(r"^(original|forgeries)_(\d+)_(\d+)\.(png|jpg|jpeg|tif|tiff|bmp|pgm)$", re.I)


FOLDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "signature_folds.env")


def draw(name: str, writers: list) -> tuple:
    """(test, validation) writers of one set, drawn by the seeded shuffle."""
    n_test, n_val = next((t, v) for n, _, _, t, v in SETS if n == name)
    rng = random.Random(f"{SEED}-{name}")
    if name == "CEDAR":
        val = [w for w in writers if 41 <= w <= 45]
        pool = [w for w in writers if w < 41]
    else:
        pool, val = list(writers), []
    rng.shuffle(pool)
    return sorted(pool[:n_test]), sorted(val + pool[n_test : n_test + n_val])


def kept_folds() -> dict:
    """scripts/signature_folds.env: NAME_TEST and NAME_VAL, comma-separated writer numbers of each set."""
    folds = {}
    with open(FOLDS) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                k, v = line.split("=", 1)
                folds[k] = [int(w) for w in v.split(",")]
    return folds


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    data = os.environ.get("SIAMESE_DATA") or sys.exit("set SIAMESE_DATA to the folder holding cedar-dev/")
    if sys.argv[1] == "--draw":
        for name, folder, *_ in SETS:
            org = os.listdir(os.path.join(data, folder, "full_org"))
            writers = sorted({int(m.group(2)) for m in map(PATTERN.match, org) if m})
            test, val = draw(name, writers)
            print(f"{name}_TEST={','.join(map(str, test))}\n{name}_VAL={','.join(map(str, val))}")
        return
    kept = kept_folds()
    out = sys.argv[1]
    for sub in ("full_org", "full_forg"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
        for old in os.listdir(os.path.join(out, sub)):
            os.unlink(os.path.join(out, sub, old))
    folds = {"TRAIN": []}
    for name, folder, base, _, _ in SETS:
        root = os.path.join(data, folder)
        writers = set()
        for sub in ("full_org", "full_forg"):
            for f in sorted(os.listdir(os.path.join(root, sub))):
                m = PATTERN.match(f)
                if not m:
                    continue
                kind, w, n, ext = m.groups()
                writers.add(int(w))
                link = os.path.join(out, sub, f"{kind}_{base + int(w)}_{n}.{ext}")
                os.symlink(os.path.abspath(os.path.join(root, sub, f)), link)
        writers = sorted(writers)
        test, val = kept[f"{name}_TEST"], kept[f"{name}_VAL"]
        train = sorted(set(writers) - set(test) - set(val))
        folds[f"TEST_{name}"] = [f"w{base + w}" for w in test]
        folds[f"VAL_{name}"] = [f"w{base + w}" for w in val]
        folds["TRAIN"] += [f"w{base + w}" for w in train]
        print(f"{name}: {len(writers)} writers: train {len(train)}, validation {len(val)}, test {len(test)} {test}")
    folds["TEST"] = sum((folds[f"TEST_{n}"] for n, *_ in SETS), [])
    folds["VAL"] = sum((folds[f"VAL_{n}"] for n, *_ in SETS), [])
    with open(os.path.join(out, "folds.env"), "w") as f:
        for k, v in folds.items():
            f.write(f"{k}={','.join(v)}\n")
    print(f"wrote {out}/full_org, {out}/full_forg and {out}/folds.env")


if __name__ == "__main__":
    main()
