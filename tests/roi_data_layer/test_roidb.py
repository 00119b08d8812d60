"""Roidb preparation and bbox-regression targets (roi_data_layer.roidb)."""


import numpy as np
import pytest

from roi_data_layer.roidb import (add_bbox_regression_targets, class_target_stats, compute_targets,
                                  prepare_roidb)


class FakeImdb:
    """The parts of the imdb interface prepare_roidb uses."""

    def __init__(self, roidb, num_classes):
        self.roidb = roidb
        self.num_classes = num_classes

    def image_path_at(self, i):
        return f'/images/{i}.jpg'

    def image_size_at(self, i):
        return 500 + i, 375 + i


def entry(boxes, overlaps):
    return {'boxes': np.asarray(boxes, dtype=np.float32),
            'gt_overlaps': np.asarray(overlaps, dtype=np.float32)}


def test_prepare_roidb_adds_max_classes_overlaps_and_missing_image_info():
    first = entry([[0, 0, 9, 9], [0, 0, 9, 11], [50, 50, 60, 60]],
                  [[0, 1, 0], [0, 0.8333, 0], [0, 0, 0]])
    second = dict(entry(np.zeros((0, 4)), np.zeros((0, 3))), image='/given.jpg', width=7, height=5)
    imdb = FakeImdb([first, second], 3)
    prepare_roidb(imdb)
    assert first['image'] == '/images/0.jpg' and (first['width'], first['height']) == (500, 375)
    assert second['image'] == '/given.jpg' and (second['width'], second['height']) == (7, 5)
    np.testing.assert_array_equal(first['max_classes'], [1, 1, 0])
    np.testing.assert_array_equal(first['max_overlaps'], np.float32([1, 0.8333, 0]))
    assert second['max_classes'].shape == (0,) and second['max_overlaps'].shape == (0,)


def test_prepare_roidb_rejects_inconsistent_entries():
    with pytest.raises(ValueError, match='gt_overlaps has shape'):
        prepare_roidb(FakeImdb([entry([[0, 0, 9, 9]], [[0, 1]])], 3))
    # an overlapping RoI whose best class is background
    with pytest.raises(ValueError, match='disagree'):
        prepare_roidb(FakeImdb([entry([[0, 0, 9, 9]], [[0.5, 0, 0]])], 3))


def test_compute_targets_hand_computed():
    # gt (0,0,9,9) class 2; RoI (0,0,9,11): IoU 100/120, w 10, h 12 -> dy = (5 − 6)/12, dh = log(10/12).
    # RoI (30,30,39,39) overlaps nothing -> no target.
    rois = np.array([[0, 0, 9, 9], [0, 0, 9, 11], [30, 30, 39, 39]], dtype=np.float32)
    max_overlaps = np.array([1.0, 100 / 120, 0.0], dtype=np.float32)
    targets = compute_targets(rois, max_overlaps, np.array([2, 2, 0]), 0.5)
    np.testing.assert_allclose(targets, [[2, 0, 0, 0, 0], [2, 0, -1 / 12, 0, np.log(10 / 12)],
                                         [0, 0, 0, 0, 0]], rtol=1e-6, atol=1e-7)
    assert targets.dtype == np.float32
    # below BBOX_THRESH: no target
    assert not compute_targets(rois, np.array([1.0, 100 / 120, 0.0]), np.array([2, 2, 0]), 0.9)[1].any()
    # no gt box in the image
    assert not compute_targets(rois, np.array([0.6, 0.6, 0.0]), np.array([2, 2, 0]), 0.5).any()


def test_class_target_stats_exact():
    targets = [np.array([[1, 0, 0, 0, 0], [1, 0, -1 / 12, 0, np.log(10 / 12)], [0, 5, 5, 5, 5]]),
               np.array([[2, 0.5, 0.5, 0.5, 0.5]])]
    means, stds = class_target_stats(targets, 3)
    np.testing.assert_allclose(means, [[0, 0, 0, 0], [0, -1 / 24, 0, np.log(10 / 12) / 2], [0.5] * 4],
                               rtol=1e-12, atol=1e-15)
    # zero spreads (background, constant dx/dw, the single class-2 example) become 1
    np.testing.assert_allclose(stds, [[1, 1, 1, 1], [1, 1 / 24, 1, -np.log(10 / 12) / 2], [1, 1, 1, 1]],
                               rtol=1e-9)


def prepared_roidb():
    first = entry([[0, 0, 9, 9], [0, 0, 9, 11], [30, 30, 39, 39]], [[0, 1, 0], [0, 100 / 120, 0], [0, 0, 0]])
    roidb = [first]
    prepare_roidb(FakeImdb(roidb, 3))
    return roidb


def test_add_bbox_regression_targets_with_roidb_statistics():
    roidb = prepared_roidb()
    means, stds = add_bbox_regression_targets(roidb, 0.5, normalize=True)
    assert means.shape == stds.shape == (3, 4)
    np.testing.assert_allclose(means[1], [0, -1 / 24, 0, np.log(10 / 12) / 2], rtol=1e-6)
    # two examples per coordinate, symmetric about the mean: normalised to −1 and +1 (or 0 where std = 1)
    np.testing.assert_allclose(roidb[0]['bbox_targets'],
                               [[1, 0, 1, 0, 1], [1, 0, -1, 0, -1], [0, 0, 0, 0, 0]], rtol=1e-5, atol=1e-6)


def test_add_bbox_regression_targets_precomputed():
    roidb = prepared_roidb()
    means, stds = add_bbox_regression_targets(roidb, 0.5, normalize=True,
                                              precomputed=((0.0, 0.0, 0.0, 0.0), (0.1, 0.1, 0.2, 0.2)))
    np.testing.assert_array_equal(means, np.zeros((3, 4)))
    np.testing.assert_array_equal(stds, np.tile([0.1, 0.1, 0.2, 0.2], (3, 1)))
    np.testing.assert_allclose(roidb[0]['bbox_targets'][1], [1, 0, -1 / 12 / 0.1, 0, np.log(10 / 12) / 0.2],
                               rtol=1e-6)


def test_add_bbox_regression_targets_unnormalised():
    roidb = prepared_roidb()
    # nothing to fold into bbox_pred: None, not statistics of targets that were never normalised
    assert add_bbox_regression_targets(roidb, 0.5, normalize=False) is None
    np.testing.assert_allclose(roidb[0]['bbox_targets'][1], [1, 0, -1 / 12, 0, np.log(10 / 12)], rtol=1e-6)
