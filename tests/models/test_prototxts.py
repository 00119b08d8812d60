"""The network definitions: structure (parsed), and one pass of every net in pycaffe on the CPU.

ZF and VGG16 (pascal_voc) run at the paper's input size (600 x 1000), VGG_CNN_M_1024 (pascal_voc) and the
COCO nets at 200 x 333, all with random weights: one forward/backward per train net, one forward per test
net.
"""

import glob
import os
import os.path as osp

os.environ.setdefault('GLOG_minloglevel', '2')  # before caffe is imported: keep Caffe's logging quiet

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import caffe  # noqa: E402
from fast_rcnn.config import cfg, cfg_from_list  # noqa: E402
from fast_rcnn.models import read_net, read_solver  # noqa: E402
from roi_data_layer.roidb import add_bbox_regression_targets  # noqa: E402

VOC_CLASSES = 21
ANCHORS = 9
IM_H, IM_W = 600, 1000

ARCHS = ('ZF', 'VGG16')
# Train nets and the data-layer mode each needs (cfg.TRAIN.HAS_RPN).
ALT_OPT_TRAIN = {'stage1_rpn_train.pt': True, 'stage1_fast_rcnn_train.pt': False,
                 'stage2_rpn_train.pt': True, 'stage2_fast_rcnn_train.pt': False}
TRAIN_NETS = [(arch, f'faster_rcnn_alt_opt/{name}', has_rpn)
              for arch in ARCHS for name, has_rpn in ALT_OPT_TRAIN.items()] + \
             [(arch, 'faster_rcnn_end2end/train.prototxt', True) for arch in ARCHS] + \
             [(arch, 'fast_rcnn/train.prototxt', False) for arch in ARCHS]
# The head's loss tops as released: ZF (cls_loss, bbox_loss), VGG-16 (loss_cls, loss_bbox).
HEAD_LOSSES = {'ZF': {'cls_loss', 'bbox_loss'}, 'VGG16': {'loss_cls', 'loss_bbox'}}
TEST_NETS = [(arch, name) for arch in ARCHS for name in
             ('faster_rcnn_alt_opt/rpn_test.pt', 'faster_rcnn_alt_opt/faster_rcnn_test.pt',
              'faster_rcnn_end2end/test.prototxt')]

SHARED_CONVS = {
    'ZF': ['conv1', 'conv2', 'conv3', 'conv4', 'conv5'],
    'VGG16': [f'conv{b}_{i}' for b, n in enumerate((2, 2, 3, 3, 3), start=1) for i in range(1, n + 1)],
}
# VGG-16's first two conv blocks stay at their ImageNet values in every train net.
ALWAYS_FROZEN = {'ZF': [], 'VGG16': ['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2']}
# The released nets' RPN conv names (alt-opt ZF differs); released caffemodels load by these names.
RPN_CONV = {('ZF', 'faster_rcnn_alt_opt'): 'rpn_conv1', ('ZF', 'faster_rcnn_end2end'): 'rpn_conv/3x3',
            ('VGG16', 'faster_rcnn_alt_opt'): 'rpn_conv/3x3',
            ('VGG16', 'faster_rcnn_end2end'): 'rpn_conv/3x3'}
RPN_LAYERS = ('rpn_cls_score', 'rpn_bbox_pred')
HEAD = ('cls_score', 'bbox_pred')
FC = ('fc6', 'fc7')

# RPN head parameters, counted by hand: 3x3 conv (C -> C) + 1x1 conv to 2*9 scores + 1x1 conv to 4*9 deltas.
RPN_HEAD_PARAMS = {
    'VGG16': 3 * 3 * 512 * 512 + 512 + 512 * 18 + 18 + 512 * 36 + 36,  # 2,387,510 (the paper's "2.4 M")
    'ZF': 3 * 3 * 256 * 256 + 256 + 256 * 18 + 18 + 256 * 36 + 36,  # 603,958
}
# conv5 size at 600 x 1000 (Caffe's conv floors, its pooling rounds up): VGG 600->300->150->75->38 and
# 1000->500->250->125->63; ZF conv1 (s2) 300x500, pool1 151x251, conv2 (s2) 76x126, pool2 39x64.
CONV5_SIZE = {'VGG16': (38, 63), 'ZF': (39, 64)}
ANCHOR_COUNT = {'VGG16': 21546, 'ZF': 22464}


