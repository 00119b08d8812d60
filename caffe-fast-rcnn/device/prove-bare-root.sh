#!/usr/bin/env bash
# Proof without a GPU that the device bundle is self-contained: runs bench/device_check.sh in a bare Debian 12
# root (debootstrap, made by ../shared/tools/fresh-bookworm) holding none of the Debian libraries Caffe was
# built against, with a Python that has only what the device's has for our code (numpy, Cython, setuptools,
# PyYAML). Every GPU item must SKIP with its "no GPU" reason and everything else must PASS.
#
# usage (root): caffe-fast-rcnn/device/prove-bare-root.sh [ROOT_DIR]
#   ROOT_DIR   the root to make or reuse (default /var/tmp/frcnn-bare-root); the check runs on the
#              committed tree (fresh-bookworm clones the repository), with build/device/frcnn-device.tar.xz
# Writes the check's log and results.json to output/device_check_bare_root/.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
die() { echo "caffe-fast-rcnn/device/prove-bare-root.sh: ERROR: $*" >&2; exit 1; }
fresh=$repo/../shared/tools/fresh-bookworm
root=${1:-/var/tmp/frcnn-bare-root}
archive=$repo/build/device/frcnn-device.tar.xz
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)."
[ -x "$fresh" ] || die "$fresh not found: it makes the bare root."
[ -f "$archive" ] || die "$archive not found: run 'make device-bundle' first."
[ -f "$root/bin/bash" ] || FRESH_ROOT=$root "$fresh" "$repo" true

rm -rf "$root/bundle-in" "$root/proof-out"
mkdir -p "$root/bundle-in" "$root/proof-out"
cp "$archive" "$root/bundle-in/"
# The same versions as the .venv (requirements.txt), for the only Python packages the check's workers use.
pins=$(grep -E '^(numpy|Cython|setuptools|PyYAML)==' "$repo/requirements.txt" | tr '\n' ' ')
[ "$(wc -w <<<"$pins")" = 4 ] || die "requirements.txt lacks a pin of numpy, Cython, setuptools or PyYAML."

FRESH_ROOT=$root "$fresh" "$repo" "
  set -e
  echo '==> Debian libraries of the Caffe build in this root (none expected):'
  pkgs=\$(dpkg-query -W -f='\${db:Status-Status} \${Package}\n' 'libboost*' 'libgoogle-glog*' 'libgflags*' \
          'libprotobuf*' 'libhdf5*' 'libopenblas*' 'libblas*' 'libgfortran*' 'libopencv*' 2>/dev/null \
          | sed -n 's/^installed //p' || true)
  pattern='libboost|libglog|libgflags|libprotobuf|libhdf5|libopenblas|libblas[.]|libgfortran'
  cache=\$(/sbin/ldconfig -p) || { echo 'ERROR: /sbin/ldconfig -p failed' >&2; exit 1; }
  libs=\$(grep -E \"\$pattern\" <<<\"\$cache\" || true)
  echo \"ld.so cache: \$(wc -l <<<\"\$cache\") entries\"
  echo \"packages: \${pkgs:-none}; ldconfig: \${libs:-none}\"
  [ -z \"\$pkgs\$libs\" ] || { echo 'ERROR: this root is not bare' >&2; exit 1; }
  python3 -m pip install -q --disable-pip-version-check $pins
  OUT=/proof-out DEVICE_CHECK_LIMIT=${DEVICE_CHECK_LIMIT:-1800} \
    DEVICE_BUNDLE=/bundle-in/frcnn-device.tar.xz DEVICE_WORK=/tmp/frcnn-device-check \
    bench/device_check.sh
" && rc=0 || rc=$?
mkdir -p "$repo/output/device_check_bare_root"
cp "$root"/proof-out/* "$repo/output/device_check_bare_root/" 2>/dev/null || true
echo "==> bare-root device check exit $rc; log and results.json in output/device_check_bare_root/"
exit "$rc"
