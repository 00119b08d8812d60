"""Proposal generation from RPN outputs (rpn.proposal)."""

import numpy as np
import pytest

from fast_rcnn.bbox_transform import bbox_transform_inv, clip_boxes
from fast_rcnn.config import cfg
from rpn.generate_anchors import generate_anchors, shifted_anchors
from rpn.proposal import filter_small_boxes, generate_proposals, rank_order, top_n


@pytest.fixture(autouse=True)
def cpu_nms():
    """No GPU here: make the NMS dispatch choose the CPU kernel."""
    saved = cfg.GPU_ID
    cfg.GPU_ID = -1
    yield
    cfg.GPU_ID = saved


def pairwise_iou(boxes):
    """IoU matrix of N×4 pixel-inclusive boxes (test reference)."""
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1 + 1, 0, None) * np.clip(y2 - y1 + 1, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    return inter / (areas[:, None] + areas[None, :] - inter)


def random_rpn_outputs(seed=0, height=20, width=30):
    """Anchors of a height×width feature map (stride 16) with random scores and small random deltas."""
    anchors = shifted_anchors(generate_anchors(), height, width, 16)
    rng = np.random.default_rng(seed)
    scores = rng.random(anchors.shape[0]).astype(np.float32)
    deltas = (0.2 * rng.standard_normal((anchors.shape[0], 4))).astype(np.float32)
    return anchors, deltas, scores, 16 * height, 16 * width


def test_filter_small_boxes_uses_inclusive_sizes():
    boxes = np.array([[0, 0, 15, 15], [0, 0, 14, 30], [0, 0, 30, 14], [5, 5, 40, 20]], dtype=np.float32)
    np.testing.assert_array_equal(filter_small_boxes(boxes, 16), [0, 3])


def test_top_n_non_positive_means_no_cut():
    inds = np.arange(5)
    np.testing.assert_array_equal(top_n(inds, 3), [0, 1, 2])
    np.testing.assert_array_equal(top_n(inds, -1), inds)
    np.testing.assert_array_equal(top_n(inds, 0), inds)


def test_rank_order_descending_stable_or_seeded_random():
    scores = np.array([0.2, 0.9, 0.2, 0.5], dtype=np.float32)
    np.testing.assert_array_equal(rank_order(scores, use_cls=True, seed=3), [1, 3, 0, 2])
    np.testing.assert_array_equal(rank_order(scores, use_cls=False, seed=3),
                                  np.random.default_rng(3).permutation(4))


def test_hand_built_proposals_exact():
    anchors = np.array([[0, 0, 49, 49], [5, 5, 54, 54], [100, 100, 149, 149], [0, 0, 5, 5]], dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.95, 0.99], dtype=np.float32)
    deltas = np.zeros((4, 4), dtype=np.float32)
    # zero deltas decode to (x1, y1, x2 + 1, y2 + 1); the 6×6 box (7×7 decoded) is below min size 16.
    # IoU of the first two decoded boxes: 46² / (2·51² − 46²) = 0.6857.
    boxes, out_scores = generate_proposals(anchors, deltas, scores, 200, 200, 16, 6000, 300, 0.7)
    np.testing.assert_array_equal(boxes, [[100, 100, 150, 150], [0, 0, 50, 50], [5, 5, 55, 55]])
    np.testing.assert_array_equal(out_scores, np.float32([0.95, 0.9, 0.8]))
    boxes, out_scores = generate_proposals(anchors, deltas, scores, 200, 200, 16, 6000, 300, 0.6)
    np.testing.assert_array_equal(boxes, [[100, 100, 150, 150], [0, 0, 50, 50]])
    # post-NMS cut
    boxes, _ = generate_proposals(anchors, deltas, scores, 200, 200, 16, 6000, 1, 0.7)
    np.testing.assert_array_equal(boxes, [[100, 100, 150, 150]])


def test_proposal_invariants():
    anchors, deltas, scores, im_h, im_w = random_rpn_outputs()
    post_n, thresh, min_size = 300, 0.7, 16
    boxes, out_scores = generate_proposals(anchors, deltas, scores, im_h, im_w, min_size, 6000, post_n,
                                           thresh)
    assert boxes.shape == (post_n, 4) and out_scores.shape == (post_n,)
    assert boxes.dtype == np.float32 and out_scores.dtype == np.float32
    assert np.all(boxes[:, [0, 1]] >= 0)
    assert np.all(boxes[:, 2] <= im_w - 1) and np.all(boxes[:, 3] <= im_h - 1)
    assert np.all(boxes[:, 2] - boxes[:, 0] + 1 >= min_size)
    assert np.all(boxes[:, 3] - boxes[:, 1] + 1 >= min_size)
    assert np.all(np.diff(out_scores) <= 0)
    iou = pairwise_iou(boxes.astype(np.float64))
    np.fill_diagonal(iou, 0)
    assert iou.max() <= thresh


