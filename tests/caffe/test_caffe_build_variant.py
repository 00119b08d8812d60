"""The Caffe that `make` built is the variant it says it built, and runs in CPU mode on this machine.

The CUDA variant links the CUDA runtime: on a machine with no GPU it must still import, run CPU mode,
forward and backward. The test reads build/caffe.env (written by caffe-fast-rcnn/build.sh) and checks
the loaded libraries against it, so it is not vacuous for either variant.
"""
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

NET = """
name: "tiny"
force_backward: true
layer { name: "input" type: "Input" top: "data" top: "target"
        input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 } } }
layer { name: "loss" type: "SmoothL1Loss" bottom: "data" bottom: "target" top: "loss"
        smooth_l1_loss_param { sigma: 3 } }
"""


def build_env():
    path = REPO / 'build' / 'caffe.env'
    assert path.is_file(), f'{path} is missing: run `make` (caffe-fast-rcnn/build.sh writes it)'
    return dict(line.split('=', 1) for line in path.read_text().split())


def loaded_libraries():
    return {Path(line.split()[-1]).name for line in Path('/proc/self/maps').read_text().splitlines()
            if '/' in line}


def test_imported_caffe_is_the_built_one(caffe):
    env = build_env()
    assert Path(caffe.__file__).resolve().parent == (Path(env['PYCAFFE_DIR']) / 'caffe').resolve()


def test_variant_matches_linked_cuda_runtime(caffe):
    env = build_env()
    cudart = any(name.startswith('libcudart.so') for name in loaded_libraries())
    assert env['CAFFE_VARIANT'] in ('cuda', 'cpu')
    assert cudart == (env['CAFFE_VARIANT'] == 'cuda'), (
        f"build/caffe.env says {env['CAFFE_VARIANT']} but libcudart is {'' if cudart else 'not '}loaded")


def test_cpu_mode_forward_backward(caffe, make_net):
    # d = (0.05, -0.1, 0.2, -1, 0, 2); sigma 3 (transition 1/9): f = 4.5 d^2 = (0.01125, 0.045) below it,
    # |d| - 1/18 above it; loss = sum / num 2.
    net = make_net(NET, caffe.TRAIN)
    net.blobs['data'].data[...] = [[0.05, -0.1, 0.2], [-1, 0, 2]]
    net.blobs['target'].data[...] = 0
    loss = net.forward()['loss'].item()
    expected = (0.01125 + 0.045 + (0.2 - 1 / 18) + (1 - 1 / 18) + 0 + (2 - 1 / 18)) / 2
    assert abs(loss - expected) < 1e-6
    net.backward()
    np.testing.assert_allclose(net.blobs['data'].diff, [[0.225, -0.45, 0.5], [-0.5, 0, 0.5]],
                               rtol=0, atol=1e-7)
