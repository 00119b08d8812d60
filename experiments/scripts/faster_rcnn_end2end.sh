#!/bin/bash
# Faster R-CNN, approximate joint (end-to-end) training: train, then test the final model.
#
# Usage: ./experiments/scripts/faster_rcnn_end2end.sh GPU_ID NET DATASET [--set KEY VALUE ...]
#   GPU_ID   a GPU id, or cpu
#   NET      ZF | VGG16 | VGG_CNN_M_1024 (PASCAL VOC; VGG16 | VGG_CNN_M_1024 for coco) or TINY (synth)
#   DATASET  pascal_voc | pascal_voc_0712 | pascal_voc_07plus12 (tests on VOC 2012 test) | coco | synth | synth_mini
#            or a dataset file path/to/file.yml (its trainval and test splits; NET ZF/VGG16 or TINY)
#   ITERS=n (environment) overrides the iteration count (default: the solver's max_iter, else 70000).
# Example: ./experiments/scripts/faster_rcnn_end2end.sh cpu TINY synth

set -e
set -o pipefail
if [ $# -lt 3 ]; then
  sed -n '2,10p' "$0"
  exit 1
fi
GPU_ID=$1
NET=$2
DATASET=$3
shift 3
EXTRA_ARGS=("$@")
METHOD=faster_rcnn_end2end
source "$(dirname "${BASH_SOURCE[0]}")/_datasets.sh"

ensure_init_model test.prototxt
# Without ITERS, train_net uses the solver's max_iter, else the released 70000.
ITER_ARGS=()
if [ -n "$ITERS" ]; then
  ITER_ARGS=(--iters "$ITERS")
fi

START=$(date +%s%N)
# The training tool writes the final model's path here when (and only when) it completes.
FINAL_MODEL_FILE=$(mktemp)
trap 'rm -f "$FINAL_MODEL_FILE"' EXIT
timed "training" "$PY" tools/train_net.py "${DEVICE_ARGS[@]}" \
  --solver "${MODELS_DIR}/${NET}/${METHOD}/solver.prototxt" --weights "$WEIGHTS" --imdb "$TRAIN_IMDB" \
  "${ITER_ARGS[@]}" "${CFG_ARGS[@]}" --final-model-file "$FINAL_MODEL_FILE" "${EXTRA_ARGS[@]}"

NET_FINAL=$(cat "$FINAL_MODEL_FILE")
[ -n "$NET_FINAL" ] || { say "error: training reported no final model"; exit 1; }
timed "test_net" "$PY" tools/test_net.py "${DEVICE_ARGS[@]}" \
  --def "${MODELS_DIR}/${NET}/${METHOD}/test.prototxt" \
  --net "$NET_FINAL" --imdb "$TEST_IMDB" "${CFG_ARGS[@]}" "${EXTRA_ARGS[@]}"
say "Total wall time: $(elapsed "$START") s"
