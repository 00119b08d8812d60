"""RPN anchor labelling, sampling and target layout (rpn.anchor_target)."""

import numpy as np
import pytest

from fast_rcnn.bbox_transform import bbox_transform
from rpn.anchor_target import (anchor_target_blobs, anchor_targets, inside_anchor_inds, label_anchors,
                               outside_weights, subsample_labels)
from rpn.generate_anchors import generate_anchors, shifted_anchors
from utils.cython_bbox import bbox_overlaps

# The released training settings (cfg.TRAIN defaults), spelled out so the tests pin the numbers.
RELEASED = dict(positive_overlap=0.7, negative_overlap=0.3, clobber_positives=False, batch_size=256,
                fg_fraction=0.5, bbox_inside_weights=(1.0, 1.0, 1.0, 1.0), positive_weight=-1.0)


def vgg_anchors():
    """The 21,546 anchors of a 600×1000 input (conv5 38×63)."""
    return shifted_anchors(generate_anchors(), 38, 63, 16)


def test_inside_anchor_inds_respects_allowed_border():
    anchors = np.array([[0, 0, 99, 49], [-1, 0, 50, 20], [0, 0, 100, 49], [-5, -5, 104, 54]], dtype=float)
    np.testing.assert_array_equal(inside_anchor_inds(anchors, 50, 100, 0), [0])
    np.testing.assert_array_equal(inside_anchor_inds(anchors, 50, 100, 1), [0, 1, 2])
    np.testing.assert_array_equal(inside_anchor_inds(anchors, 50, 100, 5), [0, 1, 2, 3])


def test_label_anchors_thresholds_and_best_match():
    overlaps = np.array([[0.80, 0.10],    # >= 0.7 -> positive
                         [0.50, 0.20],    # between -> ignored
                         [0.20, 0.25],    # < 0.3 but gt 1's best -> positive
                         [0.10, 0.00],    # negative
                         [0.65, 0.10]])   # between -> ignored
    labels, argmax = label_anchors(overlaps, 0.7, 0.3, clobber_positives=False)
    np.testing.assert_array_equal(labels, [1, -1, 1, 0, -1])
    np.testing.assert_array_equal(argmax, [0, 0, 1, 0, 0])


def test_every_anchor_tying_a_gts_best_is_positive():
    overlaps = np.array([[0.4, 0.0], [0.4, 0.1], [0.2, 0.1], [0.1, 0.05]])
    labels, _ = label_anchors(overlaps, 0.7, 0.3, clobber_positives=False)
    np.testing.assert_array_equal(labels, [1, 1, 1, 0])


def test_a_gt_without_overlap_does_not_turn_zero_iou_anchors_positive():
    # gt 1 overlaps no anchor (max 0). The released code would make anchors 1 and 2 positive as "ties".
    overlaps = np.array([[0.8, 0.0], [0.1, 0.0], [0.0, 0.0]])
    labels, _ = label_anchors(overlaps, 0.7, 0.3, clobber_positives=False)
    np.testing.assert_array_equal(labels, [1, 0, 0])


def test_clobber_positives_lets_negatives_win():
    overlaps = np.array([[0.2], [0.1]])
    np.testing.assert_array_equal(label_anchors(overlaps, 0.7, 0.3, clobber_positives=False)[0], [1, 0])
    np.testing.assert_array_equal(label_anchors(overlaps, 0.7, 0.3, clobber_positives=True)[0], [0, 0])


def test_no_gt_makes_every_anchor_negative():
    labels, argmax = label_anchors(np.zeros((4, 0)), 0.7, 0.3, clobber_positives=False)
    np.testing.assert_array_equal(labels, [0, 0, 0, 0])
    np.testing.assert_array_equal(argmax, [0, 0, 0, 0])


@pytest.mark.parametrize('num_fg, num_bg, kept_fg, kept_bg', [(300, 1000, 128, 128), (10, 1000, 10, 246),
                                                              (10, 100, 10, 100), (0, 500, 0, 256)])
def test_subsample_counts(num_fg, num_bg, kept_fg, kept_bg):
    labels = np.concatenate([np.ones(num_fg), np.zeros(num_bg), -np.ones(7)]).astype(np.int32)
    np.random.seed(3)
    sampled = subsample_labels(labels, batch_size=256, fg_fraction=0.5)
    assert np.sum(sampled == 1) == kept_fg and np.sum(sampled == 0) == kept_bg
    # only disables: surviving labels keep their value
    assert np.all((sampled == labels) | (sampled == -1))


def test_subsample_is_deterministic_under_the_seed():
    labels = np.concatenate([np.ones(300), np.zeros(1000)]).astype(np.int32)
    np.random.seed(3)
    first = subsample_labels(labels, 256, 0.5)
    np.random.seed(3)
    np.testing.assert_array_equal(subsample_labels(labels, 256, 0.5), first)
    np.random.seed(4)
    assert not np.array_equal(subsample_labels(labels, 256, 0.5), first)


