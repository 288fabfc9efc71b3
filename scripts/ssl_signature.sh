#!/usr/bin/env bash
# Does self-supervised pretraining help a signature encoder where labels are scarce? (docs/quality.md)
# On CEDAR (SIAMESE_DATA/cedar-dev): writers w1-w30 train, w31-w35 validate (choose the epoch), w36-w40 test
# (nothing is chosen on them). One small network for every run:
#   ssl       self-supervised on w1-w30's genuine scans, labels withheld (NT-Xent, two views per scan)
#   scratch   supervised (P x K with skilled forgeries as negatives) from random weights, on 10 % (w1-w3) or
#             100 % (w1-w30) of the training writers
#   ft        the same supervised runs starting from `ssl`
# Each model is evaluated on w36-w40: all pairs (genuine vs skilled forgery) and 10 references (rule mean3).
# Usage: scripts/ssl_signature.sh [OUT] (EPOCHS, default 12; one thread per run).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/siamese}
CEDAR=${SIAMESE_DATA:?set SIAMESE_DATA}/cedar-dev
OUT=${1:-/tmp/ssl-signature}
E=${EPOCHS:-12}
mkdir -p "$OUT"
NET=(--data "$CEDAR" --val w31-w35 --test w36-w40 --modality signature --signature --width 110 --height 78
  --stages 16,32,64 --convs 1,1,1 --head grid:3x5 --embedding 64 --dropout 0.2 --hflip false --brightness 0
  --contrast 0.3 --rotate 10 --shift 0.1 --scale 0.2 --shear 0.3 --aspect 0.25 --lr 0.001 --device cpu --quiet
  --seed 1 --epochs "$E")
run() { # name, then train flags
  local name=$1; shift
  [ -f "$OUT/$name/weights.safetensors" ] || OMP_NUM_THREADS=1 "$BIN" train "${NET[@]}" --id "ssl-$name" "$@" \
    --out "$OUT/$name" > "$OUT/$name.log" 2>&1
  local all mean3
  all=$("$BIN" eval --model "$OUT/$name" --data "$CEDAR" --identities w36-w40 --device cpu \
    --out "$OUT/$name-eval-pairs" 2>&1 | grep -m1 -o "EER [0-9.]*%, AUC [0-9.]*" || true)
  mean3=$("$BIN" eval --model "$OUT/$name" --data "$CEDAR" --identities w36-w40 --device cpu --references 10 \
    --rule mean3 --out "$OUT/$name-eval-mean3" 2>&1 | grep -m1 -o "EER [0-9.]*%, AUC [0-9.]*" || true)
  echo "$name | all pairs: $all | 10 refs mean3: $mean3" | tee -a "$OUT/summary.txt"
}
SUP=(--sampler pk --pk-k 4 --pk-forgeries 4 --pk-steps 20)
run ssl --train w1-w30 --self-supervised --ssl-images 64 --pk-steps 20
run scratch100 --train w1-w30 "${SUP[@]}" --pk-p 8
run scratch10 --train w1-w3 "${SUP[@]}" --pk-p 3
run ft100 --train w1-w30 "${SUP[@]}" --pk-p 8 --init "$OUT/ssl"
run ft10 --train w1-w3 "${SUP[@]}" --pk-p 3 --init "$OUT/ssl"
