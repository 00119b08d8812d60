"""fast_rcnn.deploy: proposal settings and what OpenCV can express, the OpenCV deploy net, the OpenCV
backend against our Caffe on embedded images (seeded He-random TINY), the manifest, detection matching."""

import dataclasses
import json
import os.path as osp

import cv2
import numpy as np
import pytest

caffe = pytest.importorskip('caffe')

from caffe.proto import caffe_pb2  # noqa: E402
from fast_rcnn import deploy  # noqa: E402
from fast_rcnn import test as frt  # noqa: E402
from fast_rcnn.init_model import he_init  # noqa: E402
from fast_rcnn.config import cfg  # noqa: E402
from fast_rcnn.models import adapt_prototxt  # noqa: E402
from rpn.generate_anchors import shifted_anchors  # noqa: E402
from rpn.proposal import generate_proposals  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TINY_TEST = osp.join(ROOT, 'models', 'synth', 'TINY', 'faster_rcnn_end2end', 'test.prototxt')
ZF_TEST = osp.join(ROOT, 'models', 'pascal_voc', 'ZF', 'faster_rcnn_end2end', 'test.prototxt')
SYNTH_IMAGES = osp.join(ROOT, 'data', 'SYNTHdevkit', 'SYNTH', 'JPEGImages')
# Embedded test images (different sizes) for the engine comparisons.
TEST_IMAGES = ('001001.jpg', '001002.jpg', '001003.jpg')
NUM_CLASSES = 7
# Box coordinates from the two engines agree to this (pixels); their convs differ by ~1e-5 relative.
BOX_TOL = 0.05


