#!/usr/bin/env bash
# Reproduce models/signature-cedar-v1 (version 5) from CEDAR in one command (issue 5, acceptance 4):
#   SIAMESE_DATA=/path/to/data scripts/train_signature.sh [OUT]      (or: make train-signature)
# 1. three training runs of one recipe (runs h, x1, x2 of the card): h and x1 side by side, then x2, each on one
#    thread (OMP_NUM_THREADS=1; the runs are deterministic for a seed on one machine);
# 2. `siamese ensemble` of the three with the card's test-time rotations (±3°);
# 3. `siamese eval`: pair thresholds (--calibrate) and the subject calibration (10 references, rule mean3,
#    --calibrate-subject) on the pooled validation writers of CEDAR, BHSig260 Bengali and SigComp 2011 Dutch
#    (scripts/signature_sets.py, scripts/signature_folds.env; version 4 was calibrated on CEDAR w41-w45 alone), then
#    the CEDAR w41-w45 figures (all pairs, 10 references by mean3 and by mean), each with report.json and PNGs.
# OUT (default out/signature-cedar-v1) gets the model in OUT/model, the members in OUT/members/*, the reports in
# OUT/eval-*; it is never the shipped model directory unless you pass it. On 2 CPU cores it takes about 65 minutes.
# EPOCHS=1 runs the whole chain in a few minutes (a smoke test of the pipeline, not the model).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SIAMESE_DATA:?set SIAMESE_DATA to the folder holding cedar-dev/}"
CEDAR="$SIAMESE_DATA/cedar-dev"
[ -d "$CEDAR/full_org" ] || { echo "no CEDAR at $CEDAR (full_org/, full_forg/)" >&2; exit 1; }
BIN=${BIN:-target/release/siamese}
OUT=${1:-out/signature-cedar-v1}
mkdir -p "$OUT/members"

train() { # name seed augmentation...
  local name=$1 seed=$2; shift 2
  OMP_NUM_THREADS=1 "$BIN" train --data "$CEDAR" --train w1-w40 --val w41-w45 --modality signature --signature \
    --width 220 --height 155 --stages 16,32,64,128 --convs 1,1,2,2 --head grid:3x5 --dropout 0.3 --hflip false \
    --brightness 0 --contrast 0.3 --sampler pk --pk-p 8 --pk-k 4 --pk-forgeries 4 --pk-steps 20 --epochs "${EPOCHS:-30}" \
    --lr 0.0005 --ema-decay 0.95 --device cpu --id signature-cedar-v1 "$@" --seed "$seed" \
    --out "$OUT/members/$name" > "$OUT/members/$name.log" 2>&1
}
STRONGER=(--rotate 10 --shift 0.1 --scale 0.2 --shear 0.3 --aspect 0.25)
STRONGEST=(--rotate 12 --shift 0.12 --scale 0.25 --shear 0.4 --aspect 0.3)

start=$(date +%s)
echo "training h and x1 side by side (logs in $OUT/members/)"
train h 1 "${STRONGER[@]}" &
p1=$!
train x1 1 "${STRONGEST[@]}" &
p2=$!
wait $p1
wait $p2
echo "training x2"
train x2 2 "${STRONGEST[@]}"
echo "trained in $(( $(date +%s) - start )) s"

"$BIN" ensemble --member "$OUT/members/h" --member "$OUT/members/x1" --member "$OUT/members/x2" \
  --tta '[{"rotate_deg":3},{"rotate_deg":-3}]' --out "$OUT/model" --id signature-cedar-v1 --version 5
python3 scripts/signature_sets.py "$OUT/sets"
VAL=$(sed -n 's/^VAL=//p' "$OUT/sets/folds.env")
"$BIN" eval --model "$OUT/model" --data "$OUT/sets" --identities "$VAL" --device cpu --calibrate --out "$OUT/eval-val-pairs"
"$BIN" eval --model "$OUT/model" --data "$OUT/sets" --identities "$VAL" --device cpu --references 10 --rule mean3 \
  --calibrate-subject --out "$OUT/eval-val-mean3"
ev() { "$BIN" eval --model "$OUT/model" --data "$CEDAR" --identities w41-w45 --device cpu "$@"; }
ev --out "$OUT/eval-pairs"
ev --references 10 --rule mean3 --out "$OUT/eval-mean3"
ev --references 10 --rule mean --out "$OUT/eval-mean"
echo "done in $(( $(date +%s) - start )) s: $OUT/model (compare with models/signature-cedar-v1/model.json)"
