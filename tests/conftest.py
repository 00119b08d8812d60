"""Fixtures every test module may use: the global cfg restored after a test, set values for a block, and
pycaffe on the CPU."""

import contextlib
import copy
import os
import sys

# glog reads this when libcaffe loads: set before any test module imports caffe.
os.environ.setdefault('GLOG_minloglevel', '2')
# Shared fixture generators (tests/datasets/voc_exports.py) import by name in every test module.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'datasets'))

import pytest  # noqa: E402

from fast_rcnn.config import cfg  # noqa: E402


def _restore(saved):
    """Put every top-level entry of ``saved`` (a deep copy of cfg) back into cfg."""
    for key, value in saved.items():
        cfg[key] = value


@pytest.fixture
def saved_cfg():
    """The global cfg, restored (every top-level entry) after the test."""
    saved = copy.deepcopy(dict(cfg))
    yield cfg
    _restore(saved)


@pytest.fixture(scope='module')
def module_cfg():
    """Like ``saved_cfg``, restored after the module (for module-scoped setups that configure cfg)."""
    saved = copy.deepcopy(dict(cfg))
    yield cfg
    _restore(saved)


def _node_and_leaf(key):
    """``('SECTION.KEY')`` -> (the cfg node holding it, the leaf name)."""
    *parents, leaf = key.split('.')
    node = cfg
    for name in parents:
        node = node[name]
    return node, leaf


@contextlib.contextmanager
def cfg_values(values):
    """Set ``{'SECTION.KEY': value}`` in cfg for the block, then restore the previous values."""
    saved = {}
    for key, value in values.items():
        node, leaf = _node_and_leaf(key)
        saved[key] = copy.deepcopy(node[leaf])
        node[leaf] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            node, leaf = _node_and_leaf(key)
            node[leaf] = value


@pytest.fixture(scope='module')
def caffe_cpu():
    """Pycaffe on the CPU with a fixed seed; the toolkit's CPU mode (GPU_ID -1, so NMS runs on the CPU)."""
    caffe = pytest.importorskip('caffe')
    caffe.set_mode_cpu()
    caffe.set_random_seed(cfg.RNG_SEED)
    with cfg_values({'GPU_ID': -1}):
        yield
