"""fast_rcnn.test: post-processing counts, the detections file, test_net on a stubbed forward, and
im_detect on a real TINY net (blob scale, shapes, decoding)."""

import os.path as osp

import cv2
import numpy as np
import pytest

from fast_rcnn import test as frt
from fast_rcnn.config import cfg

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


@pytest.fixture(autouse=True)
def cpu_mode(monkeypatch):
    """CPU mode, as the tools set it with --cpu (NMS then runs on the CPU)."""
    monkeypatch.setitem(cfg, 'GPU_ID', -1)


def _boxes_for_classes(boxes, num_classes):
    """R×4 boxes repeated for every class: R×4K."""
    return np.tile(np.asarray(boxes, dtype=np.float64), (1, num_classes))


def test_postprocess_threshold_is_strict_and_background_is_empty():
    scores = np.array([[0.5, 0.05, 0.2],
                       [0.5, 0.06, 0.0]])
    boxes = _boxes_for_classes([[0, 0, 10, 10], [100, 100, 120, 120]], 3)
    dets = frt.postprocess_detections(scores, boxes, thresh=0.05, nms_thresh=0.3, max_per_image=100)
    assert [d.shape for d in dets] == [(0, 5), (1, 5), (1, 5)]
    np.testing.assert_array_equal(dets[1], np.array([[100, 100, 120, 120, 0.06]], dtype=np.float32))
    np.testing.assert_array_equal(dets[2], np.array([[0, 0, 10, 10, 0.2]], dtype=np.float32))
    assert all(d.dtype == np.float32 for d in dets)


def test_postprocess_nms_per_class():
    # Boxes 0 and 1 overlap with IoU 110/121 > 0.3; box 2 is disjoint. NMS never crosses classes.
    boxes = _boxes_for_classes([[0, 0, 10, 10], [0, 0, 9, 10], [50, 50, 60, 60]], 3)
    scores = np.array([[0.1, 0.9, 0.8],
                       [0.1, 0.8, 0.9],
                       [0.1, 0.7, 0.7]])
    dets = frt.postprocess_detections(scores, boxes, thresh=0.05, nms_thresh=0.3, max_per_image=100)
    np.testing.assert_array_equal(dets[1][:, 4], np.float32([0.9, 0.7]))
    np.testing.assert_array_equal(dets[1][:, :4], np.float32([[0, 0, 10, 10], [50, 50, 60, 60]]))
    np.testing.assert_array_equal(dets[2][:, 4], np.float32([0.9, 0.7]))
    np.testing.assert_array_equal(dets[2][:, :4], np.float32([[0, 0, 9, 10], [50, 50, 60, 60]]))
    # A looser threshold keeps the overlapping pair (IoU 0.909 is not > 0.95).
    dets = frt.postprocess_detections(scores, boxes, thresh=0.05, nms_thresh=0.95, max_per_image=100)
    assert len(dets[1]) == 3 and len(dets[2]) == 3


def test_postprocess_max_per_image_over_all_classes():
    rng = np.random.default_rng(0)
    num_rois, num_classes = 60, 4
    # Disjoint boxes: NMS keeps everything, so only the cap removes detections.
    x = np.arange(num_rois, dtype=np.float64)[:, None] * 20
    boxes = _boxes_for_classes(np.hstack([x, x, x + 9, x + 9]), num_classes)
    scores = rng.uniform(0.1, 1.0, size=(num_rois, num_classes))
    dets = frt.postprocess_detections(scores, boxes, thresh=0.05, nms_thresh=0.3, max_per_image=25)
    kept = np.concatenate([d[:, 4] for d in dets[1:]])
    assert len(kept) == 25
    expected = np.sort(scores[:, 1:].astype(np.float32).ravel())[::-1][:25]
    np.testing.assert_array_equal(np.sort(kept)[::-1], expected)
    # Ties at the cut: exactly the cap, lower class index first.
    scores = np.full((num_rois, num_classes), 0.5)
    dets = frt.postprocess_detections(scores, boxes, thresh=0.05, nms_thresh=0.3, max_per_image=100)
    assert [len(d) for d in dets] == [0, 60, 40, 0]