def _path(arch, rel):
    """Absolute path of a net under models/pascal_voc."""
    return osp.join(cfg.MODELS_DIR, arch, rel)


def _layers(net_param):
    """``{name: LayerParameter}``."""
    return {layer.name: layer for layer in net_param.layer}


def _multipliers(layer):
    """[(lr_mult, decay_mult)] of a layer's ParamSpecs (defaults 1, 1)."""
    return [(p.lr_mult, p.decay_mult) for p in layer.param]


def _param_layer_names(net_param):
    """Names of the layers that own parameters (the names a caffemodel is matched by)."""
    return {layer.name for layer in net_param.layer if layer.type in ('Convolution', 'InnerProduct')}


FROZEN = [(0.0, 0.0), (0.0, 0.0)]
LEARNED = [(1.0, 1.0), (2.0, 1.0)]


# ------------------------------------------------------------------------------------------------------------
# Structure
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('arch, rel, has_rpn', TRAIN_NETS)
def test_shared_conv_multipliers(arch, rel, has_rpn):
    """Stage-2 nets (the paper's steps 3 and 4) freeze every shared conv; VGG conv1/conv2 are always
    frozen."""
    layers = _layers(read_net(_path(arch, rel)))
    stage2 = osp.basename(rel).startswith('stage2')
    for name in SHARED_CONVS[arch]:
        frozen = stage2 or name in ALWAYS_FROZEN[arch]
        assert _multipliers(layers[name]) == (FROZEN if frozen else LEARNED), name


@pytest.mark.parametrize('arch', ARCHS)
def test_alt_opt_nets_carry_the_other_task_frozen(arch):
    """Each alt-opt stage's snapshot must hold every layer the next stage starts from."""
    test_params = _param_layer_names(read_net(_path(arch, 'faster_rcnn_alt_opt/faster_rcnn_test.pt')))
    rpn_conv = RPN_CONV[arch, 'faster_rcnn_alt_opt']
    for name, has_rpn in ALT_OPT_TRAIN.items():
        net = read_net(_path(arch, f'faster_rcnn_alt_opt/{name}'))
        layers = _layers(net)
        if has_rpn:
            # cls_score / bbox_pred start fresh in the next Fast R-CNN stage; fc6/fc7 ride along unchanged.
            assert _param_layer_names(net) == test_params - set(HEAD)
            learned, carried = (rpn_conv,) + RPN_LAYERS, FC
        else:
            assert _param_layer_names(net) == test_params
            learned, carried = FC + HEAD, (rpn_conv,) + RPN_LAYERS
        for layer in learned:
            assert _multipliers(layers[layer]) == LEARNED, (name, layer)
        for layer in carried:
            assert _multipliers(layers[layer]) == FROZEN, (name, layer)


@pytest.mark.parametrize('arch', ARCHS)
def test_end2end_trains_everything_but_the_fixed_convs(arch):
    train = read_net(_path(arch, 'faster_rcnn_end2end/train.prototxt'))
    test = read_net(_path(arch, 'faster_rcnn_end2end/test.prototxt'))
    assert _param_layer_names(train) == _param_layer_names(test)
    layers = _layers(train)
    for name in (RPN_CONV[arch, 'faster_rcnn_end2end'],) + RPN_LAYERS + FC + HEAD:
        assert _multipliers(layers[name]) == LEARNED, name
    # Proposals are fixed inputs to the head: no backward through the proposal layer.
    assert list(layers['proposal'].propagate_down) == [False, False, False]
    assert layers['roi-data'].python_param.param_str == f"'num_classes': {VOC_CLASSES}"


@pytest.mark.parametrize('arch, rel', TEST_NETS)
def test_released_layer_names(arch, rel):
    """Parameter layers carry the released names, so released caffemodels load into the test nets."""
    net = read_net(_path(arch, rel))
    expected = set(SHARED_CONVS[arch]) | {RPN_CONV[arch, osp.dirname(rel)], *RPN_LAYERS}
    if not rel.endswith('rpn_test.pt'):
        expected |= set(FC + HEAD)
    assert _param_layer_names(net) == expected
    assert list(net.input) == ['data', 'im_info']
    assert [list(s.dim) for s in net.input_shape] == [[1, 3, 224, 224], [1, 3]]


