#!/usr/bin/env bash
# The GPU device check, in one call of at most 8 minutes (see docs/device-check.md):
#
#   bench/device_check.sh [--bundle FILE] [--limit SECONDS] [--python PYTHON]
#
# Run from anywhere; it works in the repository root. Writes device_check.log and results.json to $OUT when
# set (the device tool's output folder), else to output/device_check/. Exit 0 unless an item FAILs (items
# that need a GPU report SKIP on a machine without one). Environment: DEVICE_PYTHON (default python3: the
# device's own, which holds numpy, Cython and PyTorch's CUDA libraries), DEVICE_BUNDLE, DEVICE_WORK,
# DEVICE_CHECK_LIMIT (seconds, default 450).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${DEVICE_PYTHON:-python3}
command -v "$python" >/dev/null || { echo "bench/device_check.sh: ERROR: no '$python' on PATH." >&2; exit 1; }
out=${OUT:-output/device_check}
# The Python driver keeps its own budget; the outer timeout is the hard stop (8 min on the device). A slow or
# shared CPU machine (the no-GPU proof) may give more: DEVICE_CHECK_LIMIT=1800.
limit=${DEVICE_CHECK_LIMIT:-450}
export PYTHONUNBUFFERED=1
exec timeout -k 5 $((limit + 25)) "$python" bench/device_check.py --out "$out" \
  --python "$(command -v "$python")" --limit "$limit" "$@"
