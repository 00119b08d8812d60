#!/bin/bash
# The paper's experiments on one net and dataset: every row of Tables 1-5, the per-class APs (Tables 6/7),
# the anchor-size table, Fig. 2 and the training loss curves, in one report beside the paper's numbers.
#
# Usage: ./experiments/scripts/paper_experiments.sh GPU_ID NET DATASET [--only ROWS] [--set KEY VALUE ...]
#   GPU_ID   a GPU id, or cpu
#   NET      ZF | VGG16 (PASCAL VOC) or TINY (the embedded synth dataset)
#   DATASET  pascal_voc | pascal_voc_0712 | synth | synth_mini | a dataset file path/to/file.yml
#   --only   comma-separated row ids or prefixes (t1, t1_ss, t5, joint, fig2, anchors); default: all
#   --report-only  compute nothing: rewrite the report from the steps finished so far
#   ITERS="n1 n2 n3 n4" (environment) overrides the alt-opt stages' iterations, as for faster_rcnn_alt_opt.sh.
#   JOBS=n (environment): trainings run at once (default: one per CPU core on the CPU, 1 on a GPU).
# Writes output/faster_rcnn_alt_opt/paper/report.md, report.json and the PNGs. Finished steps are kept
# (output/faster_rcnn_alt_opt/paper/steps/): rerunning after a kill continues where it stopped. The alt-opt
# and end-to-end main jobs' models are reused when they exist.
# Example: ./experiments/scripts/paper_experiments.sh cpu TINY synth

set -e
set -o pipefail
if [ $# -lt 3 ]; then
  sed -n '2,16p' "$0"
  exit 1
fi
GPU_ID=$1
NET=$2
DATASET=$3
shift 3
ONLY_ARGS=()
SET_ARGS=()
REPORT_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY_ARGS+=(--only "$2"); shift 2 ;;
    --report-only) ONLY_ARGS+=(--report-only); REPORT_ONLY=1; shift ;;
    --set) shift; SET_ARGS=(--set "$@"); break ;;
    *) echo "unknown argument $1 (expected --only ROWS, --report-only or --set KEY VALUE ...)" >&2; exit 1 ;;
  esac
done
METHOD=faster_rcnn_alt_opt
source "$(dirname "${BASH_SOURCE[0]}")/_datasets.sh"

if [ "$REPORT_ONLY" = 0 ]; then
  ensure_init_model faster_rcnn_test.pt
fi
ITER_ARGS=()
SINGLE_ITER_ARGS=()
if [ -n "$ITERS" ]; then
  read -r -a ITER_ARRAY <<< "$ITERS"
  ITER_ARGS=(--alt-opt-iters "${ITER_ARRAY[@]}")
fi
if [ "$DATASET" = synth_mini ]; then
  # Smoke run: a few iterations for every single-solver training too.
  SINGLE_ITER_ARGS=(--iters 20)
fi
# The dataset's own config files (after each method's config); CFG_ARGS starts with the alt-opt config.
DATASET_CFG_ARGS=("${CFG_ARGS[@]:2}")
LARGER_ARGS=()
if [ "$NET" = ZF ] && [ -f data/imagenet_models/VGG16.v2.caffemodel ]; then
  LARGER_ARGS=(--larger-weights data/imagenet_models/VGG16.v2.caffemodel)
fi

START=$(date +%s%N)
timed "paper experiments" "$PY" tools/paper_experiments.py --device "$GPU_ID" --net "$NET" \
  --dataset "$DATASET" --train-imdb "$TRAIN_IMDB" --test-imdb "$TEST_IMDB" --models-dir "$MODELS_DIR" \
  --weights "$WEIGHTS" ${JOBS:+--jobs "$JOBS"} "${LARGER_ARGS[@]}" "${ITER_ARGS[@]}" "${SINGLE_ITER_ARGS[@]}" \
  "${DATASET_CFG_ARGS[@]}" "${ONLY_ARGS[@]}" "${SET_ARGS[@]}"
say "Total wall time: $(elapsed "$START") s"
