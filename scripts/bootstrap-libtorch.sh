#!/usr/bin/env bash
# Installs PyTorch (torch==2.11.0 from PyPI, the libtorch tch 0.24 is built against) into a cache outside the
# clone, so every clone on this machine reuses it. Prints nothing but errors; idempotent.
#   SIAMESE_CACHE   cache root (default ~/.cache/siamese)
#   LIBTORCH        if set, an existing libtorch is used instead and nothing is installed
set -euo pipefail
[ -n "${LIBTORCH:-}" ] && exit 0
cache="${SIAMESE_CACHE:-$HOME/.cache/siamese}"
venv="$cache/torch-2.11.0"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import torch,sys; sys.exit(torch.__version__.split("+")[0] != "2.11.0")' 2>/dev/null; then
  exit 0
fi
mkdir -p "$cache"
echo "bootstrap: installing torch==2.11.0 into $venv (one time, a few GB)" >&2
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --progress-bar off --upgrade pip >&2
"$venv/bin/python" -m pip install --quiet --progress-bar off torch==2.11.0 numpy >&2
"$venv/bin/python" -c 'import torch; print("bootstrap: torch", torch.__version__)' >&2
