#!/usr/bin/env bash
# Prepares what scripts/gpu_session.sh carries to a GPU machine, under data/ (ignored by git).
# Needs a built target/release/siamese, SIAMESE_DATA, and a python3 with numpy and Pillow ($PYTHON).
set -eu
D=${SIAMESE_DATA:?set SIAMESE_DATA to the datasets folder}
mkdir -p data/gpu data/lfw-sample
strip -o data/gpu/siamese target/release/siamese && gzip -9 -f data/gpu/siamese
cp "$D"/lfw-view1/lfw/Paul_Wolfowitz/*.jpg "$D"/lfw-view1/lfw/Jennifer_Lopez/*.jpg data/lfw-sample/
rm -rf data/cedar-dev
"${PYTHON:-python3}" scripts/flatten_cedar.py "$D/cedar-dev" data/cedar-dev
du -sh data/gpu data/lfw-sample data/cedar-dev models/face-dlib-r29-v1/weights.safetensors models/mtcnn-v1/weights.safetensors
