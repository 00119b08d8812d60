"""utils.cython_bbox.bbox_overlaps: pixel-inclusive IoU, exact values and degenerate boxes."""

import numpy as np
import pytest

from utils.cython_bbox import bbox_overlaps


def reference_overlaps(boxes, query):
    """Plain-numpy IoU, N×4 vs K×4 float64 → N×K, in the extension's operation order."""
    b = boxes[:, None, :]
    q = query[None, :, :]
    iw = np.minimum(b[..., 2], q[..., 2]) - np.maximum(b[..., 0], q[..., 0]) + 1
    ih = np.minimum(b[..., 3], q[..., 3]) - np.maximum(b[..., 1], q[..., 1]) + 1
    box_area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    query_area = (query[:, 2] - query[:, 0] + 1) * (query[:, 3] - query[:, 1] + 1)
    inter = iw * ih
    overlap = (iw > 0) & (ih > 0)
    union = box_area[:, None] + query_area[None, :] - inter
    out = np.zeros(inter.shape)
    out[overlap] = inter[overlap] / union[overlap]
    return out


def random_boxes(rng, n, fractional):
    """n×4 float64 boxes in a 200×200 area; widths/heights −3..60 so some are degenerate."""
    xy = rng.integers(0, 200, size=(n, 2)).astype(np.float64)
    wh = rng.integers(-3, 60, size=(n, 2)).astype(np.float64)
    if fractional:
        xy += rng.random((n, 2))
        wh += rng.random((n, 2))
    return np.hstack([xy, xy + wh - 1])


def iou(a, b):
    """Scalar IoU of two single boxes through the extension."""
    return bbox_overlaps(np.array([a], dtype=np.float64), np.array([b], dtype=np.float64))[0, 0]


def test_half_overlapping_squares_give_25_over_175():
    # 10×10 boxes sharing a 5×5 corner: 25 / (100 + 100 − 25).
    assert iou([0, 0, 9, 9], [5, 5, 14, 14]) == 25.0 / 175.0


def test_identical_boxes_give_exactly_one():
    assert iou([3, 4, 20, 11], [3, 4, 20, 11]) == 1.0


def test_adjacent_boxes_do_not_overlap():
    # x2 = 9 and x1 = 10: iw = 9 − 10 + 1 = 0.
    assert iou([0, 0, 9, 9], [10, 0, 19, 9]) == 0.0


def test_shared_edge_column_overlaps_by_one_pixel():
    # x2 = 9 and x1 = 9 share pixel column 9 (+1 convention): inter 1×10, union 190.
    assert iou([0, 0, 9, 9], [9, 0, 18, 9]) == 10.0 / 190.0


def test_full_matrix_layout_n_by_k():
    boxes = np.array([[0, 0, 9, 9], [0, 0, 19, 9], [100, 100, 109, 109]], dtype=np.float64)
    query = np.array([[0, 0, 9, 9], [5, 5, 14, 14]], dtype=np.float64)
    out = bbox_overlaps(boxes, query)
    assert out.dtype == np.float64 and out.shape == (3, 2)
    # Row 1 (20×10) vs query 1: inter x 5..14 × y 5..9 = 50, union 200 + 100 − 50 = 250.
    expected = np.array([[1.0, 25 / 175], [100 / 200, 50 / 250], [0.0, 0.0]])
    np.testing.assert_array_equal(out, expected)


def test_single_pixel_box():
    # x2 = x1 is one pixel wide, a valid box of area 1.
    assert iou([3, 3, 3, 3], [3, 3, 3, 3]) == 1.0
    assert iou([3, 3, 3, 3], [0, 0, 9, 9]) == 1.0 / 100.0


@pytest.mark.parametrize('degenerate', [
    [5, 5, 4, 9],   # width 0
    [5, 5, 2, 9],   # width −2
    [5, 5, 9, 3],   # height −1
    [5, 5, 2, 1],   # both negative: area (−2)·(−3) = +6 must still not count
])
def test_degenerate_boxes_overlap_nothing_not_even_themselves(degenerate):
    others = np.array([degenerate, [0, 0, 9, 9], [4, 4, 6, 6]], dtype=np.float64)
    out = bbox_overlaps(np.array([degenerate], dtype=np.float64), others)
    np.testing.assert_array_equal(out, np.zeros((1, 3)))
    np.testing.assert_array_equal(bbox_overlaps(others, others[:1]), np.zeros((3, 1)))


def test_extra_columns_are_ignored():
    # gt boxes are often passed as [x1, y1, x2, y2, cls].
    gt = np.array([[5, 5, 14, 14, 7]], dtype=np.float64)
    assert bbox_overlaps(np.array([[0, 0, 9, 9]], dtype=np.float64), gt)[0, 0] == 25.0 / 175.0


def test_float32_input_is_computed_in_float64():
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 20, fractional=True).astype(np.float32)
    np.testing.assert_array_equal(bbox_overlaps(boxes, boxes),
                                  reference_overlaps(boxes.astype(np.float64),
                                                     boxes.astype(np.float64)))


@pytest.mark.parametrize('n,k', [(0, 3), (3, 0), (0, 0)])
def test_empty_inputs_give_empty_matrix(n, k):
    out = bbox_overlaps(np.zeros((n, 4)), np.zeros((k, 4)))
    assert out.shape == (n, k) and out.dtype == np.float64


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_coordinates_raise(bad):
    with pytest.raises(ValueError, match='non-finite'):
        bbox_overlaps(np.array([[0, 0, bad, 9]]), np.array([[0, 0, 9, 9]], dtype=np.float64))
    with pytest.raises(ValueError, match='query_boxes contains non-finite'):
        bbox_overlaps(np.array([[0, 0, 9, 9]], dtype=np.float64), np.array([[0, bad, 9, 9]]))


@pytest.mark.parametrize('shape', [(4,), (3, 3), (2, 4, 1)])
def test_wrong_shape_raises(shape):
    with pytest.raises(ValueError, match='boxes must be an M x 4'):
        bbox_overlaps(np.zeros(shape), np.zeros((1, 4)))


@pytest.mark.parametrize('seed,fractional', [(0, False), (1, False), (2, True), (3, True)])
def test_random_boxes_match_numpy_reference_exactly(seed, fractional):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 150, fractional)
    query = random_boxes(rng, 40, fractional)
    out = bbox_overlaps(boxes, query)
    expected = reference_overlaps(boxes, query)
    np.testing.assert_array_equal(out, expected)
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    # The sample must exercise both overlapping and degenerate pairs to mean anything.
    assert (out > 0).sum() > 100
    assert ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).sum() > 5


def test_overlaps_are_symmetric():
    rng = np.random.default_rng(7)
    a = random_boxes(rng, 60, fractional=True)
    b = random_boxes(rng, 25, fractional=True)
    np.testing.assert_array_equal(bbox_overlaps(a, b), bbox_overlaps(b, a).T)