@pytest.mark.parametrize('arch', ARCHS)
def test_dropout_convention(arch):
    """ZF (trained on ImageNet with unscaled dropout) keeps scale_train false; VGG-16 scales as usual."""
    paths = glob.glob(_path(arch, '*/*.pt')) + glob.glob(_path(arch, '*/*.prototxt'))
    dropouts = [layer for p in paths if 'solver' not in p for layer in read_net(p).layer
                if layer.type == 'Dropout']
    # drop6 + drop7 in the 7 nets with a trained or tested head (the RPN stages carry fc6/fc7 without dropout)
    assert len(dropouts) == 2 * 7
    for layer in dropouts:
        assert layer.dropout_param.dropout_ratio == pytest.approx(0.5)
        assert layer.dropout_param.scale_train is (arch == 'VGG16')


@pytest.mark.parametrize('arch', ARCHS)
def test_roi_pooling_and_rpn_settings(arch):
    pooled = {'ZF': 6, 'VGG16': 7}[arch]
    for rel in ('faster_rcnn_alt_opt/faster_rcnn_test.pt', 'faster_rcnn_end2end/train.prototxt'):
        layers = read_net(_path(arch, rel)).layer
        (pool,) = [layer for layer in layers if layer.type == 'ROIPooling']
        p = pool.roi_pooling_param
        assert (p.pooled_h, p.pooled_w, p.spatial_scale) == (pooled, pooled, 0.0625)
        by_name = {layer.name: layer for layer in layers}
        assert by_name['rpn_cls_score'].convolution_param.num_output == 2 * ANCHORS
        assert by_name['rpn_bbox_pred'].convolution_param.num_output == 4 * ANCHORS
        assert by_name['cls_score'].inner_product_param.num_output == VOC_CLASSES
        assert by_name['bbox_pred'].inner_product_param.num_output == 4 * VOC_CLASSES
        assert by_name['proposal'].python_param.module == 'rpn.proposal_layer'
    train = _layers(read_net(_path(arch, 'faster_rcnn_end2end/train.prototxt')))
    assert train['rpn_loss_bbox'].smooth_l1_loss_param.sigma == 3.0
    assert not train['loss_bbox'].HasField('smooth_l1_loss_param')  # sigma 1
    assert train['rpn-data'].python_param.param_str == "'feat_stride': 16"
    assert train['rpn_loss_cls'].loss_param.ignore_label == -1
    assert list(train['rpn_cls_score_reshape'].reshape_param.shape.dim) == [0, 2, -1, 0]


SOLVERS = {
    'faster_rcnn_alt_opt/stage1_rpn_solver60k80k.pt': ('stage1_rpn_train.pt', 60000, '{}_rpn', 1),
    'faster_rcnn_alt_opt/stage2_rpn_solver60k80k.pt': ('stage2_rpn_train.pt', 60000, '{}_rpn', 1),
    'faster_rcnn_alt_opt/stage1_fast_rcnn_solver30k40k.pt': ('stage1_fast_rcnn_train.pt', 30000,
                                                             '{}_fast_rcnn', 1),
    'faster_rcnn_alt_opt/stage2_fast_rcnn_solver30k40k.pt': ('stage2_fast_rcnn_train.pt', 30000,
                                                             '{}_fast_rcnn', 1),
    'faster_rcnn_end2end/solver.prototxt': ('train.prototxt', 50000, '{}_faster_rcnn', 2),
}


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('rel', sorted(SOLVERS))
def test_solvers(arch, rel):
    net, stepsize, prefix, iter_size = SOLVERS[rel]
    solver = read_solver(_path(arch, rel))
    assert solver.train_net == f'models/pascal_voc/{arch}/{osp.dirname(rel)}/{net}'
    assert osp.isfile(osp.join(cfg.ROOT_DIR, solver.train_net))
    assert (solver.base_lr, solver.lr_policy, solver.gamma, solver.stepsize) == \
        (pytest.approx(0.001), 'step', pytest.approx(0.1), stepsize)
    assert (solver.momentum, solver.weight_decay) == (pytest.approx(0.9), pytest.approx(0.0005))
    assert (solver.display, solver.average_loss, solver.snapshot, solver.iter_size) == (20, 100, 0, iter_size)
    assert solver.snapshot_prefix == prefix.format(arch.lower())
    assert not solver.HasField('max_iter')  # the training tools pass it


