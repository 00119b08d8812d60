#!/bin/bash
# Faster R-CNN, 4-step alternating optimisation: train, then test the final model.
#
# Usage: ./experiments/scripts/faster_rcnn_alt_opt.sh GPU_ID NET DATASET [--set KEY VALUE ...]
#   GPU_ID   a GPU id, or cpu
#   NET      ZF | VGG16 | VGG_CNN_M_1024 (PASCAL VOC) or TINY (the embedded synth dataset)
#   DATASET  pascal_voc | pascal_voc_0712 | pascal_voc_07plus12 (tests on VOC 2012 test) | synth | synth_mini
#            or a dataset file path/to/file.yml (its trainval and test splits; NET ZF/VGG16 or TINY)
#   ITERS="n1 n2 n3 n4" (environment) overrides the iterations of the four stages.
# Example: ./experiments/scripts/faster_rcnn_alt_opt.sh cpu TINY synth

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
METHOD=faster_rcnn_alt_opt
source "$(dirname "${BASH_SOURCE[0]}")/_datasets.sh"

ensure_init_model faster_rcnn_test.pt
ITER_ARGS=()
if [ -n "$ITERS" ]; then
  read -r -a ITER_ARRAY <<< "$ITERS"
  ITER_ARGS=(--iters "${ITER_ARRAY[@]}")
fi

START=$(date +%s%N)
# The training tool writes the final model's path here when (and only when) it completes.
FINAL_MODEL_FILE=$(mktemp)
trap 'rm -f "$FINAL_MODEL_FILE"' EXIT
timed "training (all stages)" "$PY" tools/train_faster_rcnn_alt_opt.py "${DEVICE_ARGS[@]}" \
  --net_name "$NET" --weights "$WEIGHTS" --imdb "$TRAIN_IMDB" "${ITER_ARGS[@]}" "${CFG_ARGS[@]}" \
  --final-model-file "$FINAL_MODEL_FILE" "${EXTRA_ARGS[@]}"

NET_FINAL=$(cat "$FINAL_MODEL_FILE")
[ -n "$NET_FINAL" ] || { say "error: training reported no final model"; exit 1; }
timed "test_net" "$PY" tools/test_net.py "${DEVICE_ARGS[@]}" \
  --def "${MODELS_DIR}/${NET}/${METHOD}/faster_rcnn_test.pt" \
  --net "$NET_FINAL" --imdb "$TEST_IMDB" "${CFG_ARGS[@]}" "${EXTRA_ARGS[@]}"
say "Total wall time: $(elapsed "$START") s"