def test_detections_file_round_trip(tmp_path):
    all_boxes = [[np.zeros((0, 5), np.float32)] * 2,
                 [np.float32([[1, 2, 3, 4, 0.5]]), np.zeros((0, 5), np.float32)],
                 [np.float32([[5, 6, 7, 8, 0.25], [9, 9, 19, 19, 0.125]]), np.float32([[0, 0, 1, 1, 1.0]])]]
    path = tmp_path / 'dets.npz'
    frt.save_detections(path, all_boxes, ['a', 'b'])
    loaded, image_index = frt.load_detections(path)
    assert image_index == ['a', 'b']
    for j in range(3):
        for i in range(2):
            np.testing.assert_array_equal(loaded[j][i], all_boxes[j][i])


class _StubImdb:
    """Just what test_net uses of an imdb; evaluate_detections records its input."""

    def __init__(self, image_paths):
        self.name = 'stub_imdb'
        self.classes = ('__background__', 'a', 'b')
        self.num_classes = 3
        self.image_index = [f'im{i}' for i in range(len(image_paths))]
        self.num_images = len(image_paths)
        self._paths = image_paths
        self.evaluated = None
        self.checked = False

    def image_path_at(self, i):
        return self._paths[i]

    def gt_roidb(self):
        """test_net parses the annotations (training rules) before any detection."""
        self.checked = True
        return []

    def evaluate_detections(self, all_boxes, output_dir):
        self.evaluated = (all_boxes, output_dir)
        return 0.75


class _StubNet:
    name = 'stub_net'


def test_test_net_post_processing_on_a_stubbed_forward(tmp_path, monkeypatch):
    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f'{i}.png'))
        cv2.imwrite(paths[-1], np.zeros((20, 30, 3), np.uint8))
    # 3 RoIs: class a scores (0.9, 0.04, 0.6) with RoIs 0 and 1 overlapping; class b (0.3, 0.3, 0.06).
    boxes = _boxes_for_classes([[0, 0, 10, 10], [1, 0, 10, 10], [15, 5, 25, 15]], 3)
    scores = np.array([[0.0, 0.9, 0.3], [0.0, 0.04, 0.3], [0.0, 0.6, 0.06]])
    calls = []

    def fake_im_detect(net, im, boxes_in=None, timers=None, settings=None):
        calls.append(im.shape)
        return scores, boxes

    monkeypatch.setattr(frt, 'im_detect', fake_im_detect)
    monkeypatch.setitem(cfg, 'ROOT_DIR', str(tmp_path))
    monkeypatch.setitem(cfg.TEST, 'HAS_RPN', True)
    imdb = _StubImdb(paths)
    all_boxes, mean_ap = frt.test_net(_StubNet(), imdb, max_per_image=3, thresh=0.05)
    assert mean_ap == 0.75 and calls == [(20, 30, 3)] * 2 and imdb.checked
    # Class a: RoI 1 is under the threshold, 0 and 2 survive NMS; class b: RoIs 0, 1 overlap (one kept)
    # and RoI 2 passes; the cap of 3 then drops the lowest (class b, 0.06).
    for i in range(2):
        np.testing.assert_array_equal(all_boxes[1][i][:, 4], np.float32([0.9, 0.6]))
        np.testing.assert_array_equal(all_boxes[2][i], np.float32([[0, 0, 10, 10, 0.3]]))
        assert all_boxes[0][i].shape == (0, 5)
    assert imdb.evaluated[1] == osp.join(str(tmp_path), 'output', cfg.EXP_DIR, 'stub_imdb', 'stub_net')
    loaded, _ = frt.load_detections(osp.join(imdb.evaluated[1], 'detections.npz'))
    np.testing.assert_array_equal(loaded[1][1], all_boxes[1][1])


