# Faster R-CNN (Caffe-era reproduction): one `make` sets up everything on a fresh Debian 12 machine.
#
#   make            Debian build deps (apt, root) -> .venv -> Caffe (cached outside the repo) -> lib/ extensions
#                   -> embedded dataset -> .pth making `lib` and pycaffe importable from .venv
#   make test       builds whatever is missing, then the C++ gtests (CPU instances), the linter and pytest
#   make clean      removes in-repo build outputs (the Caffe cache stays: $FRCNN_CACHE)
#   make CPU_ONLY=1 forces the CPU-only Caffe (default: CUDA when nvcc, cuBLAS and cuRAND are found)
#   make device-bundle   the lean sm_90 Caffe + its libraries for bench/device_check.sh (docs/device-check.md)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := all

REPO := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
PYTHON ?= python3
VENV := $(REPO)/.venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.requirements-installed
CAFFE_ENV := $(REPO)/build/caffe.env
CPU_ONLY ?= 0
export CPU_ONLY
# Recipes that write into this checkout (.venv, lib/ extensions, the .pth, the dataset) start with this:
# a second `make` in the same checkout waits for the first instead of writing the same files at once.
MAKE_LOCK := $(REPO)/.make.lock
TAKE_LOCK = exec 9>"$(MAKE_LOCK)"; \
  flock -n 9 || { echo "==> another make is writing in $(REPO) (lock $(MAKE_LOCK)): waiting"; flock 9; }

# Debian 12 packages Caffe builds against (Boost 1.74 / boost_python311, protobuf 3.21, glog, OpenCV 4.6, OpenBLAS).
APT_PACKAGES := build-essential cmake dpkg-dev ccache libboost-dev libboost-filesystem-dev libboost-system-dev \
  libboost-thread-dev libboost-python-dev libgflags-dev libgoogle-glog-dev libhdf5-dev libleveldb-dev liblmdb-dev \
  libopenblas-dev libopencv-dev libprotobuf-dev protobuf-compiler libsnappy-dev

.PHONY: all deps venv caffe lib data paths test gtest lint pytest clean distclean

all: deps venv caffe paths lib data
	@echo "==> ready: .venv/bin/python can import caffe and the lib/ packages ($$(grep CAFFE_VARIANT $(CAFFE_ENV)))"

deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
	            dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	          done); \
	if [ -z "$$missing" ]; then echo "==> Debian build deps present"; exit 0; fi; \
	echo "==> installing Debian build deps:" $$missing; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "ERROR: these Debian packages are missing and installing them needs root:" $$missing >&2; \
	  echo "       run 'sudo make' once, or: sudo apt-get install --no-install-recommends" $$missing >&2; exit 1; \
	fi; \
	command -v apt-get >/dev/null || { echo "ERROR: no apt-get: this set-up targets Debian 12 (bookworm)." >&2; exit 1; }; \
	apt-get update -q || { echo "ERROR: apt-get update failed: check the network and /etc/apt/sources.list.d." >&2; exit 1; }; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing \
	  || { echo "ERROR: apt-get install failed (see above): fix apt, then re-run make." >&2; exit 1; }

venv: $(VENV_STAMP)

# Re-installs whenever requirements.txt changes. OpenCV's wheels all write the same cv2 package: those
# requirements.txt does not name are removed, then the named one is reinstalled over the files the removal
# took from it.
$(VENV_STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "ERROR: '$(PYTHON)' not found: install Python 3.11 or pass PYTHON=/path/to/python3." >&2; exit 1; }
	@$(TAKE_LOCK); \
	if [ ! -x $(PY) ]; then \
	  echo "==> creating .venv with $$($(PYTHON) -c 'import sys; print(sys.executable, sys.version.split()[0])')"; \
	  $(PYTHON) -m venv $(VENV) || { echo "ERROR: '$(PYTHON) -m venv' failed: on Debian's python3 install python3-venv." >&2; exit 1; }; \
	fi; \
	echo "==> installing requirements.txt into .venv"; \
	removed=0; \
	for dist in opencv-python opencv-python-headless opencv-contrib-python opencv-contrib-python-headless; do \
	  if ! grep -q "^$$dist==" requirements.txt && $(PY) -m pip show -q $$dist 2>/dev/null; then \
	    $(PY) -m pip uninstall -y -q $$dist; removed=1; \
	  fi; \
	done; \
	$(PY) -m pip install -q -r requirements.txt \
	  || { echo "ERROR: pip install -r requirements.txt failed (see above): check the network, then re-run make." >&2; exit 1; }; \
	if [ $$removed = 1 ]; then \
	  $(PY) -m pip install -q --force-reinstall --no-deps $$(grep '^opencv' requirements.txt); \
	fi; \
	touch $@

caffe: deps venv
	@$(REPO)/caffe-fast-rcnn/build.sh $(PY) $(CAFFE_ENV)

# .venv sees lib/ and pycaffe from any working directory.
paths: caffe
	@$(TAKE_LOCK); . $(CAFFE_ENV); \
	site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	printf '%s\n%s\n' "$(REPO)/lib" "$$PYCAFFE_DIR" >"$$site/faster_rcnn_paths.pth"; \
	echo "==> wrote $$site/faster_rcnn_paths.pth"

lib: venv caffe
	@[ -f lib/setup.py ] || { echo "ERROR: lib/setup.py is missing: the lib/ extensions (NMS, bbox overlaps) cannot be built; restore it from git." >&2; exit 1; }
	@echo "==> building the lib/ extensions"
	@$(TAKE_LOCK); . $(CAFFE_ENV); export CAFFE_VARIANT; cd lib && $(PY) setup.py -q build_ext --inplace \
	  || { echo "ERROR: building the lib/ extensions failed (see above)." >&2; exit 1; }

data: venv paths lib
	@$(TAKE_LOCK); if [ -f data/scripts/make_synth_dataset.py ]; then \
	  echo "==> generating the embedded dataset"; $(PY) data/scripts/make_synth_dataset.py; \
	else echo "==> (no data/scripts/make_synth_dataset.py yet: no embedded dataset)"; fi

test: all gtest lint pytest

gtest: all
	@$(REPO)/caffe-fast-rcnn/run-gtests.sh $(CAFFE_ENV)

lint: venv
	@echo "==> ruff (ruff.toml)"
	@$(PY) -m ruff check --quiet . || { echo "ERROR: the linter found problems (listed above)." >&2; exit 1; }

pytest: all
	@echo "==> pytest"
	@rc=0; GLOG_minloglevel=2 $(PY) -m pytest tests || rc=$$?; \
	if [ $$rc = 5 ]; then echo "ERROR: pytest collected no tests: that counts as a failure." >&2; fi; \
	exit $$rc

clean:
	rm -rf build lib/build .pytest_cache
	find lib -name '*.so' -delete
	find lib \( -name '*.pyx' \) | sed 's/\.pyx$$//' | while read -r m; do rm -f "$$m.c" "$$m.cpp"; done
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	@site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null) \
	  && rm -f "$$site/faster_rcnn_paths.pth" || true

# clean + the virtual environment and the generated dataset
distclean: clean
	rm -rf $(VENV) data/SYNTHdevkit

# ---- GPU device check (docs/device-check.md): built in $FRCNN_CACHE/device-<key>/, copied to build/device/
.PHONY: device-bundle
device-bundle: all
	@nice -n 19 $(REPO)/caffe-fast-rcnn/device/build-bundle.sh $(PY) $(REPO)/build/device

