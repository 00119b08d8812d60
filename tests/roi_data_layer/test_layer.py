"""RoIDataLayer inside a real pycaffe net (CPU): blobs, epoch order and resumable state."""


import cv2
import numpy as np
import pytest

caffe = pytest.importorskip('caffe')

from fast_rcnn.config import cfg  # noqa: E402
from roi_data_layer.roidb import compute_targets  # noqa: E402

NUM_CLASSES = 4
RPN_NET = """
name: 'data'
layer { name: 'input-data' type: 'Python' top: 'data' top: 'im_info' top: 'gt_boxes'
  python_param { module: 'roi_data_layer.layer' layer: 'RoIDataLayer' param_str: "'num_classes': 4" } }
"""
FAST_RCNN_NET = """
name: 'data'
layer { name: 'data' type: 'Python' top: 'data' top: 'rois' top: 'labels' top: 'bbox_targets'
  top: 'bbox_inside_weights' top: 'bbox_outside_weights'
  python_param { module: 'roi_data_layer.layer' layer: 'RoIDataLayer' param_str: "'num_classes': 4" } }
"""
# (height, width) of the test images: their im_info identifies them in the blobs
SIZES = [(375, 500), (500, 375), (300, 400), (600, 600), (450, 300)]


def make_roidb(tmp_path):
    """One entry per SIZES image: a gt box of class 1 + i % 3 and a proposal overlapping it at IoU 0.81."""
    roidb = []
    for i, (height, width) in enumerate(SIZES):
        path = str(tmp_path / f'{i}.png')
        cv2.imwrite(path, np.full((height, width, 3), 10 * i, dtype=np.uint8))
        boxes = np.array([[10, 10, 109, 109], [10, 10, 109, 129]], dtype=np.float32)
        overlaps = np.zeros((2, NUM_CLASSES), dtype=np.float32)
        overlaps[:, 1 + i % 3] = [1.0, 10000 / 12000]
        entry = {'image': path, 'width': width, 'height': height, 'boxes': boxes, 'flipped': False,
                 'gt_classes': np.array([1 + i % 3, 0], dtype=np.int32), 'gt_overlaps': overlaps,
                 'max_overlaps': overlaps.max(axis=1), 'max_classes': overlaps.argmax(axis=1)}
        entry['bbox_targets'] = compute_targets(boxes, entry['max_overlaps'], entry['max_classes'], 0.5)
        roidb.append(entry)
    return roidb


def make_net(tmp_path, text):
    caffe.set_mode_cpu()
    path = tmp_path / 'data.prototxt'
    path.write_text(text, encoding='utf-8')
    return caffe.Net(str(path), caffe.TRAIN)


def image_of(net):
    """Which SIZES image the net's current RPN minibatch holds (by the first pixel, 10·i − mean)."""
    return int(round((net.blobs['data'].data[0, 0, 0, 0] + cfg.PIXEL_MEANS[0, 0, 0]) / 10))


def test_rpn_mode_blobs(saved_cfg, tmp_path):
    cfg.TRAIN.HAS_RPN = True
    net = make_net(tmp_path, RPN_NET)
    np.random.seed(cfg.RNG_SEED)
    net.layers[0].set_roidb(make_roidb(tmp_path))
    seen = []
    for _ in range(len(SIZES)):
        net.forward()
        i = image_of(net)
        seen.append(i)
        height, width = SIZES[i]
        scale = 600 / min(height, width)
        assert net.blobs['data'].data.shape == (1, 3, round(height * scale), round(width * scale))
        np.testing.assert_allclose(net.blobs['im_info'].data, [[round(height * scale), round(width * scale),
                                                                 scale]], rtol=1e-6)
        np.testing.assert_allclose(net.blobs['gt_boxes'].data,
                                   [[10 * scale, 10 * scale, 109 * scale, 109 * scale, 1 + i % 3]], rtol=1e-6)
    # one epoch visits every image once
    assert sorted(seen) == list(range(len(SIZES)))


def test_state_round_trip_resumes_the_data_order(saved_cfg, tmp_path):
    cfg.TRAIN.HAS_RPN = True
    net = make_net(tmp_path, RPN_NET)
    layer = net.layers[0]
    np.random.seed(cfg.RNG_SEED)
    layer.set_roidb(make_roidb(tmp_path))
    for _ in range(3):
        net.forward()
    path = tmp_path / 'state.npz'
    np.savez(path, **layer.get_state())
    # crosses the epoch boundary (5 images): a reshuffle happens in between
    continued = []
    for _ in range(6):
        net.forward()
        continued.append(image_of(net))

    resumed_net = make_net(tmp_path, RPN_NET)
    resumed = resumed_net.layers[0]
    resumed.set_roidb(make_roidb(tmp_path))
    np.random.seed(12345)                      # whatever the RNG was, set_state restores it
    with np.load(path) as state:
        resumed.set_state(dict(state))
    replayed = []
    for _ in range(6):
        resumed_net.forward()
        replayed.append(image_of(resumed_net))
    assert replayed == continued


def scaled_size(i):
    """(height, width) of SIZES image i after scaling its short side to 600 (no image hits MAX_SIZE)."""
    height, width = SIZES[i]
    scale = 600 / min(height, width)
    return round(height * scale), round(width * scale)


def test_fast_rcnn_mode_blobs(saved_cfg, tmp_path):
    net = make_net(tmp_path, FAST_RCNN_NET)
    np.random.seed(cfg.RNG_SEED)
    net.layers[0].set_roidb(make_roidb(tmp_path))
    seen = []
    for _ in range(2):   # 5 images, 2 per batch: an epoch has 2 batches
        net.forward()
        data = net.blobs['data'].data
        pair = [int(round((data[b, 0, 0, 0] + cfg.PIXEL_MEANS[0, 0, 0]) / 10)) for b in range(2)]
        seen += pair
        sizes = np.array([scaled_size(i) for i in pair])
        assert data.shape == (2, 3, sizes[:, 0].max(), sizes[:, 1].max())
        rois, labels = net.blobs['rois'].data, net.blobs['labels'].data
        # per image: its gt box and the proposal (both foreground at IoU >= 0.5); no background candidate
        assert rois.shape == (4, 5) and rois[:, 0].tolist() == [0, 0, 1, 1]
        np.testing.assert_array_equal(np.sort(labels), np.sort([1 + pair[0] % 3] * 2 + [1 + pair[1] % 3] * 2))
        assert net.blobs['bbox_targets'].data.shape == (4, 4 * NUM_CLASSES)
        np.testing.assert_array_equal(net.blobs['bbox_outside_weights'].data,
                                      net.blobs['bbox_inside_weights'].data > 0)
        assert np.count_nonzero(net.blobs['bbox_inside_weights'].data) == 16
    assert len(set(seen)) == 4
