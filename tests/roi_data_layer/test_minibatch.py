"""Minibatch construction (roi_data_layer.minibatch)."""


import cv2
import numpy as np
import pytest

from fast_rcnn.config import cfg
from roi_data_layer.minibatch import (expand_bbox_targets, get_minibatch, sample_fg_bg_inds,
                                      shuffled_image_order)
from roi_data_layer.roidb import compute_targets
from utils.cython_bbox import bbox_overlaps

NUM_CLASSES = 4


@pytest.fixture
def train_cfg(saved_cfg):
    """cfg.TRAIN (all of cfg restored after the test)."""
    return saved_cfg.TRAIN


def write_image(path, height, width, seed=0):
    """A random BGR uint8 image written losslessly; returns (path, image)."""
    im = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), im)
    return str(path), im


def gt_entry(path, height, width, boxes, classes, flipped=False):
    """A roidb entry holding only gt boxes."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    overlaps = np.zeros((len(boxes), NUM_CLASSES), dtype=np.float32)
    overlaps[np.arange(len(boxes)), classes] = 1.0
    return {'image': path, 'width': width, 'height': height, 'boxes': boxes,
            'gt_classes': np.asarray(classes, dtype=np.int32), 'gt_overlaps': overlaps, 'flipped': flipped,
            'seg_areas': np.zeros(len(boxes), dtype=np.float32)}


def test_sample_fg_bg_inds_thresholds_and_quotas():
    max_overlaps = np.array([0.9, 0.6, 0.5, 0.49, 0.3, 0.1, 0.05, 0.0])
    np.random.seed(3)
    keep, num_fg = sample_fg_bg_inds(max_overlaps, rois_per_image=6, fg_rois_per_image=2, fg_thresh=0.5,
                                     bg_thresh_hi=0.5, bg_thresh_lo=0.1)
    assert num_fg == 2 and keep.size == 5
    assert set(keep[:2]) <= {0, 1, 2} and sorted(keep[2:]) == [3, 4, 5]
    keep, num_fg = sample_fg_bg_inds(max_overlaps, rois_per_image=3, fg_rois_per_image=1, fg_thresh=0.5,
                                     bg_thresh_hi=0.5, bg_thresh_lo=0.0)
    assert num_fg == 1 and keep.size == 3 and keep[0] in (0, 1, 2) and set(keep[1:]) <= {3, 4, 5, 6, 7}


def test_expand_bbox_targets_is_4_of_4k():
    data = np.array([[2, 0.1, 0.2, 0.3, 0.4], [0, 9, 9, 9, 9], [1, -1, -2, -3, -4]], dtype=np.float32)
    targets, inside = expand_bbox_targets(data, 3, (1.0, 0.5, 1.0, 0.5))
    np.testing.assert_array_equal(targets, np.float32([[0, 0, 0, 0, 0, 0, 0, 0, 0.1, 0.2, 0.3, 0.4],
                                                       [0] * 12,
                                                       [0, 0, 0, 0, -1, -2, -3, -4, 0, 0, 0, 0]]))
    np.testing.assert_array_equal(inside, np.float32([[0] * 8 + [1, 0.5, 1, 0.5], [0] * 12,
                                                      [0] * 4 + [1, 0.5, 1, 0.5] + [0] * 4]))


def test_aspect_grouping_pairs_share_orientation():
    widths = [500, 500, 500, 300, 300, 300]    # 3 landscape, 3 portrait
    heights = [300, 300, 300, 500, 500, 500]
    np.random.seed(3)
    order = shuffled_image_order(widths, heights, 2, aspect_grouping=True)
    assert sorted(order.tolist()) == list(range(6))
    landscape = np.array(widths) >= np.array(heights)
    mixed = [pair for pair in order.reshape(3, 2) if landscape[pair[0]] != landscape[pair[1]]]
    assert len(mixed) == 1                     # the seam between the orientations, as released
    np.random.seed(3)
    np.testing.assert_array_equal(shuffled_image_order(widths, heights, 2, aspect_grouping=True), order)


def test_aspect_grouping_keeps_the_incomplete_group_last():
    widths, heights = [500, 300, 500, 300, 500], [300, 500, 300, 500, 300]
    np.random.seed(0)
    order = shuffled_image_order(widths, heights, 2, aspect_grouping=True)
    # landscape 0, 2, 4 then portrait 1, 3: groups of two, then the leftover portrait image
    assert sorted(order.tolist()) == list(range(5)) and order[-1] in (1, 3)
    np.random.seed(0)
    np.testing.assert_array_equal(shuffled_image_order(widths, heights, 2, aspect_grouping=False),
                                  np.random.RandomState(0).permutation(5))


def test_rpn_minibatch_scales_short_side_to_600(train_cfg, tmp_path):
    train_cfg.HAS_RPN = True
    path, _ = write_image(tmp_path / 'a.png', 375, 500)
    entry = gt_entry(path, 375, 500, [[10, 20, 109, 199], [0, 0, 499, 374]], [2, 1])
    blobs = get_minibatch([entry], NUM_CLASSES)
    assert sorted(blobs) == ['data', 'gt_boxes', 'im_info']
    assert blobs['data'].shape == (1, 3, 600, 800) and blobs['data'].dtype == np.float32
    np.testing.assert_allclose(blobs['im_info'], [[600, 800, 1.6]], rtol=1e-7)
    np.testing.assert_allclose(blobs['gt_boxes'], [[16, 32, 174.4, 318.4, 2], [0, 0, 798.4, 598.4, 1]],
                               rtol=1e-6)


def test_rpn_minibatch_long_side_capped_by_max_size(train_cfg, tmp_path):
    train_cfg.HAS_RPN = True
    path, _ = write_image(tmp_path / 'wide.png', 100, 1000)
    blobs = get_minibatch([gt_entry(path, 100, 1000, [[0, 0, 9, 9]], [3])], NUM_CLASSES)
    # 600/100 = 6 would make the long side 6000 > 1000: scale 1000/1000 = 1
    assert blobs['data'].shape == (1, 3, 100, 1000)
    np.testing.assert_array_equal(blobs['im_info'], [[100, 1000, 1.0]])


def test_rpn_minibatch_flips_and_subtracts_the_mean(train_cfg, tmp_path):
    train_cfg.HAS_RPN = True
    path, im = write_image(tmp_path / 'b.png', 600, 800)   # scale exactly 1: no resampling
    blobs = get_minibatch([gt_entry(path, 600, 800, [[0, 0, 9, 9]], [1], flipped=True)], NUM_CLASSES)
    expected = im[:, ::-1, :].astype(np.float32)
    expected -= cfg.PIXEL_MEANS
    np.testing.assert_array_equal(blobs['data'][0], expected.transpose(2, 0, 1))


def test_rpn_minibatch_image_without_objects(train_cfg, tmp_path):
    train_cfg.HAS_RPN = True
    path, _ = write_image(tmp_path / 'c.png', 600, 800)
    entry = gt_entry(path, 600, 800, np.zeros((0, 4)), np.zeros(0, dtype=int))
    blobs = get_minibatch([entry], NUM_CLASSES)
    assert blobs['gt_boxes'].shape == (0, 5) and blobs['gt_boxes'].dtype == np.float32


def proposal_entry(path, seed, num_near=0):
    """A 375×500 entry: gt boxes (class 1 and 3), 300 random proposals and ``num_near`` proposals shifted
    ≤ 10 px from the first gt (all IoU ≥ 0.5), with max_* and bbox targets."""
    gt = np.array([[50, 50, 199, 199], [250, 100, 449, 299]], dtype=np.float32)
    gt_classes = np.array([1, 3])
    rng = np.random.default_rng(seed)
    x1y1 = rng.uniform(0, 300, size=(300, 2))
    props = np.hstack([x1y1, x1y1 + rng.uniform(40, 200, size=(300, 2))]).astype(np.float32)
    props = np.vstack([props, gt[0] + rng.uniform(-10, 10, size=(num_near, 4))]).astype(np.float32)
    props[:, 2] = np.minimum(props[:, 2], 499)
    props[:, 3] = np.minimum(props[:, 3], 374)
    boxes = np.vstack([gt, props])
    iou = bbox_overlaps(boxes.astype(np.float64), gt.astype(np.float64))
    overlaps = np.zeros((len(boxes), NUM_CLASSES), dtype=np.float32)
    for j, cls in enumerate(gt_classes):
        overlaps[:, cls] = np.maximum(overlaps[:, cls], iou[:, j])
    entry = {'image': path, 'width': 500, 'height': 375, 'boxes': boxes, 'flipped': False,
             'gt_classes': np.concatenate([gt_classes, np.zeros(len(props), dtype=int)]).astype(np.int32),
             'gt_overlaps': overlaps, 'max_overlaps': overlaps.max(axis=1),
             'max_classes': overlaps.argmax(axis=1)}
    entry['bbox_targets'] = compute_targets(boxes, entry['max_overlaps'], entry['max_classes'], 0.5)
    return entry


def test_fast_rcnn_minibatch_two_images(train_cfg, tmp_path):
    # image 0 has 12 foreground candidates (all taken), image 1 has 14 + 40 (capped at 16)
    roidb = [proposal_entry(write_image(tmp_path / f'{i}.png', 375, 500, seed=i)[0], seed=i, num_near=40 * i)
             for i in range(2)]
    assert [int(np.sum(entry['max_overlaps'] >= 0.5)) for entry in roidb] == [12, 54]
    np.random.seed(3)
    blobs = get_minibatch(roidb, NUM_CLASSES)
    assert sorted(blobs) == ['bbox_inside_weights', 'bbox_outside_weights', 'bbox_targets', 'data',
                             'labels', 'rois']
    assert blobs['data'].shape == (2, 3, 600, 800)
    rois, labels = blobs['rois'], blobs['labels']
    assert rois.shape == (128, 5) and labels.shape == (128,)
    assert blobs['bbox_targets'].shape == (128, 4 * NUM_CLASSES)
    for im_i in range(2):
        mine = rois[:, 0] == im_i
        assert np.sum(mine) == 64 and np.sum(labels[mine] > 0) == [12, 16][im_i]
    # RoIs are scaled by 1.6 into the blob's frame: every blob RoI is a scaled roidb box
    scaled = {tuple(np.float32(b * 1.6).tolist()) for b in roidb[0]['boxes']}
    assert all(tuple(r[1:].tolist()) in scaled for r in rois[rois[:, 0] == 0])
    np.testing.assert_array_equal(blobs['bbox_outside_weights'],
                                  (blobs['bbox_inside_weights'] > 0).astype(np.float32))
    fg_rows = np.where(labels > 0)[0]
    for row in fg_rows:
        cls = int(labels[row])
        np.testing.assert_array_equal(np.flatnonzero(blobs['bbox_inside_weights'][row]),
                                      np.arange(4 * cls, 4 * cls + 4))


def test_fast_rcnn_minibatch_without_bbox_reg_has_no_target_blobs(train_cfg, tmp_path):
    train_cfg.BBOX_REG = False
    roidb = [proposal_entry(write_image(tmp_path / f'{i}.png', 375, 500, seed=i)[0], seed=i)
             for i in range(2)]
    assert sorted(get_minibatch(roidb, NUM_CLASSES)) == ['data', 'labels', 'rois']