@pytest.fixture(autouse=True)
def synth_test_cfg(monkeypatch):
    """The synth test settings (experiments/cfgs/synth.yml), CPU, an RPN net."""
    monkeypatch.setitem(cfg, 'GPU_ID', -1)
    monkeypatch.setitem(cfg.TEST, 'HAS_RPN', True)
    monkeypatch.setitem(cfg.TEST, 'SCALES', (400,))
    monkeypatch.setitem(cfg.TEST, 'MAX_SIZE', 670)
    monkeypatch.setitem(cfg.TEST, 'RPN_MIN_SIZE', 0)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A seeded He-random TINY test net for the synth classes: (caffe.Net, prototxt, weights, OpenCV
    prototxt)."""
    out = tmp_path_factory.mktemp('tiny_deploy')
    prototxt = adapt_prototxt(TINY_TEST, str(out / 'test.pt'), NUM_CLASSES)
    caffe.set_mode_cpu()
    net = caffe.Net(prototxt, caffe.TEST)
    he_init(net, np.random.default_rng(0))
    weights = str(out / 'tiny_he.caffemodel')
    net.save(weights)
    param = deploy.read_net_text(prototxt)
    # (Module fixtures run before the function-scoped cfg patch: min_size is set here.)
    settings = dataclasses.replace(deploy.proposal_settings(param, cfg.TEST, prototxt), min_size=0.0)
    assert settings == deploy.ProposalSettings(16, 16, (0.5, 1.0, 2.0), (2.0, 4.0, 8.0, 16.0), 6000, 300, 0.7,
                                               0.0)
    cv_prototxt = str(out / 'opencv.pt')
    with open(cv_prototxt, 'w', encoding='utf-8') as f:
        f.write(deploy.opencv_deploy_text(param, settings, prototxt))
    return net, prototxt, weights, cv_prototxt


def _net_param(param_str, extra_python=False):
    """A minimal NetParameter holding our proposal layer with ``param_str``."""
    net = caffe_pb2.NetParameter()
    layer = net.layer.add(name='proposal', type='Python', bottom=['a', 'b', 'im_info'], top=['rois'])
    layer.python_param.module, layer.python_param.layer = deploy.PYTHON_PROPOSAL_MODULE, 'ProposalLayer'
    layer.python_param.param_str = param_str
    if extra_python:
        other = net.layer.add(name='other', type='Python', bottom=['rois'], top=['x'])
        other.python_param.module, other.python_param.layer = 'some.module', 'Layer'
    return net


# ------------------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------------------

def test_released_and_tiny_anchors_are_what_opencv_builds():
    for path in (ZF_TEST, TINY_TEST):
        settings = deploy.proposal_settings(deploy.read_net_text(path), cfg.TEST, path)
        refusals, reports = deploy.opencv_limitations(settings)
        assert refusals == [] and reports == []
    released = deploy.proposal_settings(deploy.read_net_text(ZF_TEST), cfg.TEST, ZF_TEST)
    assert released.scales == (8, 16, 32) and released.base_size == 16
    np.testing.assert_array_equal(deploy.opencv_reference_anchors(released)[0], [-84, -40, 99, 55])


def test_anchor_rounding_difference_is_refused():
    # Ratio 0.625: w = 20, w * r = 12.5 -> numpy rounds to 12 (half to even), OpenCV to 13 (half up).
    settings = deploy.ProposalSettings(16, 16, (0.625, 1.0), (8.0,), 6000, 300, 0.7, 0.0)
    refusals, _ = deploy.opencv_limitations(settings)
    assert len(refusals) == 1 and 'anchors [0] differ' in refusals[0]


def test_min_size_is_reported_and_settings_errors(monkeypatch):
    monkeypatch.setitem(cfg.TEST, 'RPN_MIN_SIZE', 8)
    settings = deploy.proposal_settings(_net_param("'feat_stride': 16"), cfg.TEST, 'x.pt')
    assert settings.min_size == 8
    refusals, reports = deploy.opencv_limitations(settings)
    assert refusals == [] and len(reports) == 1 and 'RPN_MIN_SIZE = 8' in reports[0]
    with pytest.raises(ValueError, match=r"x.pt: layer 'proposal' param_str has no feat_stride"):
        deploy.proposal_settings(_net_param("'scales': [8]"), cfg.TEST, 'x.pt')
    with pytest.raises(ValueError, match=r"keys the proposal layer does not read: \['min_size'\]"):
        deploy.proposal_settings(_net_param("'feat_stride': 16\n'min_size': 4"), cfg.TEST, 'x.pt')
    with pytest.raises(ValueError, match='x.pt: expected one proposal layer'):
        deploy.proposal_settings(caffe_pb2.NetParameter(), cfg.TEST, 'x.pt')
    monkeypatch.setitem(cfg.TEST, 'RPN_USE_NMS', False)
    with pytest.raises(ValueError, match='RPN_USE_NMS is False'):
        deploy.proposal_settings(_net_param("'feat_stride': 16"), cfg.TEST, 'x.pt')
    monkeypatch.setitem(cfg.TEST, 'RPN_USE_NMS', True)
    monkeypatch.setitem(cfg.TEST, 'RPN_PRE_NMS_TOP_N', -1)
    with pytest.raises(ValueError, match='RPN_PRE_NMS_TOP_N = -1'):
        deploy.proposal_settings(_net_param("'feat_stride': 16"), cfg.TEST, 'x.pt')


def test_deploy_text_round_trip_and_other_python_layers(tiny, monkeypatch):
    _, prototxt, weights, cv_prototxt = tiny
    with open(cv_prototxt, encoding='utf-8') as f:
        text = f.read()
    assert 'type: "Python"' not in text and text.count('type: "Proposal"') == 1
    read_back = deploy.read_opencv_proposal_settings(cv_prototxt)
    assert read_back == deploy.proposal_settings(deploy.read_net_text(prototxt), cfg.TEST, prototxt)
    structure = deploy.read_net_text(cv_prototxt, allow_unknown_field=True)
    assert [layer.name for layer in structure.layer] == \
        [layer.name for layer in deploy.read_net_text(prototxt).layer]
    assert deploy.opencv_output_layers(structure, cv_prototxt) == ['proposal', 'cls_prob', 'bbox_pred']
    cv2.dnn.readNetFromCaffe(cv_prototxt, weights)
    with pytest.raises(ValueError, match=r"Python layers \['other'\] cannot run in OpenCV"):
        deploy.opencv_deploy_text(_net_param("'feat_stride': 16", extra_python=True), read_back, 'y.pt')
    # An exported net whose top-N disagrees with the configuration is refused, naming file and field.
    monkeypatch.setitem(cfg.TEST, 'RPN_POST_NMS_TOP_N', 100)
    with pytest.raises(ValueError, match=r'opencv.pt: proposal_param gives post_nms_top_n 300 but '
                                         r'cfg.TEST.RPN_POST_NMS_TOP_N is 100'):
        deploy.open_opencv_net(cv_prototxt, weights, NUM_CLASSES, osp.dirname(cv_prototxt), cfg.TEST)
    with pytest.raises(ValueError, match='cls_score has 7 outputs but the imdb has 3 classes'):
        monkeypatch.setitem(cfg.TEST, 'RPN_POST_NMS_TOP_N', 300)
        deploy.open_opencv_net(cv_prototxt, weights, 3, osp.dirname(cv_prototxt), cfg.TEST)


# ------------------------------------------------------------------------------------------------------------
# The OpenCV backend against our Caffe
# ------------------------------------------------------------------------------------------------------------

def _opencv_blobs(cv_prototxt, weights, blobs, names):
    """Outputs ``names`` (layer names) of a fresh OpenCV net on input ``blobs``."""
    net = cv2.dnn.readNetFromCaffe(cv_prototxt, weights)
    net.setInput(blobs['data'], 'data')
    net.setInput(blobs['im_info'], 'im_info')
    return dict(zip(names, net.forward(names)))


def test_opencv_proposal_layer_is_ours_with_min_size_zero(tiny):
    """OpenCV's Proposal layer on its own RPN outputs gives what rpn.proposal gives on them."""
    _, _, weights, cv_prototxt = tiny
    settings = deploy.read_opencv_proposal_settings(cv_prototxt)
    anchors = deploy.opencv_reference_anchors(settings)
    # The second image shape is small: fewer boxes than post_nms_topn survive NMS (zero padding).
    for name, scale in ((TEST_IMAGES[0], 400), (TEST_IMAGES[1], 64)):
        im = cv2.imread(osp.join(SYNTH_IMAGES, name))
        cfg.TEST.SCALES = (scale,)
        blobs, _ = frt._get_blobs(im, None, frt.detect_settings(cfg))
        out = _opencv_blobs(cv_prototxt, weights, blobs,
                            ['proposal', 'rpn_cls_prob_reshape', 'rpn_bbox_pred'])
        prob, deltas = out['rpn_cls_prob_reshape'], out['rpn_bbox_pred']
        num_anchors = len(anchors)
        height, width = prob.shape[2:]
        boxes, _ = generate_proposals(
            shifted_anchors(anchors, height, width, settings.feat_stride),
            deltas.transpose(0, 2, 3, 1).reshape(-1, 4),
            prob[:, num_anchors:].transpose(0, 2, 3, 1).reshape(-1),
            blobs['im_info'][0, 0], blobs['im_info'][0, 1],
            0, settings.pre_nms_top_n, settings.post_nms_top_n, settings.nms_thresh)
        rois = out['proposal']
        count = deploy.proposal_count(rois)
        assert count == len(boxes)
        np.testing.assert_allclose(rois[:count, 1:], boxes, atol=BOX_TOL)
        assert np.all(rois[count:] == 0)
        if scale == 64:
            assert count < settings.post_nms_top_n


