#!/usr/bin/env bash
# Builds Caffe (Debian's source + our Fast R-CNN additions) into a cache directory outside the repo.
#
# usage: caffe-fast-rcnn/build.sh PYTHON ENV_FILE
#   PYTHON    the interpreter pycaffe is built for (the repo's .venv/bin/python; numpy must be installed)
#   ENV_FILE  where to write the shell-sourceable result (CAFFE_DIR, CAFFE_VARIANT, PYCAFFE_DIR, CAFFE_TEST_BIN)
# environment:
#   CPU_ONLY=1     force the CPU-only variant (default: CUDA when nvcc + cuBLAS + cuRAND are found)
#   FRCNN_CACHE    cache root (default ~/.cache/faster-rcnn-caffe)
#   JOBS           parallel compile jobs (default: nproc)
#
# The build lives in $FRCNN_CACHE/caffe-<key>/ where <key> hashes everything that changes the result; it is
# built in place (libcaffe and _caffe.so carry absolute RPATHs, so a build is never moved) and marked complete
# only at the very end. An incomplete directory is wiped and rebuilt; a complete one is reused in seconds.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "caffe-fast-rcnn/build.sh: ERROR: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 PYTHON ENV_FILE"
python=$1
env_file=$2
[ -x "$python" ] || die "Python '$python' not found: run 'make' (it creates .venv) or pass an interpreter."

upstream_version=1.0.0+git20180821.99bd997-8
cache_root=${FRCNN_CACHE:-$HOME/.cache/faster-rcnn-caffe}
jobs=${JOBS:-$(nproc)}
# sm_75 is CUDA 13's oldest target; sm_90 is Hopper (H100/H200). PTX for compute_75 lets the driver JIT for
# every other GPU from 7.5 on (Ampere 8.x, Blackwell 10.x/12.x).
cuda_arch_bin=${CUDA_ARCH_BIN:-75 90}
cuda_arch_ptx=${CUDA_ARCH_PTX:-75}

for tool in cmake make g++ patch sha256sum; do
  command -v "$tool" >/dev/null || die "'$tool' is missing: run 'make' as root (it installs Debian's build deps)."
done

# ---- variant -----------------------------------------------------------------------------------------------
find_nvcc() {
  if command -v nvcc >/dev/null; then command -v nvcc; return; fi
  local d
  for d in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
    if [ -n "$d" ] && [ -x "$d/bin/nvcc" ]; then echo "$d/bin/nvcc"; return; fi
  done
  return 1
}
cuda_missing=""
nvcc=""
cuda_root=""
if [ "${CPU_ONLY:-0}" = 1 ]; then
  variant=cpu
  variant_reason="CPU_ONLY=1 was given"
elif nvcc=$(find_nvcc); then
  cuda_root=$(cd "$(dirname "$(readlink -f "$nvcc")")/.." && pwd)
  for lib in cublas curand cudart; do
    ls "$cuda_root"/lib64/lib$lib.so "$cuda_root"/targets/*/lib/lib$lib.so >/dev/null 2>&1 \
      || cuda_missing="$cuda_missing lib$lib.so"
  done
  for hdr in cublas_v2.h curand.h; do
    ls "$cuda_root"/include/$hdr "$cuda_root"/targets/*/include/$hdr >/dev/null 2>&1 \
      || cuda_missing="$cuda_missing $hdr"
  done
  if [ -z "$cuda_missing" ]; then
    variant=cuda
    variant_reason="nvcc, cuBLAS and cuRAND found under $cuda_root"
  else
    variant=cpu
    variant_reason="nvcc found at $nvcc but not:$cuda_missing"
  fi
else
  variant=cpu
  variant_reason="no nvcc on PATH, in \$CUDA_HOME or /usr/local/cuda"
fi
echo "==> Caffe variant: $variant ($variant_reason)"

