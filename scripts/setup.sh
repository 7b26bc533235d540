#!/usr/bin/env bash
# Creates .venv at the repo root and installs mcad-export with everything it needs. Idempotent:
# reinstalls only when this script or pyproject.toml changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.mcad-setup-stamp
want=$(cat scripts/setup.sh pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch and torchvision must be a matched pair or `import open_clip` fails
  # ("operator torchvision::nms does not exist"); this pair installs offline-friendly on x86-64 / py3.11.
  .venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
  # qai-hub 0.56 caps protobuf at 6.31.1; pinning it keeps the resolver from trying newer onnx/protobuf pairs.
  .venv/bin/python -m pip install --quiet -e ".[dev,tflite,qnn,aihub,bert,ray]" "torch==2.14.1" "torchvision==0.29.1" \
    "protobuf==6.31.1"
  # Chinese-CLIP's own tokenizer, vocabulary and model configs: the reference tests/test_cn_clip_tokenizer.py holds
  # the WordPiece tokenizer to. --no-deps: its pin lmdb==1.3.0 only builds from source and serves its training-data
  # reader, which nothing here imports; torch and torchvision are pinned above.
  .venv/bin/python -m pip install --quiet --no-deps "cn-clip==1.6.0" "six>=1.16"
  echo "$want" > "$stamp"
fi