def test_opencv_backend_matches_caffe(tiny):
    """RPN outputs, proposals and head outputs of OpenCVNet equal our Caffe's on embedded images."""
    net, _, weights, cv_prototxt = tiny
    cv_net = deploy.OpenCVNet(cv_prototxt, weights)
    for name in TEST_IMAGES:
        im = cv2.imread(osp.join(SYNTH_IMAGES, name))
        timers = {segment: frt.Timer() for segment in frt.SEGMENTS}
        scores_a, boxes_a = frt.im_detect(net, im)
        scores_b, boxes_b = frt.im_detect(cv_net, im, timers=timers)
        assert all(timers[segment].calls == 1 and timers[segment].diff > 0 for segment in frt.SEGMENTS)
        blobs, _ = frt._get_blobs(im, None, frt.detect_settings(cfg))
        rpn = _opencv_blobs(cv_prototxt, weights, blobs, ['rpn_cls_prob_reshape', 'rpn_bbox_pred'])
        for blob, value in rpn.items():
            np.testing.assert_allclose(value, net.blobs[blob].data, atol=1e-4)
        rois_a, rois_b = net.blobs['rois'].data, cv_net.blobs['rois'].data
        assert len(rois_a) == len(rois_b) == cfg.TEST.RPN_POST_NMS_TOP_N
        # Random weights leave near-ties in objectness deep in the ranking; the top of it is clear-cut.
        np.testing.assert_allclose(rois_b[:50], rois_a[:50], atol=BOX_TOL)
        same = np.all(np.abs(rois_a - rois_b) <= BOX_TOL, axis=1)
        # RoI pooling rounds the RoI to the 1/16 grid: rows on the same grid cells pool the same features.
        same &= np.all(np.round(rois_a[:, 1:] / 16) == np.round(rois_b[:, 1:] / 16), axis=1)
        assert same.sum() >= 50
        np.testing.assert_allclose(scores_b[same], scores_a[same], atol=1e-4)
        np.testing.assert_allclose(boxes_b[same], boxes_a[same], atol=0.1)


