"""fast_rcnn.svd: the factorisation and its error bound, the compressed net's structure, and the compressed
TINY net's fc6 / fc7 outputs against the full net's, within the bound that the ranks give."""

import os.path as osp

import cv2
import numpy as np
import pytest

caffe = pytest.importorskip('caffe')

from caffe.proto import caffe_pb2  # noqa: E402
from fast_rcnn import svd  # noqa: E402
from fast_rcnn import test as frt  # noqa: E402
from fast_rcnn.config import cfg  # noqa: E402
from fast_rcnn.init_model import he_init  # noqa: E402
from fast_rcnn.models import adapt_prototxt, read_net, write_message  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TINY_TEST = osp.join(ROOT, 'models', 'synth', 'TINY', 'faster_rcnn_end2end', 'test.prototxt')
IMAGE = osp.join(ROOT, 'data', 'SYNTHdevkit', 'SYNTH', 'JPEGImages', '001001.jpg')
# Relative slack for float32 arithmetic on top of the exact bounds.
FLOAT_SLACK = 1e-4


def test_truncated_svd_error_is_within_sigma_k_plus_1():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(40, 60)) @ np.diag(np.linspace(2, 0.01, 60))
    x = rng.normal(size=(60, 500))
    for rank in (1, 5, 20, 39):
        lower, upper, sigma = svd.truncated_svd(weights, rank)
        assert lower.shape == (rank, 60) and upper.shape == (40, rank)
        err = np.linalg.norm(weights @ x - upper.astype(np.float64) @ (lower.astype(np.float64) @ x), axis=0)
        bound = svd.error_bound(sigma, rank) * np.linalg.norm(x, axis=0)
        assert np.all(err <= bound * (1 + FLOAT_SLACK) + 1e-5)
        # The bound is attained along the (k+1)-th right singular vector.
        v = np.linalg.svd(weights)[2][rank]
        np.testing.assert_allclose(np.linalg.norm(weights @ v - upper @ (lower @ v)), sigma[rank], rtol=1e-4)
    lower, upper, sigma = svd.truncated_svd(weights, 40)
    assert svd.error_bound(sigma, 40) == 0.0
    np.testing.assert_allclose(upper @ lower, weights, atol=1e-5)
    with pytest.raises(ValueError, match=r'rank 41 is outside \[1, 40\]'):
        svd.truncated_svd(weights, 41)
    assert svd.macs_saved(4608, 512, 128) == (4608 * 512, 128 * (4608 + 512))


def test_compressed_net_structure_and_errors():
    net = read_net(TINY_TEST)
    out = svd.compress_net_param(net, {'fc6': 128, 'fc7': 64}, 'tiny.pt')
    names = [layer.name for layer in out.layer]
    assert 'fc6' not in names and 'fc7' not in names
    i = names.index('fc6_L')
    assert names[i:i + 3] == ['fc6_L', 'fc6_U', 'relu6']
    lower, upper = out.layer[i], out.layer[i + 1]
    assert (list(lower.bottom), list(lower.top)) == (['roi_pool5'], ['fc6_L'])
    assert lower.inner_product_param.num_output == 128 and not lower.inner_product_param.bias_term
    assert (list(upper.bottom), list(upper.top)) == (['fc6_L'], ['fc6'])
    assert upper.inner_product_param.num_output == 512 and upper.inner_product_param.bias_term
    assert len(out.layer) == len(net.layer) + 2
    with pytest.raises(ValueError, match="tiny.pt: no layer named 'fc8' to compress"):
        svd.compress_net_param(net, {'fc8': 8}, 'tiny.pt')
    with pytest.raises(ValueError, match="tiny.pt: layer 'conv1' is a Convolution layer"):
        svd.compress_net_param(net, {'conv1': 8}, 'tiny.pt')
    with pytest.raises(ValueError, match="rank of 'fc6' must be a positive int"):
        svd.compress_net_param(net, {'fc6': 0}, 'tiny.pt')


@pytest.fixture
def full_and_compressed(tmp_path, monkeypatch):
    """A seeded He-random TINY test net and its SVD (fc6 rank 96, fc7 rank 48)."""
    monkeypatch.setitem(cfg, 'GPU_ID', -1)
    monkeypatch.setitem(cfg.TEST, 'HAS_RPN', True)
    monkeypatch.setitem(cfg.TEST, 'SCALES', (400,))
    monkeypatch.setitem(cfg.TEST, 'MAX_SIZE', 670)
    prototxt = adapt_prototxt(TINY_TEST, str(tmp_path / 'test.pt'), 7)
    caffe.set_mode_cpu()
    full = caffe.Net(prototxt, caffe.TEST)
    he_init(full, np.random.default_rng(1))
    ranks = {'fc6': 96, 'fc7': 48}
    svd_def = str(tmp_path / 'svd.pt')
    write_message(svd.compress_net_param(read_net(prototxt), ranks, prototxt), svd_def)
    compressed = caffe.Net(svd_def, caffe.TEST)
    info = svd.compress_weights(full, compressed, ranks)
    return full, compressed, info


def test_compressed_outputs_are_within_the_rank_bound(full_and_compressed):
    full, compressed, info = full_and_compressed
    for name, blobs in full.params.items():
        if name not in info:
            for a, b in zip(blobs, compressed.params[name]):
                np.testing.assert_array_equal(a.data, b.data)
    im = cv2.imread(IMAGE)
    frt.im_detect(full, im)
    frt.im_detect(compressed, im)
    # The convs and the RPN are untouched: same RoIs, same pooled features.
    np.testing.assert_array_equal(full.blobs['rois'].data, compressed.blobs['rois'].data)
    pool = full.blobs['roi_pool5'].data.reshape(len(full.blobs['rois'].data), -1).astype(np.float64)
    np.testing.assert_array_equal(pool, compressed.blobs['roi_pool5'].data.reshape(pool.shape))
    # fc6 (after its in-place ReLU, which is 1-Lipschitz): ||delta|| <= sigma6_{k+1} ||pool5||.
    fc6_full, fc6_svd = (net.blobs['fc6'].data.astype(np.float64) for net in (full, compressed))
    err6 = np.linalg.norm(fc6_full - fc6_svd, axis=1)
    bound6 = info['fc6']['bound'] * np.linalg.norm(pool, axis=1)
    assert np.all(err6 <= bound6 * (1 + FLOAT_SLACK))
    assert err6.max() > 0.01 * bound6.max()  # the rank really truncates
    # fc7: the input moved by err6 (through ||W7||_2) and the factorisation adds sigma7_{k+1} ||fc6_svd||.
    fc7_full, fc7_svd = (net.blobs['fc7'].data.astype(np.float64) for net in (full, compressed))
    err7 = np.linalg.norm(fc7_full - fc7_svd, axis=1)
    bound7 = info['fc7']['sigma'][0] * err6 + info['fc7']['bound'] * np.linalg.norm(fc6_svd, axis=1)
    assert np.all(err7 <= bound7 * (1 + FLOAT_SLACK) + 1e-6)


def test_full_rank_factorisation_reproduces_the_layer():
    net = caffe_pb2.NetParameter()
    layer = net.layer.add(name='fc', type='InnerProduct', bottom=['x'], top=['y'])
    layer.inner_product_param.num_output = 6
    compressed = svd.compress_net_param(net, {'fc': 4}, 'n.pt')
    assert [layer.name for layer in compressed.layer] == ['fc_L', 'fc_U']
    weights = np.random.default_rng(2).normal(size=(6, 4))
    lower, upper, _ = svd.truncated_svd(weights, 4)
    np.testing.assert_allclose(upper @ lower, weights, atol=1e-5)
