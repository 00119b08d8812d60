#!/usr/bin/env bash
# Runs the CPU instances of Caffe's test binary (our layers + the selected upstream tests).
#
# usage: caffe-fast-rcnn/run-gtests.sh ENV_FILE     (the file build.sh wrote)
#
# A CUDA build's binary also holds GPU instances of the tests; with no GPU the first of them aborts the whole
# run, and '--gtest_filter=-*GPU*' does not catch them. Caffe's gtest (1.7) names a typed test's instances
# Suite/0 ... Suite/3 without saying their type, so the filter is built from what the sources define:
#  - suites typed over TestDtypesAndDevices have 4 instances in a CUDA build, and /2, /3 are GPUDevice<float>,
#    GPUDevice<double> (the order is checked in test_caffe_main.hpp below);
#  - fixtures deriving from GPUDeviceTest (e.g. Im2colKernelTest) are GPU-only whatever their instance;
#  - and any test or suite named *GPU*.
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

gpu_fixtures=""
if [ "$CAFFE_VARIANT" = cuda ]; then
  header=$CAFFE_DIR/src/include/caffe/test/test_caffe_main.hpp
  tr -d ' \n' <"$header" | grep -q 'Types<CPUDevice<float>,CPUDevice<double>,GPUDevice<float>,GPUDevice<double>>TestDtypesAndDevices' \
    || die "$header no longer lists TestDtypesAndDevices as CPU float, CPU double, GPU float, GPU double: update this filter."
  gpu_fixtures=$(cat "$CAFFE_DIR"/src/src/caffe/test/*.cpp "$CAFFE_DIR"/src/src/caffe/test/*.cu \
    | sed -n 's/.*class \([A-Za-z0-9_]*\) *: *public GPUDeviceTest.*/\1/p' | tr '\n' ' ')
fi

# Parse the listing: 'Suite.' or 'Suite/2.' lines open a suite instance, '  Test' lines follow.
read -r filter total cpu < <(awk -v variant="$CAFFE_VARIANT" -v fixtures=" $gpu_fixtures " '
  /^[A-Za-z0-9_\/]+\.$/ {
    name = $1; sub(/\.$/, "", name); base = name; sub(/\/.*/, "", base)
    order[++n] = name; instances[base]++; next
  }
  /^  [A-Za-z0-9_]+/ && n > 0 { tests[order[n]] = tests[order[n]] " " $1 }
  END {
    excluded = "-*GPU*"
    for (i = 1; i <= n; i++) {
      name = order[i]; base = name; sub(/\/.*/, "", base); idx = name; sub(/^[^\/]*\/?/, "", idx)
      gpu = variant == "cuda" && (index(fixtures, " " base " ") || (instances[base] == 4 && idx >= 2))
      if (gpu) excluded = excluded ":" name ".*"
      k = split(tests[name], t, " ")
      for (j = 1; j <= k; j++) { total++; if (!gpu && t[j] !~ /GPU/ && name !~ /GPU/) cpu++ }
    }
    printf "%s %d %d\n", excluded, total, cpu
  }
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
