"""Box regression encode/decode and clipping (fast_rcnn.bbox_transform)."""

import numpy as np

from fast_rcnn.bbox_transform import BBOX_XFORM_CLIP, bbox_transform, bbox_transform_inv, clip_boxes


def test_bbox_transform_hand_computed():
    # ex: w = h = 10, centre (5, 5). gt: w = 20, h = 10, centre (15, 10).
    ex = np.array([[0, 0, 9, 9]], dtype=np.float64)
    gt = np.array([[5, 5, 24, 14]], dtype=np.float64)
    np.testing.assert_allclose(bbox_transform(ex, gt), [[1.0, 0.5, np.log(2.0), 0.0]], rtol=0, atol=1e-15)


def test_bbox_transform_inv_hand_computed_has_no_minus_one():
    boxes = np.array([[0, 0, 9, 9]], dtype=np.float64)
    deltas = np.array([[1.0, 0.5, np.log(2.0), 0.0]])
    # centre (15, 10), size 20×10 -> x2 = 15 + 10 = 25 (released: no −1), y2 = 10 + 5 = 15.
    np.testing.assert_allclose(bbox_transform_inv(boxes, deltas), [[5, 5, 25, 15]], rtol=0, atol=1e-12)


def test_transform_then_inverse_round_trips_up_to_the_released_plus_one():
    rng = np.random.default_rng(0)
    x1y1 = rng.uniform(0, 300, size=(50, 2))
    ex = np.hstack([x1y1, x1y1 + rng.uniform(5, 200, size=(50, 2))])
    x1y1 = rng.uniform(0, 300, size=(50, 2))
    gt = np.hstack([x1y1, x1y1 + rng.uniform(5, 200, size=(50, 2))])
    decoded = bbox_transform_inv(ex, bbox_transform(ex, gt))
    np.testing.assert_allclose(decoded[:, :2], gt[:, :2], rtol=0, atol=1e-9)
    np.testing.assert_allclose(decoded[:, 2:], gt[:, 2:] + 1, rtol=0, atol=1e-9)


def test_inverse_decodes_every_class_column_group():
    boxes = np.array([[0, 0, 9, 9], [10, 20, 29, 29]], dtype=np.float32)
    deltas = np.zeros((2, 8), dtype=np.float32)
    deltas[:, 4] = 1.0            # class 1: shift x by one width
    deltas[1, 7] = np.log(2.0)    # class 1, box 1: double the height
    out = bbox_transform_inv(boxes, deltas)
    assert out.dtype == np.float32 and out.shape == (2, 8)
    np.testing.assert_allclose(out, [[0, 0, 10, 10, 10, 0, 20, 10],
                                     [10, 20, 30, 30, 30, 15, 50, 35]], rtol=0, atol=1e-5)


def test_inverse_clamps_the_log_scale():
    boxes = np.array([[0, 0, 9, 9]], dtype=np.float64)
    out = bbox_transform_inv(boxes, np.array([[0, 0, 100.0, -100.0]]))
    half_w = 0.5 * 10 * np.exp(BBOX_XFORM_CLIP)   # exp(clip) = 62.5 -> width 625
    assert np.isclose(half_w, 312.5)
    np.testing.assert_allclose(out, [[5 - half_w, 5 - 0.5 * 10 * np.exp(-100.0), 5 + half_w,
                                      5 + 0.5 * 10 * np.exp(-100.0)]], rtol=1e-12)


def test_inverse_of_no_boxes_keeps_the_column_count():
    out = bbox_transform_inv(np.zeros((0, 4)), np.zeros((0, 12), dtype=np.float32))
    assert out.shape == (0, 12) and out.dtype == np.float32


def test_clip_boxes_to_image_on_all_columns():
    boxes = np.array([[-5, -3, 120, 40, 10, 60, 99, 49]], dtype=np.float64)
    original = boxes.copy()
    clipped = clip_boxes(boxes, (50, 100, 3))   # H = 50, W = 100
    np.testing.assert_array_equal(clipped, [[0, 0, 99, 40, 10, 49, 99, 49]])
    np.testing.assert_array_equal(boxes, original)