# ------------------------------------------------------------------------------------------------------------
# Caffe passes
# ------------------------------------------------------------------------------------------------------------

def _randomize(net, rng):
    """Random weights that keep activations in range: He-scaled Gaussians for the feature layers, small
    ones (std 0.01) for the four prediction layers so decoded boxes stay finite, biases 0.01."""
    for name, params in net.params.items():
        weights = params[0].data
        fan_in = weights.size // weights.shape[0]
        std = 0.01 if name in RPN_LAYERS + HEAD else np.sqrt(2.0 / fan_in)
        weights[...] = rng.standard_normal(weights.shape, dtype=np.float32) * std
        if len(params) > 1:
            params[1].data[...] = 0.01


def _area(boxes):
    """Pixel-inclusive areas of ``[x1, y1, x2, y2]`` boxes (last axis)."""
    return (boxes[..., 2] - boxes[..., 0] + 1) * (boxes[..., 3] - boxes[..., 1] + 1)


def _iou(boxes, gt):
    """IoU of N x 4 ``boxes`` with one ``gt`` box (pixel-inclusive)."""
    iw = np.clip(np.minimum(boxes[:, 2], gt[2]) - np.maximum(boxes[:, 0], gt[0]) + 1, 0, None)
    ih = np.clip(np.minimum(boxes[:, 3], gt[3]) - np.maximum(boxes[:, 1], gt[1]) + 1, 0, None)
    inter = iw * ih
    return inter / (_area(boxes) + _area(gt) - inter)


GT_BOXES = np.array([[100, 80, 399, 379], [550, 200, 849, 549], [20, 400, 219, 579]], dtype=np.float32)
GT_CLASSES = np.array([3, 12, 20], dtype=np.int32)


def _roidb_entry(image_path, rng, num_proposals=60):
    """A training roidb entry: the gts plus random proposals (some jittered gts, so some are foreground)."""
    x1 = rng.uniform(0, IM_W - 64, num_proposals)
    y1 = rng.uniform(0, IM_H - 64, num_proposals)
    w = rng.uniform(32, 400, num_proposals)
    h = rng.uniform(32, 400, num_proposals)
    random_boxes = np.stack([x1, y1, np.minimum(x1 + w, IM_W - 1), np.minimum(y1 + h, IM_H - 1)], axis=1)
    jittered = np.clip(GT_BOXES[rng.integers(0, len(GT_BOXES), 12)] + rng.uniform(-20, 20, (12, 4)),
                       0, [IM_W - 1, IM_H - 1, IM_W - 1, IM_H - 1])
    boxes = np.vstack([GT_BOXES, random_boxes, jittered]).astype(np.float32)
    overlaps = np.zeros((len(boxes), VOC_CLASSES), dtype=np.float32)
    for gt, cls in zip(GT_BOXES, GT_CLASSES):
        overlaps[:, cls] = np.maximum(overlaps[:, cls], _iou(boxes, gt))
    gt_classes = np.zeros(len(boxes), dtype=np.int32)
    gt_classes[:len(GT_BOXES)] = GT_CLASSES
    return {'image': image_path, 'width': IM_W, 'height': IM_H, 'boxes': boxes, 'gt_classes': gt_classes,
            'gt_overlaps': overlaps, 'flipped': False,
            'seg_areas': _area(boxes).astype(np.float32),
            'max_classes': overlaps.argmax(axis=1), 'max_overlaps': overlaps.max(axis=1)}


@pytest.fixture(scope='module')
def image_path(tmp_path_factory):
    """A random 600 x 1000 BGR image on disk."""
    path = str(tmp_path_factory.mktemp('images') / 'synthetic.png')
    cv2.imwrite(path, np.random.default_rng(0).integers(0, 256, (IM_H, IM_W, 3), dtype=np.uint8))
    return path


