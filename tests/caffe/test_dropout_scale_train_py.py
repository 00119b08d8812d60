"""DropoutParameter.scale_train in both phases (the released Faster R-CNN models use scale_train: false).

scale_train true (default): train keeps units scaled by 1/(1-p), test is the identity.
scale_train false:          train keeps units unscaled (mask only), test scales by 1-p.
"""
import numpy as np
import pytest

X = np.arange(1, 201, dtype=np.float32).reshape(1, 2, 10, 10)  # no zeros: a dropped unit shows as 0

NET = """
name: "dropout"
force_backward: true
layer {{ name: "input" type: "Input" top: "data"
         input_param {{ shape {{ dim: 1 dim: 2 dim: 10 dim: 10 }} }} }}
layer {{
  name: "drop" type: "Dropout" bottom: "data" top: "dropped"
  dropout_param {{ dropout_ratio: 0.25 scale_train: {scale_train} }}
}}
"""


def run(caffe, make_net, phase, scale_train):
    """Forward, then backward with top diff 1: returns (top data, bottom diff)."""
    caffe.set_random_seed(1701)
    net = make_net(NET.format(scale_train='true' if scale_train else 'false'), phase)
    net.blobs['data'].data[...] = X
    net.forward()
    net.blobs['dropped'].diff[...] = 1
    net.backward()
    return net.blobs['dropped'].data.copy(), net.blobs['data'].diff.copy()


@pytest.mark.parametrize('scale_train, kept_factor',
                         [(False, np.float32(1)), (True, np.float32(1) / np.float32(0.75))])
def test_train_phase(caffe, make_net, scale_train, kept_factor):
    top, grad = run(caffe, make_net, caffe.TRAIN, scale_train)
    kept = top != 0
    np.testing.assert_array_equal(top[kept], X[kept] * kept_factor)
    np.testing.assert_array_equal(grad, kept * kept_factor)
    # 200 units kept with probability 0.75 each (150 +- 6); both outcomes must occur.
    assert 100 < kept.sum() < 200


@pytest.mark.parametrize('scale_train, factor', [(False, 0.75), (True, 1.0)])
def test_test_phase(caffe, make_net, scale_train, factor):
    top, grad = run(caffe, make_net, caffe.TEST, scale_train)
    np.testing.assert_array_equal(top, X * np.float32(factor))
    np.testing.assert_array_equal(grad, np.full_like(X, factor))
