"""AnchorTargetLayer inside a real pycaffe net (CPU)."""

import numpy as np
import pytest

caffe = pytest.importorskip('caffe')

from fast_rcnn.config import cfg  # noqa: E402
from rpn.anchor_target import anchor_target_blobs, anchor_targets  # noqa: E402
from rpn.generate_anchors import generate_anchors, shifted_anchors  # noqa: E402

NET = """
name: 'anchor_target'
layer { name: 'input' type: 'Input' top: 'rpn_cls_score' top: 'gt_boxes' top: 'im_info' top: 'data'
  input_param { shape { dim: 1 dim: 18 dim: 38 dim: 63 } shape { dim: 2 dim: 5 } shape { dim: 1 dim: 3 }
                shape { dim: 1 dim: 3 dim: 600 dim: 1000 } } }
layer { name: 'rpn-data' type: 'Python'
  bottom: 'rpn_cls_score' bottom: 'gt_boxes' bottom: 'im_info' bottom: 'data'
  top: 'rpn_labels' top: 'rpn_bbox_targets' top: 'rpn_bbox_inside_weights' top: 'rpn_bbox_outside_weights'
  python_param { module: 'rpn.anchor_target_layer' layer: 'AnchorTargetLayer'
                 param_str: "'feat_stride': 16" } }
"""
GT_BOXES = np.array([[200, 40, 455, 295, 1], [600, 300, 799, 499, 2]], dtype=np.float32)
TOPS = ('rpn_labels', 'rpn_bbox_targets', 'rpn_bbox_inside_weights', 'rpn_bbox_outside_weights')


@pytest.fixture
def net(tmp_path):
    caffe.set_mode_cpu()
    path = tmp_path / 'anchor_target.prototxt'
    path.write_text(NET, encoding='utf-8')
    net = caffe.Net(str(path), caffe.TRAIN)
    net.blobs['im_info'].data[...] = [[600, 1000, 1.6]]
    return net


def expected_blobs(gt_boxes, seed):
    """The layer's outputs computed by the pure functions with the released cfg.TRAIN values."""
    np.random.seed(seed)
    per_anchor = anchor_targets(shifted_anchors(generate_anchors(), 38, 63, 16), gt_boxes, 600, 1000, 0,
                                cfg.TRAIN.RPN_POSITIVE_OVERLAP, cfg.TRAIN.RPN_NEGATIVE_OVERLAP,
                                cfg.TRAIN.RPN_CLOBBER_POSITIVES, cfg.TRAIN.RPN_BATCHSIZE,
                                cfg.TRAIN.RPN_FG_FRACTION, cfg.TRAIN.RPN_BBOX_INSIDE_WEIGHTS,
                                cfg.TRAIN.RPN_POSITIVE_WEIGHT)
    return anchor_target_blobs(*per_anchor, 38, 63, 9)


def test_layer_shapes_and_values_match_the_pure_functions(net):
    assert net.blobs['rpn_labels'].data.shape == (1, 1, 9 * 38, 63)
    net.blobs['gt_boxes'].data[...] = GT_BOXES
    np.random.seed(3)
    net.forward()
    for name, expected in zip(TOPS, expected_blobs(GT_BOXES, 3)):
        np.testing.assert_array_equal(net.blobs[name].data, expected)
    labels = net.blobs['rpn_labels'].data
    assert labels.shape == (1, 1, 342, 63) and net.blobs['rpn_bbox_targets'].data.shape == (1, 36, 38, 63)
    # 13 anchors at IoU >= 0.7 with gt 0 and the 16 ties of gt 1 (see test_anchor_target), 256 in all
    assert np.sum(labels == 1) == 29 and np.sum(labels == 0) == 227
    np.testing.assert_allclose(net.blobs['rpn_bbox_outside_weights'].data.max(), 1 / 256)


def test_layer_accepts_an_image_without_gt(net):
    net.blobs['gt_boxes'].reshape(0, 5)
    np.random.seed(3)
    net.forward()
    labels = net.blobs['rpn_labels'].data
    assert np.sum(labels == 0) == 256 and np.sum(labels == 1) == 0
    assert not net.blobs['rpn_bbox_inside_weights'].data.any()


def test_allowed_border_labels_anchors_crossing_the_border_by_at_most_that_much(tmp_path):
    # Anchor 1719 (ratio 0.5, scale 8, at conv5 cell y=3, x=2) is [-52, 8, 131, 103]: 52 px outside the
    # left border. The gt box is its part inside the image, IoU 132/184 = 0.717 >= 0.7.
    caffe.set_mode_cpu()
    gt = np.array([[0, 8, 131, 103, 1]], dtype=np.float32)
    labels = {}
    for border in (0, 64):
        path = tmp_path / f'border{border}.prototxt'
        path.write_text(NET.replace("param_str: \"'feat_stride': 16\"",
                                    f"param_str: \"'feat_stride': 16\\n'allowed_border': {border}\""),
                        encoding='utf-8')
        net = caffe.Net(str(path), caffe.TRAIN)
        net.blobs['im_info'].data[...] = [[600, 1000, 1.6]]
        net.blobs['gt_boxes'].reshape(1, 5)
        net.blobs['gt_boxes'].data[...] = gt
        np.random.seed(3)
        net.forward()
        labels[border] = net.blobs['rpn_labels'].data[0, 0, 0 * 38 + 3, 2]
    assert labels == {0: -1, 64: 1}
