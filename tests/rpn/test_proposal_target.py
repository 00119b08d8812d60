"""Fast R-CNN minibatch sampling from RPN proposals (rpn.proposal_target)."""

import numpy as np

from rpn.proposal_target import normalized_targets, proposal_targets
from utils.cython_bbox import bbox_overlaps

NUM_CLASSES = 9
GT_BOXES = np.array([[10, 10, 59, 59, 3], [100, 100, 149, 149, 7]], dtype=np.float32)
# end2end settings: 128 RoIs, 32 foreground, fg IoU >= 0.5, bg IoU in [0, 0.5), precomputed normalisation
SETTINGS = dict(rois_per_image=128, fg_rois_per_image=32, fg_thresh=0.5, bg_thresh_hi=0.5, bg_thresh_lo=0.0,
                means=(0.0, 0.0, 0.0, 0.0), stds=(0.1, 0.1, 0.2, 0.2), inside_weights=(1.0, 1.0, 1.0, 1.0))


def as_rpn_rois(boxes):
    """R×4 boxes -> R×5 rois with batch index 0."""
    return np.hstack([np.zeros((len(boxes), 1), dtype=np.float32), np.asarray(boxes, dtype=np.float32)])


def jittered_proposals(num, seed=0):
    """``num`` random boxes around the gt boxes and elsewhere in a 200×200 image."""
    rng = np.random.default_rng(seed)
    x1y1 = rng.uniform(0, 150, size=(num, 2))
    return np.hstack([x1y1, x1y1 + rng.uniform(20, 60, size=(num, 2))])


def test_normalized_targets_hand_computed():
    # ex: w 60, centre x 40; gt: w 50, centre x 35 -> dx = −5/60, dw = log(50/60); y identical.
    raw = normalized_targets(np.array([[10, 10, 69, 59.]]), np.array([[10, 10, 59, 59.]]), None, None)
    np.testing.assert_allclose(raw, [[-5 / 60, 0, np.log(5 / 6), 0]], rtol=1e-12, atol=1e-15)
    norm = normalized_targets(np.array([[10, 10, 69, 59.]]), np.array([[10, 10, 59, 59.]]),
                              (0.0, 0.0, 0.0, 0.0), (0.1, 0.1, 0.2, 0.2))
    np.testing.assert_allclose(norm, [[-5 / 6, 0, np.log(5 / 6) / 0.2, 0]], rtol=1e-12, atol=1e-15)


def test_fg_fraction_thresholds_and_layout():
    np.random.seed(3)
    rois, labels, targets, inside_w, outside_w = proposal_targets(
        as_rpn_rois(jittered_proposals(2000)), GT_BOXES, NUM_CLASSES, **SETTINGS)
    assert rois.shape == (128, 5) and labels.shape == (128,)
    assert targets.shape == inside_w.shape == outside_w.shape == (128, 4 * NUM_CLASSES)
    assert np.all(rois[:, 0] == 0)
    overlaps = bbox_overlaps(rois[:, 1:].astype(np.float64), GT_BOXES[:, :4].astype(np.float64))
    max_overlaps = overlaps.max(axis=1)
    fg = labels > 0
    assert np.sum(fg) == 32                        # <= 25 % of 128, and enough candidates exist
    assert np.all(max_overlaps[fg] >= 0.5) and np.all(max_overlaps[~fg] < 0.5)
    np.testing.assert_array_equal(labels[fg], GT_BOXES[overlaps[fg].argmax(axis=1), 4])
    assert np.all(fg[:32]) and not np.any(fg[32:])  # foreground first
    for row, cls in enumerate(labels.astype(int)):
        nonzero = np.flatnonzero(inside_w[row])
        if cls > 0:
            np.testing.assert_array_equal(nonzero, np.arange(4 * cls, 4 * cls + 4))
            expected = normalized_targets(rois[row:row + 1, 1:].astype(np.float64),
                                          GT_BOXES[overlaps[row].argmax():overlaps[row].argmax() + 1, :4],
                                          SETTINGS['means'], SETTINGS['stds'])
            np.testing.assert_allclose(targets[row, 4 * cls:4 * cls + 4], expected[0], rtol=1e-5, atol=1e-6)
            assert np.count_nonzero(targets[row, :4 * cls]) == 0
            assert np.count_nonzero(targets[row, 4 * cls + 4:]) == 0
        else:
            assert nonzero.size == 0 and not targets[row].any()
    np.testing.assert_array_equal(outside_w, (inside_w > 0).astype(np.float32))


def test_bg_lower_threshold_excludes_low_overlaps():
    np.random.seed(3)
    settings = dict(SETTINGS, bg_thresh_lo=0.1)
    rois, labels, *_ = proposal_targets(as_rpn_rois(jittered_proposals(2000)), GT_BOXES, NUM_CLASSES,
                                        **settings)
    max_overlaps = bbox_overlaps(rois[:, 1:].astype(np.float64), GT_BOXES[:, :4].astype(np.float64)).max(1)
    bg = labels == 0
    assert np.all((max_overlaps[bg] >= 0.1) & (max_overlaps[bg] < 0.5))


def test_gt_boxes_join_the_candidates():
    # proposals far from both gts: the only foreground RoIs are the gt boxes themselves (targets 0)
    far = np.array([[160, 0, 199, 39], [0, 160, 39, 199], [170, 170, 199, 199]], dtype=np.float32)
    np.random.seed(3)
    rois, labels, targets, inside_w, _ = proposal_targets(as_rpn_rois(far), GT_BOXES, NUM_CLASSES, **SETTINGS)
    assert rois.shape == (5, 5)
    assert sorted(labels[:2].tolist()) == [3, 7] and labels[2:].tolist() == [0, 0, 0]
    assert sorted(map(tuple, rois[:2, 1:].tolist())) == sorted(map(tuple, GT_BOXES[:, :4].tolist()))
    assert not targets.any()
    assert np.count_nonzero(inside_w) == 8


def test_image_without_gt_is_all_background():
    np.random.seed(3)
    empty = np.zeros((0, 5), dtype=np.float32)
    rois, labels, targets, inside_w, outside_w = proposal_targets(
        as_rpn_rois(jittered_proposals(300)), empty, NUM_CLASSES, **SETTINGS)
    assert rois.shape == (128, 5) and not labels.any() and not targets.any() and not inside_w.any()
    # with a positive bg lower bound nothing qualifies: zero RoIs (use BG_THRESH_LO = 0 for end2end)
    rois, labels, *_ = proposal_targets(as_rpn_rois(jittered_proposals(300)), empty, NUM_CLASSES,
                                        **dict(SETTINGS, bg_thresh_lo=0.1))
    assert rois.shape == (0, 5) and labels.shape == (0,)


def test_sampling_is_deterministic_under_the_seed():
    proposals = as_rpn_rois(jittered_proposals(2000))
    np.random.seed(3)
    first = proposal_targets(proposals, GT_BOXES, NUM_CLASSES, **SETTINGS)[0]
    np.random.seed(3)
    np.testing.assert_array_equal(proposal_targets(proposals, GT_BOXES, NUM_CLASSES, **SETTINGS)[0], first)
