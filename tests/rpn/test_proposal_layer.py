"""ProposalLayer inside a real pycaffe net (CPU), in TRAIN and TEST phase."""


import numpy as np
import pytest

caffe = pytest.importorskip('caffe')

from fast_rcnn.config import cfg  # noqa: E402
from rpn.generate_anchors import generate_anchors, shifted_anchors  # noqa: E402
from rpn.proposal import generate_proposals  # noqa: E402

HEIGHT, WIDTH = 20, 30       # conv map of a 320×480 input at stride 16
NET = """
name: 'proposal'
layer { name: 'input' type: 'Input' top: 'rpn_cls_prob_reshape' top: 'rpn_bbox_pred' top: 'im_info'
  input_param { shape { dim: 1 dim: 18 dim: %(h)d dim: %(w)d } shape { dim: 1 dim: 36 dim: %(h)d dim: %(w)d }
                shape { dim: 1 dim: 3 } } }
layer { name: 'proposal' type: 'Python' bottom: 'rpn_cls_prob_reshape' bottom: 'rpn_bbox_pred'
  bottom: 'im_info' %(tops)s
  python_param { module: 'rpn.proposal_layer' layer: 'ProposalLayer' param_str: "'feat_stride': 16" } }
"""


@pytest.fixture(autouse=True)
def cpu_nms(saved_cfg):
    """CPU NMS (no GPU here); cfg restored afterwards."""
    saved_cfg.GPU_ID = -1


def make_net(tmp_path, phase, tops="top: 'rois' top: 'scores'"):
    """A net holding only the proposal layer, fed with seeded random RPN outputs for a 320×480 image."""
    caffe.set_mode_cpu()
    path = tmp_path / 'proposal.prototxt'
    path.write_text(NET % {'h': HEIGHT, 'w': WIDTH, 'tops': tops}, encoding='utf-8')
    net = caffe.Net(str(path), phase)
    rng = np.random.default_rng(0)
    net.blobs['rpn_cls_prob_reshape'].data[...] = rng.random((1, 18, HEIGHT, WIDTH))
    net.blobs['rpn_bbox_pred'].data[...] = 0.2 * rng.standard_normal((1, 36, HEIGHT, WIDTH))
    net.blobs['im_info'].data[...] = [[16 * HEIGHT, 16 * WIDTH, 0.8]]
    return net


def expected(net, settings, **ablations):
    """Proposals from the pure function on the net's inputs (layout conversion done by hand here)."""
    probs = net.blobs['rpn_cls_prob_reshape'].data
    deltas = net.blobs['rpn_bbox_pred'].data
    scores = np.array([probs[0, 9 + a, h, w] for h in range(HEIGHT) for w in range(WIDTH) for a in range(9)])
    bbox_deltas = np.array([deltas[0, 4 * a:4 * a + 4, h, w]
                            for h in range(HEIGHT) for w in range(WIDTH) for a in range(9)])
    anchors = shifted_anchors(generate_anchors(), HEIGHT, WIDTH, 16)
    return generate_proposals(anchors, bbox_deltas, scores, 16 * HEIGHT, 16 * WIDTH,
                              settings.RPN_MIN_SIZE * 0.8, settings.RPN_PRE_NMS_TOP_N,
                              settings.RPN_POST_NMS_TOP_N, settings.RPN_NMS_THRESH, seed=cfg.RNG_SEED,
                              **ablations)


def test_test_phase_uses_test_settings(tmp_path):
    net = make_net(tmp_path, caffe.TEST)
    net.forward()
    boxes, scores = expected(net, cfg.TEST)
    rois = net.blobs['rois'].data
    assert rois.shape == (300, 5) and net.blobs['scores'].data.shape == (300, 1)
    assert np.all(rois[:, 0] == 0)
    np.testing.assert_array_equal(rois[:, 1:], boxes)
    np.testing.assert_array_equal(net.blobs['scores'].data[:, 0], scores)
    assert np.all(np.diff(scores) <= 0)


def test_train_phase_uses_train_settings_and_ignores_ablations(tmp_path):
    cfg.TEST.RPN_USE_NMS = False
    net = make_net(tmp_path, caffe.TRAIN)
    net.forward()
    boxes, _ = expected(net, cfg.TRAIN)
    # more than TEST's 300 survive NMS with TRAIN's 12000 / 2000
    assert 300 < boxes.shape[0] <= 2000
    np.testing.assert_array_equal(net.blobs['rois'].data[:, 1:], boxes)


@pytest.mark.parametrize('key, ablation', [('RPN_USE_NMS', 'use_nms'), ('RPN_USE_CLS', 'use_cls'),
                                           ('RPN_USE_REG', 'use_reg')])
def test_test_phase_ablations(tmp_path, key, ablation):
    net = make_net(tmp_path, caffe.TEST)
    net.forward()
    full = net.blobs['rois'].data.copy()
    cfg.TEST[key] = False
    net.forward()
    boxes, _ = expected(net, cfg.TEST, **{ablation: False})
    np.testing.assert_array_equal(net.blobs['rois'].data[:, 1:], boxes)
    assert not np.array_equal(net.blobs['rois'].data, full)


def test_rois_only_top(tmp_path):
    net = make_net(tmp_path, caffe.TEST, tops="top: 'rois'")
    net.forward()
    assert net.blobs['rois'].data.shape == (300, 5) and 'scores' not in net.blobs
