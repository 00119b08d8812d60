# Shared by the experiment scripts (sourced): dataset presets, device flag, initial model, logging.
# Expects GPU_ID, NET, DATASET and METHOD (faster_rcnn_alt_opt | faster_rcnn_end2end); sets TRAIN_IMDB,
# TEST_IMDB, MODELS_DIR, CFG_ARGS, DEVICE_ARGS, WEIGHTS, ITERS, PY and LOG. Commands run through `timed`
# and messages through `say` are teed to LOG (each command's tee ends with it, so LOG is complete after it).
# DATASET may be a dataset file (path/to/file.yml, see data/README.md): it trains on its split TRAIN_SPLIT
# (default trainval) and tests on TEST_SPLIT (default test). Environment: INIT_MODEL overrides the initial
# model (a missing file under output/init/ is written as a seeded random model).

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT_DIR"
PY="$ROOT_DIR/.venv/bin/python"
export GLOG_minloglevel=${GLOG_minloglevel:-2}

CFG_ARGS=(--cfg "experiments/cfgs/${METHOD}.yml")
MODELS_DIR=models/pascal_voc
WEIGHTS="data/imagenet_models/${NET}.v2.caffemodel"
INIT_ARGS=()
PRESET_ITERS=""

# The embedded backbones' analogue of an ImageNet model: the shared convs and fc6/fc7 pre-trained once
# (cached) to classify crops of synth_trainval (never the test split) by tools/make_init_model.py. Keyed by
# what it is made from (the dataset's stamp, the tool and fast_rcnn/init_model.py, the backbone), so a
# regenerated dataset or a changed net gets a new one instead of a stale cached file.
use_synth_init_model() {
  local key
  key=$(cat "data/SYNTHdevkit/SYNTH/synth_stamp.json" tools/make_init_model.py lib/fast_rcnn/init_model.py \
    "models/synth/${NET}/faster_rcnn_alt_opt/faster_rcnn_test.pt" 2>/dev/null | sha1sum | cut -c1-12)
  WEIGHTS="output/init/${NET}_pretrained_${key}.caffemodel"
  INIT_ARGS=(--pretrain-imdb synth_trainval)
}

case "$DATASET" in
  *.yml|*.yaml)
    [ -f "$DATASET" ] || { echo "dataset file not found: $DATASET" >&2; exit 1; }
    TRAIN_IMDB="${DATASET}:${TRAIN_SPLIT:-trainval}"
    TEST_IMDB="${DATASET}:${TEST_SPLIT:-test}"
    if [ "$NET" = TINY ]; then
      CFG_ARGS+=(--cfg experiments/cfgs/synth.yml)
      MODELS_DIR=models/synth
      use_synth_init_model
    fi
    ;;
  pascal_voc)
    TRAIN_IMDB=voc_2007_trainval
    TEST_IMDB=voc_2007_test
    ;;
  pascal_voc_0712)
    TRAIN_IMDB=voc_2007_trainval+voc_2012_trainval
    TEST_IMDB=voc_2007_test
    ;;
  pascal_voc_07plus12)
    # The paper's "07++12" (Table 3): VOC 2007 trainval + test and VOC 2012 trainval; VOC 2012 test has no
    # public annotations, so test_net writes the evaluation server's archive instead of an mAP.
    TRAIN_IMDB=voc_2007_trainval+voc_2007_test+voc_2012_trainval
    TEST_IMDB=voc_2012_test
    ;;
  synth|synth_mini)
    TRAIN_IMDB=${DATASET}_trainval
    TEST_IMDB=${DATASET}_test
    CFG_ARGS+=(--cfg experiments/cfgs/synth.yml)
    MODELS_DIR=models/synth
    # No ImageNet model exists for the embedded nets: see use_synth_init_model.
    use_synth_init_model
    if [ "$DATASET" = synth_mini ]; then
      # The smoke test starts from a seeded random model instead (no pre-training).
      WEIGHTS="output/init/${NET}.caffemodel"
      INIT_ARGS=()
      # Smoke test: a few iterations per stage.
      if [ "$METHOD" = faster_rcnn_alt_opt ]; then PRESET_ITERS="20 20 20 20"; else PRESET_ITERS="40"; fi
    fi
    ;;
  coco)
    # MS COCO as released (datasets.coco): train on 2014 train + valminusminival, test on minival; the
    # models/coco nets (VGG16, VGG_CNN_M_1024) exist for end-to-end and Fast R-CNN training only.
    TRAIN_IMDB=coco_2014_train+coco_2014_valminusminival
    TEST_IMDB=coco_2014_minival
    MODELS_DIR=models/coco
    if [ "$METHOD" = faster_rcnn_alt_opt ]; then
      echo "DATASET coco has no alternating-optimisation nets (as released): use faster_rcnn_end2end.sh" >&2
      exit 1
    fi
    # The released schedule: 490k iterations, the step at 350k (in the solver).
    PRESET_ITERS=490000
    ;;
  *)
    echo "unknown DATASET $DATASET (pascal_voc | pascal_voc_0712 | pascal_voc_07plus12 | coco | synth | synth_mini |" \
      "a dataset file path/to/file.yml)" >&2
    exit 1
    ;;
esac
ITERS=${ITERS:-$PRESET_ITERS}
if [ -n "$INIT_MODEL" ]; then
  WEIGHTS=$INIT_MODEL
  INIT_ARGS=()
fi

if [ "$GPU_ID" = cpu ] || [ "$GPU_ID" = -1 ]; then
  DEVICE_ARGS=(--cpu)
else
  DEVICE_ARGS=(--gpu "$GPU_ID")
fi

mkdir -p experiments/logs
# The pid keeps two runs started in the same second apart.
# A dataset file is named by its stem (a path has slashes).
DATASET_TAG=$(basename "$DATASET" | sed -E 's/\.ya?ml$//')
LOG="experiments/logs/${METHOD}_${NET}_${DATASET_TAG}.txt.$(date +'%Y-%m-%d_%H-%M-%S').$$"

# Prints a message and appends it to LOG.
say() {
  echo "$*" | tee -a "$LOG"
}
say "Logging output to $LOG"

if [ ! -x "$PY" ]; then
  echo "error: $PY not found: run make first" >&2
  exit 1
fi

# Writes the seeded initial model of an embedded net when it is missing.
ensure_init_model() {
  if [[ "$WEIGHTS" == output/init/* ]] && [ ! -f "$WEIGHTS" ]; then
    "$PY" tools/make_init_model.py --def "${MODELS_DIR}/${NET}/${METHOD}/$1" --out "$WEIGHTS" "${INIT_ARGS[@]}" 2>&1 | tee -a "$LOG"
  fi
}

# Seconds since $1 (a `date +%s%N` value), with one decimal.
elapsed() {
  local ms=$(( ($(date +%s%N) - $1) / 1000000 ))
  printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}

# Runs a command (output teed to LOG) and prints its wall time.
timed() {
  local label=$1 start
  shift
  start=$(date +%s%N)
  "$@" 2>&1 | tee -a "$LOG"
  say "Wall time of $label: $(elapsed "$start") s"
}