def test_pre_nms_top_n_keeps_the_best_scores():
    anchors, deltas, scores, im_h, im_w = random_rpn_outputs()
    # Without NMS and post cut, the pre-NMS cut alone decides: the 10 best of the valid boxes.
    _, out_scores = generate_proposals(anchors, deltas, scores, im_h, im_w, 16, 10, -1, 0.7, use_nms=False)
    _, all_scores = generate_proposals(anchors, deltas, scores, im_h, im_w, 16, -1, -1, 0.7, use_nms=False)
    np.testing.assert_array_equal(out_scores, all_scores[:10])
    np.testing.assert_array_equal(all_scores, np.sort(all_scores)[::-1])


def test_ablation_without_nms_keeps_overlapping_boxes():
    anchors, deltas, scores, im_h, im_w = random_rpn_outputs()
    boxes, out_scores = generate_proposals(anchors, deltas, scores, im_h, im_w, 16, 6000, 300, 0.7,
                                           use_nms=False)
    assert boxes.shape == (300, 4)
    iou = pairwise_iou(boxes.astype(np.float64))
    np.fill_diagonal(iou, 0)
    assert iou.max() > 0.7
    # exactly the 300 best-scoring valid boxes
    _, all_scores = generate_proposals(anchors, deltas, scores, im_h, im_w, 16, -1, -1, 0.7, use_nms=False)
    np.testing.assert_array_equal(out_scores, all_scores[:300])


def test_ablation_without_cls_uses_a_seeded_random_order():
    anchors, deltas, scores, im_h, im_w = random_rpn_outputs()
    decoded = clip_boxes(bbox_transform_inv(anchors.astype(np.float32), deltas), (im_h, im_w))
    valid_scores = scores[filter_small_boxes(decoded, 16)]   # valid boxes in anchor order
    perm = np.random.default_rng(3).permutation(valid_scores.size)
    _, out_scores = generate_proposals(anchors, deltas, scores, im_h, im_w, 16, -1, -1, 0.7,
                                       use_nms=False, use_cls=False, seed=3)
    np.testing.assert_array_equal(out_scores, valid_scores[perm])
    assert not np.all(np.diff(out_scores) <= 0)
    # NMS follows the random order too: the first box is the permutation's first, not the best score.
    boxes, out_scores = generate_proposals(anchors, deltas, scores, im_h, im_w, 16, 6000, 300, 0.7,
                                           use_cls=False, seed=3)
    assert out_scores[0] == valid_scores[perm[0]]
    iou = pairwise_iou(boxes.astype(np.float64))
    np.fill_diagonal(iou, 0)
    assert boxes.shape == (300, 4) and iou.max() <= 0.7


def test_ablation_without_reg_returns_clipped_anchors():
    anchors, deltas, scores, im_h, im_w = random_rpn_outputs()
    boxes, _ = generate_proposals(anchors, deltas, scores, im_h, im_w, 16, 6000, 300, 0.7, use_reg=False)
    clipped = clip_boxes(anchors.astype(np.float32), (im_h, im_w))
    rows = {tuple(row) for row in clipped.tolist()}
    assert all(tuple(row) in rows for row in boxes.tolist())
    with_reg, _ = generate_proposals(anchors, deltas, scores, im_h, im_w, 16, 6000, 300, 0.7)
    assert sum(tuple(row) in rows for row in with_reg.tolist()) == 0


def test_no_surviving_box_falls_back_to_the_whole_image():
    # Every anchor is under min_size 1000, so nothing survives the filter: one whole-image proposal.
    anchors, deltas, scores, height, width = random_rpn_outputs()
    boxes, out_scores = generate_proposals(anchors, deltas, scores, height, width, min_size=1000,
                                           pre_nms_top_n=6000, post_nms_top_n=300, nms_thresh=0.7)
    np.testing.assert_array_equal(boxes, [[0, 0, width - 1, height - 1]])
    np.testing.assert_array_equal(out_scores, [0])
