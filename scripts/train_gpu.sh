#!/usr/bin/env bash
# Train the bias-free DRUNet gray and color models on one GPU, each for a fixed time
# (default 5.25 minutes of training each: about 12 minutes in all, data loading included).
#
#   scripts/train_gpu.sh OUT_DIR [gray|color|both] [more train-gpu options...]
#
# Writes OUT_DIR/gpu-bf-drunet-{gray,color}/model.safetensors (+ model.json card), which
# `filterscope denoise --model ...` loads on any machine. Environment:
#   MINUTES             training minutes per model (default 5.25)
#   FILTERSCOPE_SHARED  the shared folder holding data/{BSD400,CBSD432,Set12,Set9color}
#                       (default ../shared, relative to the repository root)
#   PYTHON              the Python with torch and filterscope's dependencies (default
#                       python3; filterscope itself is taken from src/)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/train_gpu.sh OUT_DIR [gray|color|both] [train-gpu options...]}
kinds=${2:-both}
shift $(( $# >= 2 ? 2 : 1 ))
shared=${FILTERSCOPE_SHARED:-../shared}
case $kinds in
  gray) kinds="gray" ;;
  color) kinds="color" ;;
  both) kinds="gray color" ;;
  *) echo "train_gpu.sh: second argument must be gray, color or both, got '$kinds'" >&2; exit 2 ;;
esac
for kind in $kinds; do
  if [ "$kind" = gray ]; then data=BSD400; val=Set12; else data=CBSD432; val=Set9color; fi
  PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} "${PYTHON:-python3}" -m filterscope.cli.main \
    train-gpu --recipe "recipes/gpu-bf-drunet-$kind.toml" --out "$out" \
    --minutes "${MINUTES:-5.25}" \
    --set "data_dir=\"$shared/data/$data\"" --set "val_dir=\"$shared/data/$val\"" "$@"
done
