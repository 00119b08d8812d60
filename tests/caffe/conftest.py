"""Fixtures for the pycaffe tests: caffe in CPU mode, prototxts in tmp, python layers importable.

These tests need the Caffe that `make` builds (the .venv sees pycaffe through faster_rcnn_paths.pth).
"""
import os
from pathlib import Path

import pytest

# glog reads this when libcaffe loads, so it must be set before the first import of caffe.
os.environ.setdefault('GLOG_minloglevel', '2')

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.fixture(scope='session')
def caffe():
    """The pycaffe module, in CPU mode with a fixed seed."""
    try:
        import caffe as caffe_module
    except ImportError as err:
        pytest.fail(f'cannot import caffe ({err}): run `make` in {REPO} (it builds Caffe and '
                    'writes .venv/.../faster_rcnn_paths.pth), and run pytest with .venv/bin/python')
    caffe_module.set_mode_cpu()
    return caffe_module


@pytest.fixture
def python_layers(monkeypatch):
    """Puts tests/caffe on sys.path: pycaffe imports a Python layer's `module` by name."""
    monkeypatch.syspath_prepend(str(HERE))
    return 'caffe_test_python_layers'


@pytest.fixture
def make_net(caffe, tmp_path):
    """make_net(prototxt_text, phase) -> caffe.Net built from a prototxt written to tmp."""
    def build(text, phase):
        path = tmp_path / 'net.prototxt'
        path.write_text(text)
        return caffe.Net(str(path), phase)
    return build
