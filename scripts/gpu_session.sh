#!/usr/bin/env bash
# One GPU session (the `device` tool): CUDA check and encoder throughput for issue 3, then signature training
# runs side by side for issue 5. Expects target/release/siamese and the model weights carried along; the
# GPU host's torch (2.11.0+cu130) provides libtorch. Everything it produces goes under $OUT.
# The carry limit (64 MiB) does not hold the binary, the face weights and CEDAR at once; two calls in a row
# keep the machine warm and the binary stays between them:
#   1. carry target/release/siamese, models/face-dlib-r29-v1/weights.safetensors,
#      models/mtcnn-v1/weights.safetensors, data/lfw-sample (a few LFW photos of one person, copied there):
#      bash scripts/gpu_session.sh face
#   2. carry data/cedar-dev (a copy of $SIAMESE_DATA/cedar-dev; data/ is ignored by git, never committed):
#      SIG_MINUTES=5.5 bash scripts/gpu_session.sh signature
set -u
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
BIN=target/release/siamese
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
part=${1:-all}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
$BIN info > "$OUT/info.txt" 2>&1; cat "$OUT/info.txt"
if [ "$part" = all ] || [ "$part" = face ]; then
  # Issue 3: the dlib encoder on CUDA, batch 1/16/64 (seeded noise inputs: the cost per image
  # does not depend on the pixels), and the same on this host's CPU for a side-by-side ratio.
  $BIN bench --model face-dlib-r29-v1 --device cuda --batch 1,16,64,256 --iters 50 --warmup 5 | tee "$OUT/bench-cuda.jsonl"
  $BIN bench --model face-dlib-r29-v1 --device cpu --batch 1,64 --iters 5 --warmup 1 | tee "$OUT/bench-cpu.jsonl"
  # The whole face pipeline (MTCNN detection, alignment, dlib encoder) on CUDA and on CPU: same verdicts.
  for d in cuda cpu; do
    $BIN verify --model face-dlib-r29-v1 --device $d data/lfw-sample/*.jpg > "$OUT/verify-$d.json" 2>&1
    $BIN detect --device $d data/lfw-sample/*.jpg > "$OUT/detect-$d.jsonl" 2>&1
  done
  cat "$OUT"/verify-*.json
fi
if [ "$part" = all ] || [ "$part" = signature ]; then
  # Issue 5: signature encoders side by side on one GPU, CEDAR writers 1-40, validation 41-45.
  DATA=${SIG_DATA:-data/cedar-dev}
  MIN=${SIG_MINUTES:-5.5}
  common=(--data "$DATA" --train w1-w40 --val w41-w45 --modality signature --signature --width 220 --height 155
          --hflip false --rotate 5 --shift 0.05 --scale 0.1 --brightness 0 --contrast 0.3 --sampler pk --pk-p 16
          --pk-k 4 --pk-forgeries 4 --pk-steps 20 --epochs 300 --device cuda --seed 1 --time-limit-min "$MIN")
  run() { name=$1; shift; mkdir -p "$OUT/$name"
    OMP_NUM_THREADS=4 $BIN train "${common[@]}" --out "$OUT/$name/model" --id signature-cedar-v1 "$@" \
      > "$OUT/$name/train.log" 2>&1; echo "$name: exit $?" >> "$OUT/$name/train.log"; }
  # The network of models/signature-cedar-v1 first (on 2 CPU cores it had --pk-p 8 and 30 minutes), then larger
  # networks with the same head.
  run a --stages 16,32,64,128 --convs 1,1,2,2 --head grid:3x5 --dropout 0.3 --lr 0.0005 --ema-decay 0.95 &
  run b --stages 32,64,128,256 --convs 1,1,2,2 --head grid:3x5 --dropout 0.3 --lr 0.0005 --ema-decay 0.95 &
  run c --stages 32,64,128,256,256 --convs 1,1,2,2,2 --head grid:3x5 --dropout 0.3 --lr 0.0005 --ema-decay 0.95 &
  run d --stages 64,128,256,512 --convs 2,2,2,2 --head grid:3x5 --dropout 0.4 --lr 0.0003 --ema-decay 0.95 &
  wait
  for name in a b c d; do
    [ -s "$OUT/$name/model/weights.safetensors" ] || continue
    $BIN eval --model "$OUT/$name/model" --data "$DATA" --identities w41-w45 --out "$OUT/$name/eval-pairs" --device cuda
    $BIN eval --model "$OUT/$name/model" --data "$DATA" --identities w41-w45 --references 10 --out "$OUT/$name/eval-ref10" --device cuda
  done 2>&1 | tee "$OUT/evals.txt"
fi
