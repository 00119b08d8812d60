"""ProposalTargetLayer inside a real pycaffe net (CPU)."""


import numpy as np
import pytest

caffe = pytest.importorskip('caffe')

from fast_rcnn.config import cfg  # noqa: E402
from rpn.proposal_target import proposal_targets  # noqa: E402

NET = """
name: 'proposal_target'
layer { name: 'input' type: 'Input' top: 'rpn_rois' top: 'gt_boxes'
  input_param { shape { dim: 500 dim: 5 } shape { dim: 2 dim: 5 } } }
layer { name: 'roi-data' type: 'Python' bottom: 'rpn_rois' bottom: 'gt_boxes'
  top: 'rois' top: 'labels' top: 'bbox_targets' top: 'bbox_inside_weights' top: 'bbox_outside_weights'
  python_param { module: 'rpn.proposal_target_layer' layer: 'ProposalTargetLayer'
                 param_str: "'num_classes': 9" } }
"""
GT_BOXES = np.array([[10, 10, 59, 59, 3], [100, 100, 149, 149, 7]], dtype=np.float32)
TOPS = ('rois', 'labels', 'bbox_targets', 'bbox_inside_weights', 'bbox_outside_weights')


@pytest.fixture
def net(tmp_path, saved_cfg):
    """The layer with end2end settings (precomputed normalisation, BG_THRESH_LO 0), cfg restored after."""
    cfg.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED = True
    cfg.TRAIN.BG_THRESH_LO = 0.0
    caffe.set_mode_cpu()
    path = tmp_path / 'proposal_target.prototxt'
    path.write_text(NET, encoding='utf-8')
    net = caffe.Net(str(path), caffe.TRAIN)
    rng = np.random.default_rng(0)
    x1y1 = rng.uniform(0, 150, size=(500, 2))
    net.blobs['rpn_rois'].data[:, 0] = 0
    net.blobs['rpn_rois'].data[:, 1:] = np.hstack([x1y1, x1y1 + rng.uniform(20, 60, size=(500, 2))])
    net.blobs['gt_boxes'].data[...] = GT_BOXES
    return net


def test_layer_matches_the_pure_function(net):
    np.random.seed(3)
    net.forward()
    np.random.seed(3)
    expected = proposal_targets(net.blobs['rpn_rois'].data, GT_BOXES, 9, 128, 32, 0.5, 0.5, 0.0,
                                (0.0, 0.0, 0.0, 0.0), (0.1, 0.1, 0.2, 0.2), (1.0, 1.0, 1.0, 1.0))
    for name, values in zip(TOPS, expected):
        np.testing.assert_array_equal(net.blobs[name].data, values)
    labels = net.blobs['labels'].data
    assert labels.shape == (128,) and net.blobs['bbox_targets'].data.shape == (128, 36)
    # fewer foreground candidates than the 32 allowed: all of them (12 proposals at IoU >= 0.5 and the
    # 2 gt boxes), the remaining 114 RoIs background
    assert np.sum(labels > 0) == 14


def test_layer_image_without_gt(net):
    net.blobs['gt_boxes'].reshape(0, 5)
    np.random.seed(3)
    net.forward()
    assert net.blobs['rois'].data.shape == (128, 5)
    assert not net.blobs['labels'].data.any() and not net.blobs['bbox_inside_weights'].data.any()
