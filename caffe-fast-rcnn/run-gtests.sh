#!/usr/bin/env bash
# Runs the CPU instances of Caffe's test binary (our layers + the selected upstream tests).
#
# usage: caffe-fast-rcnn/run-gtests.sh ENV_FILE     (the file build.sh wrote)
#
# A CUDA build's binary also holds GPU instances of every typed test; with no GPU the first of them aborts the
# whole run. '--gtest_filter=-*GPU*' does not catch them: a typed test's GPU instances are named Suite/2, Suite/3
# (only the '# TypeParam = caffe::GPUDevice<...>' comment of --gtest_list_tests says so). So the filter is built
# from that listing: every suite instantiated on a GPUDevice is excluded, and so is any test named *GPU*.
set -euo pipefail
die() { echo "caffe-fast-rcnn/run-gtests.sh: ERROR: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 ENV_FILE"
[ -f "$1" ] || die "$1 not found: run 'make' first (it builds Caffe and writes it)."
# shellcheck disable=SC1090
. "$1"
[ -x "$CAFFE_TEST_BIN" ] || die "$CAFFE_TEST_BIN not found: run 'make' to rebuild Caffe."

# Test data paths in Caffe's tests are relative to the source root.
cd "$CAFFE_DIR/src"
export GLOG_minloglevel=${GLOG_minloglevel:-2}
listing=$("$CAFFE_TEST_BIN" --gtest_list_tests) || die "$CAFFE_TEST_BIN --gtest_list_tests failed."

# Parse the listing: 'Suite.' or 'Suite/2.  # TypeParam = ...' lines open a suite, '  Test' lines follow.
read -r filter total cpu < <(awk '
  /^[A-Za-z0-9_\/]+\.( |$)/ {
    suite = $1; sub(/\.$/, "", suite)
    gpu_suite = ($0 ~ /TypeParam = .*GPUDevice/ || suite ~ /GPU/)
    if (gpu_suite) excluded = excluded ":" suite ".*"
    next
  }
  /^  [A-Za-z0-9_]+/ && suite != "" {
    total++
    if (!gpu_suite && $1 !~ /GPU/) cpu++
  }
  END { printf "-*GPU*%s %d %d\n", excluded, total, cpu }
' <<<"$listing")
[ "$cpu" -gt 0 ] || die "no CPU tests found in $CAFFE_TEST_BIN (listing had $total tests)."
echo "==> gtest ($CAFFE_VARIANT build): running the $cpu CPU tests of $total ($((total - cpu)) GPU instances excluded)"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
"$CAFFE_TEST_BIN" --gtest_filter="$filter" >"$log" 2>&1
rc=$?
set -e
grep -E '^\[  (FAILED|PASSED)  \]|^\[==========\] [0-9]+ tests? from .* ran' "$log" || true
ran=$(sed -n 's/^\[==========\] \([0-9]*\) tests\? from .* ran\..*/\1/p' "$log")
passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) tests\?\./\1/p' "$log")
failed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) tests\?, listed below:/\1/p' "$log")
echo "==> gtest: ${ran:-?} tests run, $cpu CPU tests selected"
echo "gtest: ${passed:-0} passed, ${failed:-0} failed"
if [ "$rc" -ne 0 ] || [ "${ran:-0}" -ne "$cpu" ] || [ "${failed:-0}" -ne 0 ]; then
  [ "$rc" -ne 0 ] && tail -20 "$log" >&2
  die "C++ tests failed (exit $rc); re-run: cd $CAFFE_DIR/src && $CAFFE_TEST_BIN --gtest_filter='$filter'"
fi