# ---- configuration and cache key -------------------------------------------------------------------------
py_info=$("$python" -c 'import sys, numpy
print(sys.base_prefix); print("%d.%d" % sys.version_info[:2]); print(numpy.__version__)') \
  || die "'$python' cannot import numpy: run 'make' (it installs requirements.txt into .venv)."
py_prefix=$(sed -n 1p <<<"$py_info")
py_version=$(sed -n 2p <<<"$py_info")
numpy_version=$(sed -n 3p <<<"$py_info")
py_include=$py_prefix/include/python$py_version
py_library=$py_prefix/lib/libpython$py_version.so
[ -f "$py_include/Python.h" ] || die "no $py_include/Python.h: pycaffe needs the Python headers of $py_prefix."
[ -f "$py_library" ] || die "no $py_library: pycaffe needs a shared libpython (build Python with --enable-shared)."

cmake_args=(
  -DCMAKE_BUILD_TYPE=Release -DBLAS=Generic -DUSE_CUDNN=OFF -DUSE_NCCL=OFF -DBUILD_docs=OFF
  -DBUILD_python=ON -DBUILD_python_layer=ON -Dpython_version=3
  -DPYTHON_INCLUDE_DIR="$py_include" -DPYTHON_LIBRARY="$py_library"
  # Only the tests we run: ours and the upstream ones covering what Faster R-CNN uses. (Not common: its
  # TestBrewMode leaves Caffe in GPU mode, which aborts the next test on a machine without a GPU.)
  -DBUILD_only_tests=roi_pooling_layer,smooth_l1_loss_layer,dropout_scale_train,max_pooling_nan_window,convolution_layer,pooling_layer,inner_product_layer,softmax_with_loss_layer,neuron_layer,net,gradient_based_solver,blob,filler,im2col_kernel
)
if [ "$variant" = cuda ]; then
  cmake_args+=(
    -DCPU_ONLY=OFF -DCUDA_TOOLKIT_ROOT_DIR="$cuda_root"
    -DCUDA_ARCH_NAME=Manual -DCUDA_ARCH_BIN="$cuda_arch_bin" -DCUDA_ARCH_PTX="$cuda_arch_ptx"
    # CUDA 13 hides kernel stubs by default; the test binary launches kernels defined in libcaffe.
    -DCUDA_NVCC_FLAGS="-static-global-template-stub=false;-device-entity-has-hidden-visibility=false"
  )
  tool_versions=$("$nvcc" --version | tail -1)
else
  cmake_args+=(-DCPU_ONLY=ON)
  tool_versions=""
fi
tool_versions="$tool_versions|$(g++ -dumpfullversion)|$(protoc --version 2>/dev/null || true)"

key=$(
  {
    echo "$upstream_version|$variant|$py_prefix|$py_version|$numpy_version|$tool_versions"
    printf '%s\n' "${cmake_args[@]}"
    # our overlay sources, patches and this script, by path and content
    (cd "$here" && find include src patches build.sh -type f ! -name '*~' | LC_ALL=C sort \
       | while read -r f; do echo "$f"; cat "$f"; done)
  } | sha256sum | cut -c1-16
)
dir=$cache_root/caffe-$key
src=$dir/src
build=$dir/build

write_env() {
  mkdir -p "$(dirname "$env_file")"
  cat >"$env_file" <<EOF
CAFFE_DIR=$dir
CAFFE_VARIANT=$variant
PYCAFFE_DIR=$src/python
CAFFE_TEST_BIN=$build/test/test.testbin
EOF
}

if [ -f "$dir/.complete" ]; then
  echo "==> Caffe ($variant) already built in $dir"
  write_env
  exit 0
fi

# One build per cache directory at a time (two makes, or two checkouts sharing the cache): the second
# waits, then finds the first one's build complete.
mkdir -p "$cache_root"
exec 9>"$cache_root/.caffe-$key.lock"
if ! flock -n 9; then
  echo "==> another build of $dir is running (lock $cache_root/.caffe-$key.lock): waiting for it"
  flock 9
fi
if [ -f "$dir/.complete" ]; then
  echo "==> Caffe ($variant) built in $dir by the other build"
  write_env
  exit 0
fi

# ---- source ------------------------------------------------------------------------------------------------
# Debian's caffe source package (Debian's patches applied) is fetched once per cache root.
pristine=$cache_root/debian-source-$upstream_version
fetch_source() {
  # The source is shared by every cache key: one fetch at a time.
  exec 8>"$cache_root/.source.lock"
  flock 8
  if [ -f "$pristine/CMakeLists.txt" ]; then exec 8>&-; return; fi
  [ "$(id -u)" = 0 ] || die "fetching Debian's caffe source needs root (apt-get update with a deb-src entry): run 'make' as root once."
  command -v dpkg-source >/dev/null || die "dpkg-dev is missing: run 'make' as root (it installs Debian's build deps)."
  local deb822=/etc/apt/sources.list.d/debian.sources list=/etc/apt/sources.list.d/faster-rcnn-caffe-src.sources
  if [ ! -f "$list" ]; then
    [ -f "$deb822" ] || die "no $deb822 to derive a bullseye deb-src entry from; add a 'deb-src <your mirror> bullseye main' line by hand."
    # The first non-security stanza of the machine's own entry, as a bullseye deb-src entry (source only:
    # bullseye binaries must never mix into a bookworm system).
    awk 'BEGIN { RS = "" } !/security/ { print; exit }' "$deb822" | grep -v '^#' \
      | sed -e 's/^Types:.*/Types: deb-src/' -e 's/^Suites:.*/Suites: bullseye/' -e 's/^Components:.*/Components: main/' \
      >"$list.tmp"
    grep -q '^URIs:' "$list.tmp" || die "could not find a URIs: line in $deb822"
    mv "$list.tmp" "$list"
  fi
  apt-get update -q >/dev/null || die "apt-get update failed (network or $list): fix apt, then re-run make."
  rm -rf "$pristine" "$pristine.tmp"
  mkdir -p "$pristine.tmp"
  (cd "$pristine.tmp" && apt-get source -q "caffe=$upstream_version" >"$cache_root/apt-source.log" 2>&1) \
    || { tail -5 "$cache_root/apt-source.log" >&2; die "apt-get source caffe=$upstream_version failed: check $list and the network."; }
  mv "$pristine.tmp"/caffe-*/ "$pristine.tmp/tree"
  mv "$pristine.tmp/tree" "$pristine"
  rm -rf "$pristine.tmp"
  exec 8>&-
}
[ -f "$pristine/CMakeLists.txt" ] || { echo "==> fetching Debian's caffe $upstream_version source"; fetch_source; }

echo "==> building Caffe ($variant) in $dir"
rm -rf "$dir"
mkdir -p "$dir"
cp -a "$pristine" "$src"
# Overlay our additions (new files only), then patch upstream files.
cp -r "$here/include" "$here/src" "$src/"
for p in "$here"/patches/*.patch; do
  patch -d "$src" -p1 --batch --forward --quiet <"$p" || die "patch $(basename "$p") does not apply to $src."
done

# ---- configure and compile ---------------------------------------------------------------------------------
launcher=()
if command -v ccache >/dev/null; then
  # Paths under the cache root are hashed relative, so a new key directory still hits the ccache.
  export CCACHE_BASEDIR=$cache_root
  # ccache hashes the working directory for nvcc; Release objects carry no paths, so leave it out.
  export CCACHE_NOHASHDIR=1
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  if [ "$variant" = cuda ]; then
    # FindCUDA runs nvcc through its own script (no launcher support): give it a wrapper.
    printf '#!/bin/sh\nexec ccache %s "$@"\n' "$nvcc" >"$dir/nvcc-ccache"
    chmod +x "$dir/nvcc-ccache"
  fi
fi
mkdir -p "$build"
(cd "$build" && cmake "${cmake_args[@]}" "${launcher[@]}" -DPYTHON_EXECUTABLE="$python" "$src" >"$dir/cmake.log" 2>&1) \
  || { tail -30 "$dir/cmake.log" >&2; die "cmake failed (full log: $dir/cmake.log)."; }
if [ -x "$dir/nvcc-ccache" ]; then
  # FindCUDA resets CUDA_NVCC_EXECUTABLE on the first configure of a toolkit root: set it on a second one.
  (cd "$build" && cmake -DCUDA_NVCC_EXECUTABLE="$dir/nvcc-ccache" . >>"$dir/cmake.log" 2>&1) \
    || { tail -30 "$dir/cmake.log" >&2; die "cmake (nvcc wrapper) failed (full log: $dir/cmake.log)."; }
fi
start=$(date +%s)
(cd "$build" && make -j"$jobs" caffe pycaffe test.testbin >"$dir/make.log" 2>&1) \
  || { grep -E -B2 -A8 'error|Error' "$dir/make.log" | tail -60 >&2; die "compiling Caffe failed (full log: $dir/make.log)."; }
echo "==> compiled in $(( $(date +%s) - start )) s"

[ -f "$src/python/caffe/_caffe.so" ] || die "pycaffe's _caffe.so was not produced (see $dir/make.log)."
[ -x "$build/test/test.testbin" ] || die "the test binary was not produced (see $dir/make.log)."
echo "$variant" >"$dir/.complete"
write_env
echo "==> Caffe ($variant) ready: $dir"