def _training_roidb(image_path):
    """Two entries (a Fast R-CNN minibatch holds two images) with normalised regression targets."""
    rng = np.random.default_rng(1)
    roidb = [_roidb_entry(image_path, rng) for _ in range(2)]
    add_bbox_regression_targets(roidb, cfg.TRAIN.BBOX_THRESH, normalize=True)
    return roidb


# Settings every training pass pins: one 600 x 1000 scale, no prefetch thread.
PASS_CFG = {'TRAIN.SCALES': (IM_H,), 'TRAIN.MAX_SIZE': IM_W, 'TRAIN.USE_PREFETCH': False}


def _rpn_head_params(net, rpn_conv):
    """Number of parameters in the RPN conv and its two sibling 1x1 convs."""
    return sum(blob.data.size for name in (rpn_conv,) + RPN_LAYERS for blob in net.params[name])


def _check_anchor_grid(net, arch):
    """conv5 size at 600 x 1000 and the anchor count it implies."""
    _, channels, height, width = net.blobs['rpn_cls_score'].data.shape
    assert channels == 2 * ANCHORS
    assert (height, width) == CONV5_SIZE[arch]
    assert height * width * ANCHORS == ANCHOR_COUNT[arch]


@pytest.mark.parametrize('arch, rel, has_rpn', TRAIN_NETS)
def test_train_net_forward_backward(arch, rel, has_rpn, image_path, caffe_cpu, saved_cfg):
    """One forward/backward: finite positive losses, gradients exactly where the multipliers allow."""
    path = _path(arch, rel)
    net_param = read_net(path)
    end2end = 'end2end' in rel
    settings = {**PASS_CFG, 'TRAIN.HAS_RPN': has_rpn, 'TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED': end2end}
    cfg_from_list([item for key, value in settings.items() for item in (key, repr(value))])
    np.random.seed(cfg.RNG_SEED)
    roidb = _training_roidb(image_path)
    net = caffe.Net(path, caffe.TRAIN)
    _randomize(net, np.random.default_rng(2))
    net.layers[0].set_roidb(roidb)
    losses = net.forward()
    net.backward()

    expected_losses = ({'rpn_cls_loss', 'rpn_loss_bbox'} if has_rpn else set()) | \
        (HEAD_LOSSES[arch] if end2end or not has_rpn else set())
    assert set(losses) == expected_losses
    for name, value in losses.items():
        assert np.isfinite(value).all() and float(value) > 0, (name, value)
    assert net.blobs['data'].data.shape[2:] == (IM_H, IM_W)
    if has_rpn:
        _check_anchor_grid(net, arch)
        assert _rpn_head_params(net, RPN_CONV[arch, osp.dirname(rel)]) == RPN_HEAD_PARAMS[arch]

    layers = _layers(net_param)
    for name, blobs in net.params.items():
        multipliers = _multipliers(layers[name]) or LEARNED
        for (lr_mult, _), blob in zip(multipliers, blobs):
            has_grad = bool(np.any(blob.diff))
            assert has_grad == (lr_mult > 0), f'{name}: lr_mult {lr_mult}, gradient {has_grad}'


@pytest.mark.parametrize('arch, rel', TEST_NETS)
def test_test_net_forward(arch, rel, caffe_cpu):
    """One forward at 600 x 1000: proposals inside the image, class probabilities, 4K box deltas."""
    net = caffe.Net(_path(arch, rel), caffe.TEST)
    _randomize(net, np.random.default_rng(3))
    rng = np.random.default_rng(4)
    net.blobs['data'].reshape(1, 3, IM_H, IM_W)
    net.blobs['im_info'].reshape(1, 3)
    out = net.forward(data=rng.normal(0, 50, (1, 3, IM_H, IM_W)).astype(np.float32),  # ~ mean-free pixels
                      im_info=np.array([[IM_H, IM_W, 1.0]], dtype=np.float32))

    _check_anchor_grid(net, arch)
    assert _rpn_head_params(net, RPN_CONV[arch, osp.dirname(rel)]) == RPN_HEAD_PARAMS[arch]
    rois = net.blobs['rois'].data
    assert rois.ndim == 2 and rois.shape[1] == 5
    assert 0 < len(rois) <= cfg.TEST.RPN_POST_NMS_TOP_N
    assert np.all(rois[:, 0] == 0)
    assert np.all(rois[:, 1:] >= 0)
    assert np.all(rois[:, [1, 3]] <= IM_W - 1) and np.all(rois[:, [2, 4]] <= IM_H - 1)
    if rel.endswith('rpn_test.pt'):
        assert set(out) == {'rois', 'scores'}
        scores = out['scores'].ravel()
        assert len(scores) == len(rois) and np.all(np.diff(scores) <= 0)
    else:
        assert set(out) == {'cls_prob', 'bbox_pred'}
        assert out['cls_prob'].shape == (len(rois), VOC_CLASSES)
        np.testing.assert_allclose(out['cls_prob'].sum(axis=1), 1.0, rtol=1e-5)
        assert out['bbox_pred'].shape == (len(rois), 4 * VOC_CLASSES)


