#!/usr/bin/env bash
# Omniglot 20-way one-shot (the 20 official runs) with and without self-supervised pretraining
# (docs/quality.md). Training data: the background sets in SIAMESE_DATA/omniglot/images_background_small1 and
# _small2 (10 alphabets), linked as one folder per character under OUT/data; 15 % of the characters validate
# (choose the epoch). Runs, one small network each:
#   scratch  supervised (P x K contrastive) from random weights on all characters' labels
#   ssl      self-supervised on the same images, labels withheld (NT-Xent, two views per image)
#   ft       `scratch`'s recipe starting from `ssl`
#   ssl+10   10 % of the characters' labels: supervised from `ssl` vs from scratch (scratch10)
# Each model classifies the evaluation runs (examples/omniglot_oneshot.rs).
# Usage: scripts/ssl_omniglot.sh [OUT] (EPOCHS, default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/siamese}
ONESHOT=${ONESHOT:?path to the built omniglot_oneshot example}
OMNI=${SIAMESE_DATA:?set SIAMESE_DATA}/omniglot
OUT=${1:-/tmp/ssl-omniglot}
E=${EPOCHS:-10}
mkdir -p "$OUT/data"
# One folder per character, named c1..cN in the order of alphabet_character (a character in both small sets
# counted once).
if [ -z "$(ls -A "$OUT/data")" ]; then
  k=0
  for c in $(for set in images_background_small1 images_background_small2; do
      for d in "$OMNI/$set"/*/*/; do a=$(basename "$(dirname "$d")"); echo "${a}_$(basename "$d")|$d"; done
    done | sort -t'|' -k1,1 -u | cut -d'|' -f2); do
    k=$((k + 1)); ln -s "$c" "$OUT/data/c$k"
  done
fi
n=$(ls "$OUT/data" | wc -l)
val=$(seq 7 7 "$n" | sed 's/^/c/' | paste -sd, -)
train=$(seq 1 "$n" | awk 'NR % 7 != 0' | sed 's/^/c/' | paste -sd, -)
train10=$(seq 1 "$n" | awk 'NR % 7 != 0' | awk 'NR % 10 == 1' | sed 's/^/c/' | paste -sd, -)
NET=(--data "$OUT/data" --val "$val" --width 52 --height 52 --stages 32,64,128 --convs 1,1,1 --head global_average
  --embedding 64 --dropout 0.1 --hflip false --brightness 0 --contrast 0 --rotate 10 --shift 0.08 --scale 0.15
  --shear 0.2 --lr 0.001 --device cpu --quiet --seed 1 --epochs "$E")
run() { # name, then train flags
  local name=$1; shift
  [ -f "$OUT/$name/weights.safetensors" ] || OMP_NUM_THREADS=1 "$BIN" train "${NET[@]}" --id "omni-$name" "$@" \
    --out "$OUT/$name" > "$OUT/$name.log" 2>&1
  echo "$name | $("$ONESHOT" "$OUT/$name" "$OMNI/all_runs" | tail -1)" | tee -a "$OUT/summary.txt"
}
SUP=(--sampler pk --pk-k 4 --pk-steps 30)
run scratch --train "$train" "${SUP[@]}" --pk-p 32
run ssl --train "$train" --self-supervised --ssl-images 128 --pk-steps 30
run ft --train "$train" "${SUP[@]}" --pk-p 32 --init "$OUT/ssl"
run scratch10 --train "$train10" "${SUP[@]}" --pk-p 16
run ft10 --train "$train10" "${SUP[@]}" --pk-p 16 --init "$OUT/ssl"