def test_outside_weights_uniform_and_positive_weighted():
    np.testing.assert_allclose(outside_weights(np.array([1, 0, 0, -1]), -1.0), [1 / 3, 1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(outside_weights(np.array([1, 1, 0, 0, 0, -1]), 0.25),
                               [0.125, 0.125, 0.25, 0.25, 0.25, 0])
    with pytest.raises(ValueError, match='RPN_POSITIVE_WEIGHT'):
        outside_weights(np.array([1, 0]), 1.5)


def test_scene_label_counts_on_vgg_anchors():
    all_anchors = vgg_anchors()
    # gt 0 coincides with an inside anchor (anchor 4 = 256×256 at cell h=10, w=20): IoU 1.
    gt_boxes = np.array([[200, 40, 455, 295, 1], [600, 300, 799, 499, 2], [40, 420, 79, 459, 3]],
                        dtype=np.float32)
    np.testing.assert_array_equal(all_anchors[(10 * 63 + 20) * 9 + 4], [200, 40, 455, 295])
    inside = inside_anchor_inds(all_anchors, 600, 1000, 0)
    overlaps = bbox_overlaps(all_anchors[inside], gt_boxes[:, :4].astype(np.float64))
    labels, _ = label_anchors(overlaps, 0.7, 0.3, clobber_positives=False)
    positives = labels == 1
    # gt 0: 13 anchors at IoU >= 0.7 (measured). gt 1 (200×200): best IoU 40000/65536 = 0.6104, tied by the
    # 4×4 anchors of 256×256 containing it. gt 2 (40×40): best 1600/15488 = 0.1033 (88×176 anchors),
    # tied by 2×9 inside positions. 13 + 16 + 18 = 47 positives.
    assert np.sum(overlaps >= 0.7, axis=0).tolist() == [13, 0, 0]
    np.testing.assert_allclose(overlaps.max(axis=0), [1.0, 40000 / 65536, 1600 / 15488], rtol=1e-12)
    assert np.sum(overlaps == overlaps.max(axis=0), axis=0).tolist() == [1, 16, 18]
    assert np.sum(positives) == 47
    assert np.sum(labels == 0) == 7240 and np.sum(labels == -1) == 864
    best = (overlaps == overlaps.max(axis=0)).any(axis=1)
    assert np.all((overlaps.max(axis=1)[positives] >= 0.7) | best[positives])
    assert np.all(overlaps.max(axis=1)[labels == 0] < 0.3)

    np.random.seed(3)
    labels, targets, inside_w, outside_w = anchor_targets(all_anchors, gt_boxes, 600, 1000, 0, **RELEASED)
    outside_image = np.setdiff1d(np.arange(all_anchors.shape[0]), inside)
    assert np.all(labels[outside_image] == -1)
    assert np.sum(labels == 1) == 47 and np.sum(labels == 0) == 256 - 47
    fg = np.where(labels == 1)[0]
    np.testing.assert_array_equal(inside_w[fg], np.ones((47, 4)))
    assert np.count_nonzero(inside_w) == 47 * 4
    np.testing.assert_array_equal(outside_w[labels >= 0], np.full((256, 4), 1 / 256, dtype=np.float32))
    assert np.count_nonzero(outside_w) == 256 * 4
    # targets go to each anchor's best gt
    best_gt = bbox_overlaps(all_anchors[fg], gt_boxes[:, :4].astype(np.float64)).argmax(axis=1)
    np.testing.assert_allclose(targets[fg], bbox_transform(all_anchors[fg], gt_boxes[best_gt, :4]),
                               rtol=1e-6, atol=1e-6)
    assert np.all(targets[outside_image] == 0)


def test_many_positives_are_capped_at_128():
    all_anchors = vgg_anchors()
    # a grid of 60 large gt boxes -> far more than 128 positive anchors
    xs, ys = np.meshgrid(np.arange(0, 900, 90), np.arange(0, 540, 90))
    gt_boxes = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 99, ys.ravel() + 99,
                         np.ones(xs.size)], axis=1).astype(np.float32)
    np.random.seed(3)
    labels = anchor_targets(all_anchors, gt_boxes, 600, 1000, 0, **RELEASED)[0]
    assert np.sum(labels == 1) == 128 and np.sum(labels == 0) == 128


def test_image_without_gt_gets_only_negatives():
    all_anchors = vgg_anchors()
    np.random.seed(3)
    labels, targets, inside_w, outside_w = anchor_targets(all_anchors, np.zeros((0, 5), np.float32), 600,
                                                          1000, 0, **RELEASED)
    assert np.sum(labels == 0) == 256 and np.sum(labels == 1) == 0
    assert not targets.any() and not inside_w.any()
    np.testing.assert_array_equal(outside_w[labels == 0], np.full((256, 4), 1 / 256, dtype=np.float32))


def test_blob_layout_rows_and_channels():
    height, width, num_anchors = 2, 3, 2
    n = height * width * num_anchors
    per_anchor = np.arange(n)
    targets = 10.0 * per_anchor[:, np.newaxis] + np.arange(4)
    labels, bbox_targets, inside_w, outside_w = anchor_target_blobs(per_anchor, targets, targets + 1,
                                                                    targets + 2, height, width, num_anchors)
    assert labels.shape == (1, 1, num_anchors * height, width) and labels.dtype == np.float32
    assert bbox_targets.shape == inside_w.shape == outside_w.shape == (1, 4 * num_anchors, height, width)
    for h in range(height):
        for w in range(width):
            for a in range(num_anchors):
                i = (h * width + w) * num_anchors + a
                assert labels[0, 0, a * height + h, w] == i
                for k in range(4):
                    assert bbox_targets[0, 4 * a + k, h, w] == 10 * i + k
                    assert inside_w[0, 4 * a + k, h, w] == 10 * i + k + 1
                    assert outside_w[0, 4 * a + k, h, w] == 10 * i + k + 2