@pytest.mark.parametrize('arch', ARCHS)
def test_fast_rcnn_test_net_forward(arch, caffe_cpu):
    """The Fast R-CNN test net takes proposals as an input: class probabilities and 4K deltas per RoI."""
    net = caffe.Net(_path(arch, 'fast_rcnn/test.prototxt'), caffe.TEST)
    assert 'im_info' not in net.blobs and not any(layer.type == 'Python' for layer in net.layers)
    _randomize(net, np.random.default_rng(3))
    rng = np.random.default_rng(4)
    rois = np.array([[0, 0, 0, 99, 99], [0, 100, 50, 699, 499], [0, 0, 0, IM_W - 1, IM_H - 1]], np.float32)
    net.blobs['data'].reshape(1, 3, IM_H, IM_W)
    net.blobs['rois'].reshape(*rois.shape)
    out = net.forward(data=rng.normal(0, 50, (1, 3, IM_H, IM_W)).astype(np.float32), rois=rois)
    assert set(out) == {'cls_prob', 'bbox_pred'}
    assert out['cls_prob'].shape == (3, VOC_CLASSES)
    np.testing.assert_allclose(out['cls_prob'].sum(axis=1), 1.0, rtol=1e-5)
    assert out['bbox_pred'].shape == (3, 4 * VOC_CLASSES)


@pytest.mark.parametrize('arch', ARCHS)
def test_fast_rcnn_nets_share_the_detector_layer_names(arch):
    """A Fast R-CNN model loads into the alt-opt detector by name: same parameter layers, minus the RPN."""
    fast = _param_layer_names(read_net(_path(arch, 'fast_rcnn/test.prototxt')))
    full = _param_layer_names(read_net(_path(arch, 'faster_rcnn_alt_opt/faster_rcnn_test.pt')))
    assert fast == {name for name in full if not name.startswith('rpn')}


# ------------------------------------------------------------------------------------------------------------
# VGG_CNN_M_1024 (pascal_voc) and the COCO nets (VGG16, VGG_CNN_M_1024): the released parameter layer names
# and shapes (released caffemodels load by name), and one Caffe pass of each train net on the CPU at a small
# input (the 600 x 1000 image scaled to 200 x 333), random weights.
# ------------------------------------------------------------------------------------------------------------

MODELS = osp.join(cfg.ROOT_DIR, 'models')
FAMILY_CLASSES = {'pascal_voc': 21, 'coco': 81}
# COCO's RPN has 12 anchors (scales 4, 8, 16, 32 x 3 ratios), VOC's 9.
FAMILY_ANCHORS = {'pascal_voc': 9, 'coco': 12}
# Parameter shapes of the released nets (weights; biases have the first dimension), K = classes, A = anchors.
VGG_M_RELEASED_SHAPES = {'conv1': (96, 3, 7, 7), 'conv2': (256, 96, 5, 5), 'conv3': (512, 256, 3, 3),
                'conv4': (512, 512, 3, 3), 'conv5': (512, 512, 3, 3), 'rpn_conv/3x3': (256, 512, 3, 3),
                'fc6': (4096, 512 * 6 * 6), 'fc7': (1024, 4096)}