def test_one_net_serves_every_input_size(tiny, tmp_path):
    """With BatchNorm + Scale parameters that are not the identity (as in a trained TINY), a reused cv2 net
    with fusion on goes wrong after the input size changes (OpenCV folds Scale into BatchNorm again at each
    re-plan); OpenCVNet (fusion off for such nets) gives what a fresh net gives, for every size."""
    _, prototxt, he_weights, cv_prototxt = tiny
    net = caffe.Net(prototxt, caffe.TEST, weights=he_weights)
    rng = np.random.default_rng(4)
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type == 'Scale':
            net.params[name][0].data[...] = rng.uniform(0.5, 2.0, net.params[name][0].data.shape)
            net.params[name][1].data[...] = rng.normal(0.0, 0.5, net.params[name][1].data.shape)
    weights = str(tmp_path / 'tiny_scaled.caffemodel')
    net.save(weights)
    assert deploy.needs_fusion_off(deploy.read_net_text(prototxt))
    assert not deploy.needs_fusion_off(deploy.read_net_text(ZF_TEST))
    cv_net = deploy.OpenCVNet(cv_prototxt, weights)
    assert not cv_net.fusion
    reused = cv2.dnn.readNetFromCaffe(cv_prototxt, weights)
    errors = []
    for name in TEST_IMAGES + TEST_IMAGES[:1]:
        im = cv2.imread(osp.join(SYNTH_IMAGES, name))
        frt.im_detect(cv_net, im)
        blobs, _ = frt._get_blobs(im, None, frt.detect_settings(cfg))
        fresh = _opencv_blobs(cv_prototxt, weights, blobs, ['proposal', 'cls_prob'])
        count = deploy.proposal_count(fresh['proposal'])
        rows_a, rows_b = deploy.paired_rows(fresh['proposal'][:count], cv_net.blobs['rois'].data, 1 / 16)
        assert len(rows_a) >= 0.9 * count
        np.testing.assert_allclose(cv_net.blobs['cls_prob'].data[rows_b], fresh['cls_prob'][rows_a],
                                   atol=1e-4)
        reused.setInput(blobs['data'], 'data')
        reused.setInput(blobs['im_info'], 'im_info')
        errors.append(float(np.abs(reused.forward('cls_prob') - fresh['cls_prob']).max()))
    # The first size is planned once and right; after the first change the fused net is wrong, and stays
    # wrong when the first size comes back.
    assert errors[0] == 0.0 and min(errors[1:]) > 0.05, errors


# ------------------------------------------------------------------------------------------------------------
# Manifest and matching
# ------------------------------------------------------------------------------------------------------------

def test_manifest_round_trip_and_errors(tmp_path, tiny):
    _, prototxt, _, _ = tiny
    settings = deploy.proposal_settings(deploy.read_net_text(prototxt), cfg.TEST, prototxt)
    classes = ['__background__', 'circle', 'ring']
    manifest = deploy.export_manifest(classes, cfg.TEST, cfg.PIXEL_MEANS, settings, 'opencv',
                                      {'prototxt': 'deploy.prototxt', 'model': 'model.caffemodel',
                                       'labels': 'labels.txt'}, ['a report'],
                                      ['proposal', 'cls_prob', 'bbox_pred'])
    path = tmp_path / deploy.MANIFEST_NAME
    path.write_text(json.dumps(manifest))
    read = deploy.read_manifest(str(path))
    assert read['classes'] == classes and read['input']['scales'] == [400]
    assert read['proposals']['scales'] == [2.0, 4.0, 8.0, 16.0]
    assert 'a report' in deploy.readme_text(read)
    del manifest['input']['max_size']
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"deploy.json: field 'input.max_size' missing"):
        deploy.read_manifest(str(path))
    path.write_text('{"format": 1}')
    with pytest.raises(ValueError, match=r"deploy.json: field 'format' missing or not a str"):
        deploy.read_manifest(str(path))


def test_match_detections_and_parity_summary():
    empty = np.zeros((0, 5), np.float32)
    a = [empty, np.array([[0, 0, 9, 9, 0.9], [20, 20, 29, 29, 0.3]], np.float32),
         np.array([[50, 50, 59, 59, 0.8]], np.float32)]
    # B: class 1 slightly shifted (IoU 90/110), class 2 missing.
    b = [empty, np.array([[0, 0, 9, 9, 0.89], [21, 20, 30, 29, 0.3]], np.float32), empty]
    m = deploy.match_detections(a, b, top_k=10)
    np.testing.assert_allclose(m['ious'], [1.0, 0.0, 90 / 110], rtol=1e-6)
    np.testing.assert_allclose(m['score_diffs'], [0.01, 0.8, 0.0], atol=1e-6)
    assert (m['count_a'], m['count_b']) == (3, 2)
    assert len(deploy.match_detections(a, b, top_k=1)['ious']) == 1
    summary = deploy.parity_summary([[c] for c in a], [[c] for c in a])
    assert summary['images_ok'] == 1 and summary['min_iou'] == 1.0 and summary['bad_images'] == []
    summary = deploy.parity_summary([[c] for c in a], [[c] for c in b])
    assert summary['images_ok'] == 0 and summary['bad_images'] == [0]
