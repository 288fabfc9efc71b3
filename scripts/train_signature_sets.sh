#!/usr/bin/env bash
# Train the signature encoder on all three signature sets (CEDAR, BHSig260 Bengali, SigComp 2011 Dutch) and measure
# it on writer-disjoint test folds nothing is chosen on:
#   SIAMESE_DATA=/path/to/data scripts/train_signature_sets.sh [OUT]        (or: make train-signature-sets)
# 1. scripts/signature_sets.py: the three sets as one folder of links (OUT/sets) and the folds (OUT/sets/folds.env);
# 2. two training runs of one recipe, seeds 1 and 2, side by side, each on one thread; the best epoch of each is
#    chosen on the pooled validation writers (VAL);
# 3. `siamese ensemble` of the two (no test-time warps);
# 4. calibration on VAL only: pair thresholds, then the subject calibration (10 references, rule mean3);
# 5. the figures on each set's test fold (all pairs; 10 references by the card's rule, at the card's threshold).
# OUT (default out/signature-sets) gets OUT/members/*, OUT/model, OUT/eval-*. EPOCHS=1 smoke-tests the chain.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SIAMESE_DATA:?set SIAMESE_DATA to the folder holding cedar-dev/, bhsig-bengali/, sigcomp2011-dutch/}"
BIN=${BIN:-target/release/siamese}
OUT=${1:-out/signature-sets}
ID=${ID:-signature-v1}
VERSION=${VERSION:-1}
mkdir -p "$OUT/members"
python3 scripts/signature_sets.py "$OUT/sets"
# shellcheck disable=SC1091
source "$OUT/sets/folds.env"
SETS="$OUT/sets"

train() { # name seed
  local name=$1 seed=$2
  OMP_NUM_THREADS=1 "$BIN" train --data "$SETS" --train "$TRAIN" --val "$VAL" --modality signature --signature \
    --signature-ink normalized --width 220 --height 155 --stages 16,32,64,128 --convs 1,1,2,2 --head grid:3x5 \
    --dropout 0.3 --hflip false --brightness 0 --contrast 0.3 --sampler pk --pk-p 8 --pk-k 4 --pk-forgeries 4 \
    --pk-steps 40 --epochs "${EPOCHS:-30}" --lr 0.0005 --ema-decay 0.95 --device cpu --id "$ID" \
    --rotate 12 --shift 0.12 --scale 0.25 --shear 0.4 --aspect 0.3 --seed "$seed" \
    ${TIME_LIMIT_MIN:+--time-limit-min "$TIME_LIMIT_MIN"} --out "$OUT/members/$name" > "$OUT/members/$name.log" 2>&1
}

start=$(date +%s)
if [ -z "${SKIP_TRAINING:-}" ]; then
  echo "training s1 and s2 side by side (logs in $OUT/members/)"
  train s1 1 &
  p1=$!
  train s2 2 &
  p2=$!
  wait $p1
  wait $p2
  echo "trained in $(( $(date +%s) - start )) s"
fi

"$BIN" ensemble --member "$OUT/members/s1" --member "$OUT/members/s2" --out "$OUT/model" --id "$ID" --version "$VERSION"
ev() { "$BIN" eval --model "$OUT/model" --data "$SETS" --device cpu "$@"; }
ev --identities "$VAL" --calibrate --out "$OUT/eval-val-pairs"
ev --identities "$VAL" --references 10 --rule mean3 --calibrate-subject --out "$OUT/eval-val-mean3"
for set in CEDAR BHSIG SIGCOMP; do
  fold="TEST_$set"
  ev --identities "${!fold}" --out "$OUT/eval-test-$set-pairs"
  ev --identities "${!fold}" --references 10 --out "$OUT/eval-test-$set-enrol"
done
echo "done in $(( $(date +%s) - start )) s: $OUT/model; figures in $OUT/eval-*/report.json"