VGG16_RELEASED_SHAPES = {'conv1_1': (64, 3, 3, 3), 'conv1_2': (64, 64, 3, 3), 'conv2_1': (128, 64, 3, 3),
                'conv2_2': (128, 128, 3, 3), 'conv3_1': (256, 128, 3, 3), 'conv3_2': (256, 256, 3, 3),
                'conv3_3': (256, 256, 3, 3), 'conv4_1': (512, 256, 3, 3), 'conv4_2': (512, 512, 3, 3),
                'conv4_3': (512, 512, 3, 3), 'conv5_1': (512, 512, 3, 3), 'conv5_2': (512, 512, 3, 3),
                'conv5_3': (512, 512, 3, 3), 'rpn_conv/3x3': (512, 512, 3, 3),
                'fc6': (4096, 512 * 7 * 7), 'fc7': (4096, 4096)}
RELEASED_SHAPES = {'VGG_CNN_M_1024': VGG_M_RELEASED_SHAPES, 'VGG16': VGG16_RELEASED_SHAPES}
FIXED_CONVS = {'VGG_CNN_M_1024': ('conv1',), 'VGG16': ('conv1_1', 'conv1_2', 'conv2_1', 'conv2_2')}

NEW_NETS = [('pascal_voc', 'VGG_CNN_M_1024', 'faster_rcnn_alt_opt'),
        ('pascal_voc', 'VGG_CNN_M_1024', 'faster_rcnn_end2end'),
        ('pascal_voc', 'VGG_CNN_M_1024', 'fast_rcnn'),
        ('coco', 'VGG16', 'faster_rcnn_end2end'), ('coco', 'VGG16', 'fast_rcnn'),
        ('coco', 'VGG_CNN_M_1024', 'faster_rcnn_end2end'), ('coco', 'VGG_CNN_M_1024', 'fast_rcnn')]
# Train nets of each method and whether the data layer runs in RPN mode.
NEW_TRAIN_NETS = {'faster_rcnn_alt_opt': {'stage1_rpn_train.pt': True, 'stage1_fast_rcnn_train.pt': False,
                                      'stage2_rpn_train.pt': True, 'stage2_fast_rcnn_train.pt': False},
              'faster_rcnn_end2end': {'train.prototxt': True}, 'fast_rcnn': {'train.prototxt': False}}
NEW_TEST_NETS = {'faster_rcnn_alt_opt': ('rpn_test.pt', 'faster_rcnn_test.pt'),
             'faster_rcnn_end2end': ('test.prototxt',), 'fast_rcnn': ('test.prototxt',)}
SMALL_CFG = {'TRAIN.SCALES': (200,), 'TRAIN.MAX_SIZE': 334, 'TRAIN.USE_PREFETCH': False}


def _released_shapes(family, arch, rpn, head):
    """``{layer: weight shape}`` of a net with the shared convs, the RPN when ``rpn``, fc6/fc7 and the
    detection head when ``head``."""
    k, a = FAMILY_CLASSES[family], FAMILY_ANCHORS[family]
    released = RELEASED_SHAPES[arch]
    shapes = {name: shape for name, shape in released.items() if name.startswith('conv')}
    if rpn:
        rpn_dim = released['rpn_conv/3x3'][0]
        shapes.update({'rpn_conv/3x3': released['rpn_conv/3x3'], 'rpn_cls_score': (2 * a, rpn_dim, 1, 1),
                       'rpn_bbox_pred': (4 * a, rpn_dim, 1, 1)})
    if head:
        fc7 = released['fc7'][0]
        shapes.update({'fc6': released['fc6'], 'fc7': released['fc7'], 'cls_score': (k, fc7),
                       'bbox_pred': (4 * k, fc7)})
    return shapes


def _net_shapes(net):
    """``{layer: weight shape}`` of a loaded net (and every bias is 1-D of the output count)."""
    for name, params in net.params.items():
        if len(params) > 1:
            assert params[1].data.shape == (params[0].data.shape[0],), name
    return {name: tuple(params[0].data.shape) for name, params in net.params.items()}