# ---------------------------------------------------------------------------------------------------------
# A real net: the TINY detector with known head parameters.
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def tiny_test_net(tmp_path):
    """The TINY test net for 3 classes, convs He-initialised, head weights zero with known biases."""
    caffe = pytest.importorskip('caffe')
    from fast_rcnn.models import adapt_prototxt
    src = osp.join(ROOT, 'models', 'synth', 'TINY', 'faster_rcnn_alt_opt', 'faster_rcnn_test.pt')
    prototxt = adapt_prototxt(src, str(tmp_path / 'test.pt'), 3)
    caffe.set_mode_cpu()
    net = caffe.Net(prototxt, caffe.TEST)
    rng = np.random.default_rng(0)
    for name, blobs in net.params.items():
        blobs[0].data[...] = rng.normal(0, 0.05, blobs[0].data.shape)
        blobs[1].data[...] = 0
    net.params['cls_score'][0].data[...] = 0
    net.params['cls_score'][1].data[...] = [0.0, 1.0, 2.0]
    net.params['bbox_pred'][0].data[...] = 0
    return net


def test_im_detect_scale_shapes_and_identity_decoding(tiny_test_net, monkeypatch):
    monkeypatch.setitem(cfg.TEST, 'HAS_RPN', True)
    monkeypatch.setitem(cfg.TEST, 'SCALES', (200,))
    monkeypatch.setitem(cfg.TEST, 'MAX_SIZE', 250)
    monkeypatch.setitem(cfg.TEST, 'RPN_POST_NMS_TOP_N', 50)
    net = tiny_test_net
    im = np.random.default_rng(1).integers(0, 255, size=(120, 300, 3), dtype=np.uint8)
    timers = {name: frt.Timer() for name in frt.SEGMENTS}
    scores, boxes = frt.im_detect(net, im, timers=timers)
    # Shorter side 120 -> 200 would make the longer 500 > 250: the longer side is capped at 250 (scale 5/6).
    assert net.blobs['data'].data.shape == (1, 3, 100, 250)
    np.testing.assert_allclose(net.blobs['im_info'].data, [[100, 250, 250 / 300]], rtol=1e-6)
    num_rois = net.blobs['rois'].data.shape[0]
    assert 0 < num_rois <= 50
    assert scores.shape == (num_rois, 3) and boxes.shape == (num_rois, 12)
    # Zero head weights: scores are softmax(0, 1, 2) for every RoI ...
    np.testing.assert_allclose(scores, np.tile(np.exp([0, 1, 2]) / np.exp([0, 1, 2]).sum(), (num_rois, 1)),
                               rtol=1e-5)
    # ... and zero deltas decode to the proposals in original pixels, except that the released decoding
    # (x2 = centre + w/2 with w = x2 - x1 + 1) puts x2, y2 one pixel further; then clipping.
    rois = net.blobs['rois'].data[:, 1:5] / (250 / 300)
    expected = np.minimum(np.maximum(rois + np.array([0, 0, 1, 1]), 0), [299, 119, 299, 119])
    for j in range(3):
        np.testing.assert_allclose(boxes[:, 4 * j:4 * j + 4], expected, rtol=1e-5, atol=1e-3)
    assert all(timers[name].calls == 1 for name in frt.SEGMENTS)


def test_segments_reproduce_a_plain_forward(tiny_test_net, monkeypatch):
    monkeypatch.setitem(cfg.TEST, 'SCALES', (160,))
    net = tiny_test_net
    net.params['bbox_pred'][0].data[...] = np.random.default_rng(2).normal(0, 0.01,
                                                                          net.params['bbox_pred'][0].data.shape)
    im = np.random.default_rng(3).integers(0, 255, size=(160, 200, 3), dtype=np.uint8)
    blobs, _ = frt._get_blobs(im, None, frt.detect_settings(cfg))
    frt.forward_timed(net, blobs)
    split = {name: net.blobs[name].data.copy() for name in ('rois', 'cls_prob', 'bbox_pred')}
    net.forward(data=blobs['data'], im_info=blobs['im_info'])
    for name, value in split.items():
        np.testing.assert_array_equal(net.blobs[name].data, value)
