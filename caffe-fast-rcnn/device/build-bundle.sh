#!/usr/bin/env bash
# Builds the lean device variant of our Caffe and packs it, with every shared library it needs that a bare
# CUDA machine lacks, into one archive (see docs/device-check.md).
#
# usage: caffe-fast-rcnn/device/build-bundle.sh PYTHON OUTPUT_DIR
#   PYTHON      the repo's .venv/bin/python after `make` (pycaffe: it derives the timing nets)
#   OUTPUT_DIR  where frcnn-device.tar.xz and its MANIFEST.json are copied (the repo's build/device)
# environment:
#   FRCNN_CACHE    cache root (default ~/.cache/faster-rcnn-caffe), as for caffe-fast-rcnn/build.sh
#   JOBS           parallel compile jobs (default: nproc)
#   CUDA_HOME      CUDA toolkit root (default: the one holding nvcc on PATH, else /usr/local/cuda)
#
# Same Caffe source, Debian patches, our patches and layers as the main build, but CUDA for sm_90 (+ PTX
# compute_90) only and no OpenCV / LevelDB / LMDB / Python: the device has its own Python and none of
# Debian's libraries. The compile lives in $FRCNN_CACHE/device-build-<key>/ (keyed by the compile inputs), the
# staged bundle and archive in $FRCNN_CACHE/device-<key>/ (keyed by everything); complete ones are reused.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
overlay=$(cd "$here/.." && pwd)
repo=$(cd "$overlay/.." && pwd)
die() { echo "caffe-fast-rcnn/device/build-bundle.sh: ERROR: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 PYTHON OUTPUT_DIR"
python=$1
out_dir=$2
[ -x "$python" ] || die "Python '$python' not found: run 'make' first (it creates .venv and pycaffe)."
"$python" -c 'import caffe' 2>/dev/null \
  || die "'$python' cannot import caffe: run 'make' first (the timing nets are derived with pycaffe)."

for tool in cmake make g++ patch sha256sum readelf strip tar xz ldd; do
  command -v "$tool" >/dev/null || die "'$tool' is missing: run 'make' as root (it installs the build deps)."
done

cache_root=${FRCNN_CACHE:-$HOME/.cache/faster-rcnn-caffe}
jobs=${JOBS:-$(nproc)}
# The one upstream version, read from the main build script so the two cannot drift apart.
upstream_version=$(sed -n 's/^upstream_version=//p' "$overlay/build.sh")
[ -n "$upstream_version" ] || die "no upstream_version= line in $overlay/build.sh."
pristine=$cache_root/debian-source-$upstream_version
[ -f "$pristine/CMakeLists.txt" ] \
  || die "no Caffe source in $pristine: run 'make' first (caffe-fast-rcnn/build.sh fetches it)."

if [ -n "${CUDA_HOME:-}" ]; then nvcc=$CUDA_HOME/bin/nvcc
elif command -v nvcc >/dev/null; then nvcc=$(command -v nvcc)
else nvcc=/usr/local/cuda/bin/nvcc; fi
[ -x "$nvcc" ] || die "nvcc not found ($nvcc): the device bundle needs the CUDA toolkit (set CUDA_HOME)."
cuda_root=$(cd "$(dirname "$(readlink -f "$nvcc")")/.." && pwd)

# Hopper (H100/H200) machine code plus its PTX, so a later GPU can still JIT it.
cuda_arch_bin=90
cuda_arch_ptx=90
# Must match the BUILD_only_tests of the device check (bench/device_check.py: GTEST_SUITES).
only_tests=roi_pooling_layer,smooth_l1_loss_layer,dropout_scale_train,max_pooling_nan_window,convolution_layer
only_tests+=,pooling_layer,inner_product_layer,softmax_with_loss_layer,neuron_layer,lrn_layer,net
only_tests+=,gradient_based_solver,im2col_kernel,blob,filler
cmake_args=(
  -DCMAKE_BUILD_TYPE=Release -DBLAS=Generic -DUSE_CUDNN=OFF -DUSE_NCCL=OFF -DBUILD_docs=OFF
  -DBUILD_python=OFF -DBUILD_python_layer=OFF -DUSE_OPENCV=OFF -DUSE_LEVELDB=OFF -DUSE_LMDB=OFF
  -DCPU_ONLY=OFF -DCUDA_TOOLKIT_ROOT_DIR="$cuda_root"
  -DCUDA_ARCH_NAME=Manual -DCUDA_ARCH_BIN="$cuda_arch_bin" -DCUDA_ARCH_PTX="$cuda_arch_ptx"
  -DCUDA_NVCC_FLAGS="-static-global-template-stub=false;-device-entity-has-hidden-visibility=false"
  -DBUILD_only_tests="$only_tests"
  # Relocatable: binaries find the bundle's lib/ from wherever it is unpacked (device patch 0002 keeps Caffe's
  # Misc.cmake from replacing this RPATH). DT_RPATH (not RUNPATH) is also searched for the dependencies of the
  # collected libraries, and before LD_LIBRARY_PATH.
  -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON -DCMAKE_INSTALL_RPATH_USE_LINK_PATH=OFF
  -DCMAKE_INSTALL_RPATH="\$ORIGIN:\$ORIGIN/../lib"
  -DCMAKE_EXE_LINKER_FLAGS=-Wl,--disable-new-dtags -DCMAKE_SHARED_LINKER_FLAGS=-Wl,--disable-new-dtags
)

# Runtime libraries whose versions end up in the bundle.
runtime_pkgs=(libboost-filesystem1.74.0 libboost-system1.74.0 libboost-thread1.74.0 libgflags2.2
              libgoogle-glog0v6 libhdf5-103-1 libopenblas0-pthread libprotobuf32 libgfortran5 libstdc++6)
pkg_versions=$(dpkg-query -W -f='${Package}=${Version}\n' "${runtime_pkgs[@]}" 2>/dev/null || true)

# Two keys: the compile (slow) depends on the compiler inputs only; the bundle adds what is staged beside it,
# so editing the collector or the nets re-stages in seconds instead of recompiling.
hash_files() {  # path and content of each file, so renames count too
  (cd "$repo" && find "$@" -type f ! -name '*~' ! -name '*.pyc' | LC_ALL=C sort \
     | while read -r f; do echo "$f"; cat "$f"; done)
}
build_key=$(
  {
    echo "$upstream_version|$("$nvcc" --version | tail -1)|$(g++ -dumpfullversion)"
    protoc --version || true
    printf '%s\n' "${cmake_args[@]}"
    hash_files caffe-fast-rcnn/include caffe-fast-rcnn/src caffe-fast-rcnn/patches \
      caffe-fast-rcnn/device/patches
  } | sha256sum | cut -c1-16
)
key=$(
  {
    echo "$build_key"
    echo "$pkg_versions"
    "$python" -c 'import easydict; print(easydict.__file__)'
    hash_files caffe-fast-rcnn/device bench/device_nets.py models/pascal_voc/ZF/faster_rcnn_end2end \
      models/pascal_voc/VGG16/faster_rcnn_end2end
  } | sha256sum | cut -c1-16
)
build_dir=$cache_root/device-build-$build_key
dir=$cache_root/device-$key
archive_name=frcnn-device.tar.xz

publish() {
  mkdir -p "$out_dir"
  cp "$dir/$archive_name" "$dir/MANIFEST.json" "$out_dir/"
  echo "==> device bundle: $out_dir/$archive_name ($(du -h "$out_dir/$archive_name" | cut -f1)," \
    "key $key; manifest $out_dir/MANIFEST.json)"
}
if [ -f "$dir/.complete" ]; then
  echo "==> device bundle already built in $dir"
  publish
  exit 0
fi

# ---- compile (reused when complete) -------------------------------------------------------------------
src=$build_dir/src
build=$build_dir/build
if [ ! -f "$build_dir/.complete" ]; then
  echo "==> building the device Caffe (CUDA sm_$cuda_arch_bin + PTX, no OpenCV/LevelDB/LMDB/Python)" \
    "in $build_dir"
  rm -rf "$build_dir"
  mkdir -p "$build_dir"
  cp -a "$pristine" "$src"
  cp -r "$overlay/include" "$overlay/src" "$src/"
  # Our patches, then the device build's own (options the main build never turns off).
  for p in "$overlay"/patches/*.patch "$here"/patches/*.patch; do
    patch -d "$src" -p1 --batch --forward --quiet <"$p" \
      || die "patch $(basename "$p") does not apply to $src."
  done
  launcher=()
  if command -v ccache >/dev/null; then
    # Its own ccache directory: these objects never match the main build's, and must not evict them.
    export CCACHE_DIR=$cache_root/ccache-device CCACHE_BASEDIR=$cache_root CCACHE_NOHASHDIR=1
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
    printf '#!/bin/sh\nexec ccache %s "$@"\n' "$nvcc" >"$build_dir/nvcc-ccache"
    chmod +x "$build_dir/nvcc-ccache"
  fi
  mkdir -p "$build"
  (cd "$build" && cmake "${cmake_args[@]}" "${launcher[@]}" "$src" >"$build_dir/cmake.log" 2>&1) \
    || { tail -30 "$build_dir/cmake.log" >&2; die "cmake failed (full log: $build_dir/cmake.log)."; }
  if [ -x "$build_dir/nvcc-ccache" ]; then
    # FindCUDA resets CUDA_NVCC_EXECUTABLE on the first configure of a toolkit root: set it on a second one.
    (cd "$build" && cmake -DCUDA_NVCC_EXECUTABLE="$build_dir/nvcc-ccache" . >>"$build_dir/cmake.log" 2>&1) \
      || { tail -30 "$build_dir/cmake.log" >&2; die "cmake (nvcc wrapper) failed: $build_dir/cmake.log."; }
  fi
  start=$(date +%s)
  (cd "$build" && make -j"$jobs" caffe caffe.bin test.testbin >"$build_dir/make.log" 2>&1) \
    || { grep -E -B2 -A8 'error|Error' "$build_dir/make.log" | tail -60 >&2
         die "compiling failed (full log: $build_dir/make.log)."; }
  echo "==> compiled in $(( $(date +%s) - start )) s"
  touch "$build_dir/.complete"
fi

# ---- stage: binaries, collected libraries, test data, timing nets -------------------------------------
echo "==> staging the device bundle in $dir"
rm -rf "$dir"
stage=$dir/stage/frcnn-device
mkdir -p "$stage/bin" "$stage/lib" "$stage/src/caffe/test" "$stage/nets" "$stage/pylib"
cp "$build/tools/caffe" "$build/test/test.testbin" "$stage/bin/"
cp -a "$build"/lib/libcaffe.so* "$stage/lib/"
# Which test fixtures are GPU-only, read from the sources the binary was built from (the device check has no
# sources); and the device order of TestDtypesAndDevices that its /2, /3 = GPU rule relies on.
header=$src/include/caffe/test/test_caffe_main.hpp
tr -d ' \n' <"$header" | grep -q \
  'Types<CPUDevice<float>,CPUDevice<double>,GPUDevice<float>,GPUDevice<double>>TestDtypesAndDevices' \
  || die "$header no longer lists TestDtypesAndDevices as CPU float, CPU double, GPU float, GPU double."
cat "$src"/src/caffe/test/*.cpp "$src"/src/caffe/test/*.cu \
  | sed -n 's/.*class \([A-Za-z0-9_]*\) *: *public GPUDeviceTest.*/\1/p' \
  | sort -u >"$stage/gtest_gpu_fixtures.txt"
[ -s "$stage/gtest_gpu_fixtures.txt" ] || die "found no GPUDeviceTest fixtures in $src/src/caffe/test."
# Caffe's solver tests read src/caffe/test/test_data/... relative to the working directory.
cp -r "$src/src/caffe/test/test_data" "$stage/src/caffe/test/"
"$python" "$repo/bench/device_nets.py" "$stage/nets" >"$dir/nets.log" 2>&1 \
  || { tail -20 "$dir/nets.log" >&2; die "deriving the timing nets failed (full log: $dir/nets.log)."; }
# The device's Python lacks easydict (lib/fast_rcnn/config.py imports it): take the .venv's pure-Python copy.
easydict=$("$python" -c 'import easydict, os; print(os.path.dirname(easydict.__file__))')
cp -r "$easydict" "$stage/pylib/"
rm -rf "$stage/pylib/easydict/__pycache__"
"$python" "$here/bundle.py" collect "$stage" >"$dir/collect.log" 2>&1 \
  || { cat "$dir/collect.log" >&2; die "collecting the shared libraries failed."; }
cat "$dir/collect.log"
"$python" "$here/bundle.py" manifest "$stage" --key "$key" --nvcc "$("$nvcc" --version | tail -1)" \
  --arch "sm_$cuda_arch_bin+compute_$cuda_arch_ptx" >"$stage/MANIFEST.json" \
  || die "writing the manifest failed."
cp "$stage/MANIFEST.json" "$dir/MANIFEST.json"

# ---- pack --------------------------------------------------------------------------------------------------
echo "==> packing $(du -sh "$stage" | cut -f1) into $archive_name"
tar -C "$dir/stage" --owner=0 --group=0 --sort=name -cf - frcnn-device \
  | xz -T"$jobs" -9 >"$dir/$archive_name.tmp"
mv "$dir/$archive_name.tmp" "$dir/$archive_name"
touch "$dir/.complete"
publish