@pytest.mark.parametrize('family, arch, method', NEW_NETS)
def test_new_test_nets_have_the_released_names_and_shapes_and_run(family, arch, method, caffe_cpu):
    for name in NEW_TEST_NETS[method]:
        net = caffe.Net(osp.join(MODELS, family, arch, method, name), caffe.TEST)
        expected = _released_shapes(family, arch, rpn=method != 'fast_rcnn', head=name != 'rpn_test.pt')
        assert _net_shapes(net) == expected, name
        _randomize(net, np.random.default_rng(3))
        out = _small_test_forward(net, rpn=method != 'fast_rcnn')
        if name == 'rpn_test.pt':
            assert set(out) == {'rois', 'scores'} and len(out['rois']) == len(out['scores']) > 0
        else:
            k = FAMILY_CLASSES[family]
            assert out['cls_prob'].shape[1] == k and out['bbox_pred'].shape[1] == 4 * k, name
            np.testing.assert_allclose(out['cls_prob'].sum(axis=1), 1.0, rtol=1e-5)


def _small_test_forward(net, rpn):
    """One forward of a test net on a 200 x 333 input: with ``im_info`` (RPN nets) or three RoIs."""
    data = np.random.default_rng(4).normal(0, 50, (1, 3, 200, 333)).astype(np.float32)
    net.blobs['data'].reshape(*data.shape)
    if rpn:
        net.blobs['im_info'].reshape(1, 3)
        return net.forward(data=data, im_info=np.array([[200, 333, 1.0]], np.float32))
    rois = np.array([[0, 0, 0, 99, 99], [0, 50, 20, 300, 190], [0, 0, 0, 332, 199]], np.float32)
    net.blobs['rois'].reshape(*rois.shape)
    return net.forward(data=data, rois=rois)


def _small_roidb(image, num_classes):
    """Two training entries (see test_prototxts._roidb_entry) with ``num_classes`` overlap columns."""
    rng = np.random.default_rng(1)
    roidb = [_roidb_entry(image, rng) for _ in range(2)]
    for entry in roidb:
        pad = num_classes - entry['gt_overlaps'].shape[1]
        entry['gt_overlaps'] = np.pad(entry['gt_overlaps'], ((0, 0), (0, pad)))
    add_bbox_regression_targets(roidb, cfg.TRAIN.BBOX_THRESH, normalize=True)
    return roidb


@pytest.mark.parametrize('family, arch, method', NEW_NETS)
def test_new_train_nets_forward_backward(family, arch, method, image_path, caffe_cpu, saved_cfg):
    """One forward/backward of each train net: finite positive losses, gradients exactly in the layers
    with a positive lr_mult."""
    for name, has_rpn in NEW_TRAIN_NETS[method].items():
        settings = {**SMALL_CFG, 'TRAIN.HAS_RPN': has_rpn,
                    'TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED': method == 'faster_rcnn_end2end'}
        cfg_from_list([item for key, value in settings.items() for item in (key, repr(value))])
        np.random.seed(cfg.RNG_SEED)
        path = osp.join(MODELS, family, arch, method, name)
        net = caffe.Net(path, caffe.TRAIN)
        _randomize(net, np.random.default_rng(2))
        net.layers[0].set_roidb(_small_roidb(image_path, FAMILY_CLASSES[family]))
        losses = net.forward()
        net.backward()
        assert losses and all(np.isfinite(v).all() and float(v) > 0 for v in losses.values()), (name, losses)
        assert net.blobs['data'].data.shape[2:] == (200, 333)
        if has_rpn:
            assert net.blobs['rpn_cls_score'].data.shape[1] == 2 * FAMILY_ANCHORS[family]
        learned = {layer.name for layer in read_net(path).layer
                   if layer.param and layer.param[0].lr_mult > 0}
        for layer, params in net.params.items():
            has_grad = bool(np.any(params[0].diff))
            assert has_grad == (layer in learned), (name, layer)


def test_always_fixed_convs_are_frozen_in_every_train_net():
    for family, arch, method in NEW_NETS:
        for name in NEW_TRAIN_NETS[method]:
            net = read_net(osp.join(MODELS, family, arch, method, name))
            layers = {layer.name: layer for layer in net.layer}
            for conv in FIXED_CONVS[arch]:
                assert [(p.lr_mult, p.decay_mult) for p in layers[conv].param] == [(0, 0), (0, 0)], \
                    (family, arch, name, conv)

