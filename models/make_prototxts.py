#!/usr/bin/env python3
"""Write every network definition and solver under models/ from one description.

The architectures (ZF, VGG-16, VGG_CNN_M_1024, TINY) and the dataset families that use them (pascal_voc,
coco, synth) are data below; one set of functions turns an (architecture, family) pair into the nets of each
training method (faster_rcnn_alt_opt, faster_rcnn_end2end, fast_rcnn). Run from anywhere:

    python models/make_prototxts.py [--out DIR]

The output mirrors the released py-faster-rcnn nets: the same layer and blob names (released caffemodels load
by name), the same learning-rate multipliers and fillers. In alternating optimisation every stage's net also
carries the other task's layers with frozen parameters, so that its snapshot holds a complete detector and the
next stage can start from it (the RPN nets feed fc6/fc7 from a DummyData blob; the Fast R-CNN nets silence the
RPN outputs).

The synth family is written in protobuf's canonical text format (pycaffe's ``caffe_pb2`` renders it, so
writing that family needs pycaffe); the others keep the released files' readable layout with section
comments and need nothing but Python.
"""

import argparse
import os
import os.path as osp
from collections.abc import Callable
from dataclasses import dataclass

MODELS_DIR = osp.dirname(osp.abspath(__file__))
# train_net paths in the solvers are relative to the repository root, like the released ones.
REPO_MODELS_DIR = 'models'
# First line of every file the generator writes.
HEADER = '# Written by models/make_prototxts.py: edit that script and rerun it, not this file.\n'

# conv5 has stride 16 in every backbone; RoI pooling maps image coordinates with its inverse.
FEAT_STRIDE = 16
DROPOUT_RATIO = 0.5
# Test-time input placeholder; the test code reshapes `data` to each image.
TEST_INPUT_SHAPE = (1, 3, 224, 224)
# im_info = (height, width, scale).
IM_INFO_DIM = 3
# A RoI = (image index in the batch, x1, y1, x2, y2).
ROI_DIM = 5
# Box regression outputs per class: (dx, dy, dw, dh).
BOX_DELTAS = 4
# The anchor layers' defaults (rpn.generate_anchors'; tests/models/test_generator.py checks the counts agree).
DEFAULT_ANCHOR_SCALES = (8, 16, 32)
DEFAULT_ANCHOR_RATIOS = (0.5, 1, 2)


class Enum(str):
    """A protobuf enum value, written without quotes."""


# Parameter multipliers: (weights, bias) of a learned layer, and of a frozen one.
LEARNED = ({'lr_mult': 1}, {'lr_mult': 2})
FROZEN = ({'lr_mult': 0, 'decay_mult': 0}, {'lr_mult': 0, 'decay_mult': 0})
# Test nets carry no multipliers.
NO_MULTIPLIERS = ()


@dataclass(frozen=True)
class RpnNames:
    """Names of the RPN's 3x3 conv layer, its ReLU and its output blob."""
    conv: str
    relu: str
    output: str


STANDARD_RPN = RpnNames('rpn_conv/3x3', 'rpn_relu/3x3', 'rpn/output')


@dataclass(frozen=True)
class Arch:
    """What differs between the backbones and heads of the detectors."""
    dirname: str
    net_name: str
    # backbone(arch, frozen_shared, test) -> the shared conv layers (dicts), input blob 'data'.
    backbone: Callable
    feature_blob: str
    feature_channels: int
    rpn_channels: int
    pooled_size: int
    roi_pool_name: str
    # ZF's ImageNet model was trained with unscaled dropout (the mask only), the VGG nets' with the usual
    # scaling; None: no dropout layers at all (TINY, trained from scratch on a short schedule).
    dropout_scale_train: bool | None
    snapshot_name: str
    # Shared convs whose names start with one of these stay fixed in every train net (the first layers
    # generalise and freezing them saves memory).
    always_frozen: tuple
    # The released alt-opt ZF nets name the RPN conv 'rpn_conv1'; every other net names it 'rpn_conv/3x3'.
    alt_opt_rpn_names: RpnNames
    # Tops of the head's two losses: the released ZF nets write (cls_loss, bbox_loss), the VGG nets'
    # (loss_cls, loss_bbox); log parsers rely on them.
    head_loss_tops: tuple = ('cls_loss', 'bbox_loss')
    # Outputs of fc6 and fc7.
    fc_dims: tuple = (4096, 4096)


@dataclass(frozen=True)
class Anchors:
    """Anchor settings of a family's RPN layers; None keeps the layers' defaults (DEFAULT_ANCHOR_SCALES,
    DEFAULT_ANCHOR_RATIOS, allowed_border 0) and leaves the key out of param_str."""
    scales: tuple | None = None
    ratios: tuple | None = None
    # Anchors reaching this many pixels outside the image are still labelled in RPN training.
    allowed_border: int | None = None

    @property
    def count(self):
        """Anchors per feature-map position."""
        return len(self.scales or DEFAULT_ANCHOR_SCALES) * len(self.ratios or DEFAULT_ANCHOR_RATIOS)


@dataclass(frozen=True)
class Solver:
    """One solver file of a method directory."""
    file: str
    train_net: str
    # Snapshot prefix suffix: '<arch.snapshot_name>_<kind>'.
    kind: str
    stepsize: int
    # None: the training tools pass max_iter (the released solvers name none).
    max_iter: int | None = None
    iter_size: int | None = None


@dataclass(frozen=True)
class Family:
    """A dataset family: its directory under models/, class count, anchors, architectures, methods and
    solvers."""
    dirname: str
    # Classes including the background.
    num_classes: int
    anchors: Anchors
    archs: tuple
    # {method directory: solvers written there}; the nets written per method are fixed (see METHODS).
    solvers: dict
    # Solver fields before stepsize and after it (train_net, stepsize, max_iter, snapshot_prefix and
    # iter_size come from the Solver).
    solver_head: dict
    solver_tail: dict
    # 'layout': readable text with section comments; 'canonical': protobuf's own text format.
    style: str = 'layout'


# ------------------------------------------------------------------------------------------------------------
# Text format
# ------------------------------------------------------------------------------------------------------------

def _scalar(value):
    """Text-format spelling of a scalar field value."""
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return '"' + value.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n') + '"'
    return repr(value)


def render(message, indent=0):
    """Text format of ``message``: a dict of field -> scalar, dict (sub-message) or list (repeated field)."""
    pad = '  ' * indent
    lines = []
    for key, value in message.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, dict):
                lines.append(f'{pad}{key} {{\n{render(item, indent + 1)}{pad}}}\n')
            else:
                lines.append(f'{pad}{key}: {_scalar(item)}\n')
    return ''.join(lines)


def section(title, layers):
    """A commented group of layers, as text."""
    return f'\n#========= {title} ============\n\n' + ''.join(render({'layer': layer}) for layer in layers)


def canonical(text, message_type):
    """``text`` re-written by protobuf as a ``message_type`` ('NetParameter' or 'SolverParameter')."""
    # Imported here: only the synth family needs pycaffe.
    from google.protobuf import text_format

    from caffe.proto import caffe_pb2
    message = getattr(caffe_pb2, message_type)()
    text_format.Merge(text, message)
    return text_format.MessageToString(message)


def finish(family, text, message_type):
    """A file's final text: the header, then ``text`` in the family's style."""
    if family.style == 'canonical':
        text = canonical(text, message_type)
    return HEADER + text


# ------------------------------------------------------------------------------------------------------------
# Layers
# ------------------------------------------------------------------------------------------------------------

def gaussian(std):
    """A Gaussian weight filler."""
    return {'type': 'gaussian', 'std': std}


ZERO = {'type': 'constant', 'value': 0}


def _with_params(layer, params):
    """Insert the ``param`` multipliers after the blob names (where the released nets have them)."""
    if params:
        layer['param'] = list(params)
    return layer


def conv(name, bottom, top, num_output, kernel, pad, stride, params, std=None):
    """Convolution; ``std`` adds a Gaussian weight filler and a zero bias (layers not in ImageNet models)."""
    layer = _with_params({'name': name, 'type': 'Convolution', 'bottom': bottom, 'top': top}, params)
    layer['convolution_param'] = {'num_output': num_output, 'kernel_size': kernel, 'pad': pad,
                                  'stride': stride}
    if std is not None:
        layer['convolution_param'].update(weight_filler=gaussian(std), bias_filler=ZERO)
    return layer


def inner_product(name, bottom, top, num_output, params, std=None):
    """InnerProduct; ``std`` adds a Gaussian weight filler and a zero bias."""
    layer = _with_params({'name': name, 'type': 'InnerProduct', 'bottom': bottom, 'top': top}, params)
    layer['inner_product_param'] = {'num_output': num_output}
    if std is not None:
        layer['inner_product_param'].update(weight_filler=gaussian(std), bias_filler=ZERO)
    return layer


def relu(name, blob):
    """In-place ReLU."""
    return {'name': name, 'type': 'ReLU', 'bottom': blob, 'top': blob}


def max_pool(name, bottom, top, kernel, stride, pad=0):
    """Max pooling (Caffe rounds the output size up)."""
    pooling = {'kernel_size': kernel, 'stride': stride}
    if pad:
        pooling['pad'] = pad
    pooling['pool'] = Enum('MAX')
    return {'name': name, 'type': 'Pooling', 'bottom': bottom, 'top': top, 'pooling_param': pooling}


# ZF's within-channel local response normalisation.
ZF_LRN = {'local_size': 3, 'alpha': 0.00005, 'beta': 0.75, 'norm_region': Enum('WITHIN_CHANNEL'),
          'engine': Enum('CAFFE')}

# VGG_CNN_M's across-channel normalisation (Caffe's default region), as in its ImageNet model.
VGG_M_LRN = {'local_size': 5, 'alpha': 0.0005, 'beta': 0.75, 'k': 2}


def lrn(name, bottom, top, param):
    """Local response normalisation with ``param`` (ZF_LRN or VGG_M_LRN)."""
    return {'name': name, 'type': 'LRN', 'bottom': bottom, 'top': top, 'lrn_param': dict(param)}


def dropout(name, blob, arch):
    """In-place dropout with the arch's scaling convention."""
    param = {'dropout_ratio': DROPOUT_RATIO}
    if not arch.dropout_scale_train:
        param['scale_train'] = False
    return {'name': name, 'type': 'Dropout', 'bottom': blob, 'top': blob, 'dropout_param': param}


def reshape(name, bottom, top, channels):
    """Reshape to (N, channels, -1, W): the RPN's 2-way softmax runs over axis 1."""
    return {'name': name, 'type': 'Reshape', 'bottom': bottom, 'top': top,
            'reshape_param': {'shape': {'dim': [0, channels, -1, 0]}}}


def python_layer(name, module, layer, bottoms, tops, param_str):
    """A Python layer in the released form (module, class, YAML-ish param_str)."""
    out = {'name': name, 'type': 'Python'}
    if bottoms:
        out['bottom'] = list(bottoms)
    out['top'] = list(tops)
    out['python_param'] = {'module': module, 'layer': layer, 'param_str': param_str}
    return out


def silence(blob):
    """Swallow a blob no layer consumes (Caffe would otherwise treat it as a net output)."""
    return {'name': f'silence_{blob}', 'type': 'Silence', 'bottom': blob}


def softmax_loss(name, score, labels, top):
    """Softmax loss over labelled entries (label -1 is ignored), no gradient into the labels."""
    return {'name': name, 'type': 'SoftmaxWithLoss', 'bottom': [score, labels],
            'propagate_down': [True, False], 'top': top, 'loss_weight': 1,
            'loss_param': {'ignore_label': -1, 'normalize': True}}


def smooth_l1_loss(name, prefix, top, sigma=None):
    """SmoothL1Loss on ``<prefix>pred`` against targets with inside and outside weights."""
    layer = {'name': name, 'type': 'SmoothL1Loss',
             'bottom': [f'{prefix}pred', f'{prefix}targets', f'{prefix}inside_weights',
                        f'{prefix}outside_weights'],
             'top': top, 'loss_weight': 1}
    if sigma is not None:
        layer['smooth_l1_loss_param'] = {'sigma': sigma}
    return layer


def num_classes_param(num_classes):
    """param_str of the layers that need the class count."""
    return f"'num_classes': {num_classes}"


def anchor_param(anchors, training):
    """param_str of the anchor-based layers; ``training`` (the anchor target layer) adds allowed_border.

    One key per line: param_str is parsed as a YAML block mapping.
    """
    lines = [f"'feat_stride': {FEAT_STRIDE}"]
    if anchors.scales is not None:
        lines.append(f"'scales': [{', '.join(str(s) for s in anchors.scales)}]")
    if anchors.ratios is not None:
        lines.append(f"'ratios': [{', '.join(str(r) for r in anchors.ratios)}]")
    if training and anchors.allowed_border is not None:
        lines.append(f"'allowed_border': {anchors.allowed_border}")
    return '\n'.join(lines)


# ------------------------------------------------------------------------------------------------------------
# Backbones
# ------------------------------------------------------------------------------------------------------------

def _conv_params(name, arch, frozen_shared, test):
    """Multipliers of shared conv ``name``: none at test, frozen when asked or always frozen, else learned."""
    if test:
        return NO_MULTIPLIERS
    if frozen_shared or name.startswith(arch.always_frozen):
        return FROZEN
    return LEARNED


def zf_backbone(arch, frozen_shared, test):
    """ZF conv1-conv5 (stride 16, 256 channels)."""
    def p(name):
        return _conv_params(name, arch, frozen_shared, test)

    return [
        conv('conv1', 'data', 'conv1', 96, 7, 3, 2, p('conv1')), relu('relu1', 'conv1'),
        lrn('norm1', 'conv1', 'norm1', ZF_LRN), max_pool('pool1', 'norm1', 'pool1', 3, 2, pad=1),
        conv('conv2', 'pool1', 'conv2', 256, 5, 2, 2, p('conv2')), relu('relu2', 'conv2'),
        lrn('norm2', 'conv2', 'norm2', ZF_LRN), max_pool('pool2', 'norm2', 'pool2', 3, 2, pad=1),
        conv('conv3', 'pool2', 'conv3', 384, 3, 1, 1, p('conv3')), relu('relu3', 'conv3'),
        conv('conv4', 'conv3', 'conv4', 384, 3, 1, 1, p('conv4')), relu('relu4', 'conv4'),
        conv('conv5', 'conv4', 'conv5', 256, 3, 1, 1, p('conv5')), relu('relu5', 'conv5'),
    ]


def vgg_m_backbone(arch, frozen_shared, test):
    """VGG_CNN_M_1024 conv1-conv5 (stride 16, 512 channels); conv1 and the pools unpadded, as released."""
    def p(name):
        return _conv_params(name, arch, frozen_shared, test)

    return [
        conv('conv1', 'data', 'conv1', 96, 7, 0, 2, p('conv1')), relu('relu1', 'conv1'),
        lrn('norm1', 'conv1', 'norm1', VGG_M_LRN), max_pool('pool1', 'norm1', 'pool1', 3, 2),
        conv('conv2', 'pool1', 'conv2', 256, 5, 1, 2, p('conv2')), relu('relu2', 'conv2'),
        lrn('norm2', 'conv2', 'norm2', VGG_M_LRN), max_pool('pool2', 'norm2', 'pool2', 3, 2),
        conv('conv3', 'pool2', 'conv3', 512, 3, 1, 1, p('conv3')), relu('relu3', 'conv3'),
        conv('conv4', 'conv3', 'conv4', 512, 3, 1, 1, p('conv4')), relu('relu4', 'conv4'),
        conv('conv5', 'conv4', 'conv5', 512, 3, 1, 1, p('conv5')), relu('relu5', 'conv5'),
    ]


# VGG-16 blocks: (output channels, number of 3x3 convs); 2x2 max pooling after the first four.
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def vgg16_backbone(arch, frozen_shared, test):
    """VGG-16 conv1_1-conv5_3 (stride 16, 512 channels)."""
    layers, bottom = [], 'data'
    for block, (channels, depth) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, depth + 1):
            name = f'conv{block}_{i}'
            params = _conv_params(name, arch, frozen_shared, test)
            layers += [conv(name, bottom, name, channels, 3, 1, 1, params), relu(f'relu{block}_{i}', name)]
            bottom = name
        if block < len(VGG16_BLOCKS):
            layers.append(max_pool(f'pool{block}', bottom, f'pool{block}', 2, 2))
            bottom = f'pool{block}'
    return layers


# TINY's shared convs: (name, output channels, kernel, stride, dilation, max pooling (kernel, stride) after
# it). Dilation in conv4/conv5 widens the receptive field (about 280 px at the RPN) for the large objects.
TINY_CONVS = (('conv1', 16, 5, 2, 1, (3, 2)),
              ('conv2', 32, 3, 1, 1, (3, 2)),
              ('conv3', 64, 3, 1, 1, (3, 2)),
              ('conv4', 128, 3, 1, 2, None),
              ('conv5', 128, 3, 1, 4, None))


def batch_norm(blob, params):
    """In-place BatchNorm + Scale after conv ``blob``.

    Every TINY net, train and test, normalises with the statistics of the current minibatch (one image at
    test time and in RPN / end-to-end training): the backgrounds' colours vary a lot between images, and
    the stored running averages describe none of them well. The running averages Caffe still keeps in the
    BatchNorm blobs are therefore never used. Frozen stages freeze the Scale parameters with the convs.
    """
    bn = {'name': f'{blob}_bn', 'type': 'BatchNorm', 'bottom': blob, 'top': blob,
          'batch_norm_param': {'use_global_stats': False}}
    scale = _with_params({'name': f'{blob}_scale', 'type': 'Scale', 'bottom': blob, 'top': blob}, params)
    scale['scale_param'] = {'bias_term': True}
    return [bn, scale]


def tiny_backbone(arch, frozen_shared, test):
    """TINY's shared convs (stride 16), each followed by batch normalisation: TINY trains from a random
    initialisation."""
    layers, bottom = [], 'data'
    for index, (name, channels, kernel, stride, dilation, pool) in enumerate(TINY_CONVS, start=1):
        params = _conv_params(name, arch, frozen_shared, test)
        layer = conv(name, bottom, name, channels, kernel, dilation * (kernel // 2), stride, params)
        if dilation > 1:
            layer['convolution_param']['dilation'] = dilation
        layers.append(layer)
        layers += batch_norm(name, params)
        layers.append(relu(f'relu{index}', name))
        bottom = name
        if pool is not None:
            layers.append(max_pool(f'pool{index}', bottom, f'pool{index}', pool[0], pool[1], pad=1))
            bottom = f'pool{index}'
    return layers


ZF = Arch(dirname='ZF', net_name='ZF', backbone=zf_backbone, feature_blob='conv5', feature_channels=256,
          rpn_channels=256, pooled_size=6, roi_pool_name='roi_pool_conv5', dropout_scale_train=False,
          snapshot_name='zf', always_frozen=(),
          alt_opt_rpn_names=RpnNames('rpn_conv1', 'rpn_relu1', 'rpn_conv1'))
VGG16 = Arch(dirname='VGG16', net_name='VGG_ILSVRC_16_layers', backbone=vgg16_backbone,
             feature_blob='conv5_3', feature_channels=512, rpn_channels=512, pooled_size=7,
             roi_pool_name='roi_pool5',
             dropout_scale_train=True, snapshot_name='vgg16', always_frozen=('conv1_', 'conv2_'),
             alt_opt_rpn_names=STANDARD_RPN, head_loss_tops=('loss_cls', 'loss_bbox'))
# The released VGG_CNN_M_1024 detectors: 256-d RPN conv on conv5, conv1 fixed, fc7 of 1024.
VGG_CNN_M_1024 = Arch(dirname='VGG_CNN_M_1024', net_name='VGG_CNN_M_1024', backbone=vgg_m_backbone,
                      feature_blob='conv5', feature_channels=512, rpn_channels=256, pooled_size=6,
                      roi_pool_name='roi_pool5', dropout_scale_train=True, snapshot_name='vgg_cnn_m_1024',
                      always_frozen=('conv1',), alt_opt_rpn_names=STANDARD_RPN,
                      head_loss_tops=('loss_cls', 'loss_bbox'), fc_dims=(4096, 1024))
# TINY: the structure and names of the released detectors at the size of the embedded SYNTH dataset
# (narrow fc layers, no dropout: it trains from scratch on 2 CPU cores).
TINY = Arch(dirname='TINY', net_name='TINY', backbone=tiny_backbone, feature_blob='conv5',
            feature_channels=TINY_CONVS[-1][1], rpn_channels=128, pooled_size=6, roi_pool_name='roi_pool5',
            dropout_scale_train=None, snapshot_name='tiny', always_frozen=(), alt_opt_rpn_names=STANDARD_RPN,
            fc_dims=(512, 512))


# ------------------------------------------------------------------------------------------------------------
# RPN and Fast R-CNN parts
# ------------------------------------------------------------------------------------------------------------

def rpn_layers(arch, anchors, names, params, test):
    """The RPN: 3x3 conv + ReLU, sibling 1x1 objectness (2A) and box (4A) convs."""
    std = None if test else 0.01
    return [
        conv(names.conv, arch.feature_blob, names.output, arch.rpn_channels, 3, 1, 1, params, std),
        relu(names.relu, names.output),
        conv('rpn_cls_score', names.output, 'rpn_cls_score', 2 * anchors.count, 1, 0, 1, params, std),
        conv('rpn_bbox_pred', names.output, 'rpn_bbox_pred', BOX_DELTAS * anchors.count, 1, 0, 1, params,
             std),
    ]


def rpn_score_reshape():
    """(1, 2A, H, W) -> (1, 2, A*H, W): background/object scores of all anchors for a 2-way softmax."""
    return reshape('rpn_cls_score_reshape', 'rpn_cls_score', 'rpn_cls_score_reshape', 2)


def rpn_loss_layers(anchors):
    """Anchor targets and the RPN losses (SmoothL1 with sigma 3: the released balance of the two terms)."""
    return [
        python_layer('rpn-data', 'rpn.anchor_target_layer', 'AnchorTargetLayer',
                     ['rpn_cls_score', 'gt_boxes', 'im_info', 'data'],
                     ['rpn_labels', 'rpn_bbox_targets', 'rpn_bbox_inside_weights',
                      'rpn_bbox_outside_weights'], anchor_param(anchors, training=True)),
        softmax_loss('rpn_loss_cls', 'rpn_cls_score_reshape', 'rpn_labels', 'rpn_cls_loss'),
        smooth_l1_loss('rpn_loss_bbox', 'rpn_bbox_', 'rpn_loss_bbox', sigma=3.0),
    ]


def proposal_layers(anchors, tops, cut_backward=False):
    """Objectness softmax and the proposal layer; ``cut_backward`` stops Caffe from backpropagating into
    it."""
    proposal = python_layer('proposal', 'rpn.proposal_layer', 'ProposalLayer',
                            ['rpn_cls_prob_reshape', 'rpn_bbox_pred', 'im_info'], tops,
                            anchor_param(anchors, training=False))
    if cut_backward:
        proposal['propagate_down'] = [False, False, False]
    return [
        {'name': 'rpn_cls_prob', 'type': 'Softmax', 'bottom': 'rpn_cls_score_reshape', 'top': 'rpn_cls_prob'},
        reshape('rpn_cls_prob_reshape', 'rpn_cls_prob', 'rpn_cls_prob_reshape', 2 * anchors.count),
        proposal,
    ]


def _fc_block(index, bottom, num_output, arch, params):
    """fc<index> + ReLU (+ dropout when the arch has it)."""
    name = f'fc{index}'
    layers = [inner_product(name, bottom, name, num_output, params), relu(f'relu{index}', name)]
    if arch.dropout_scale_train is not None:
        layers.append(dropout(f'drop{index}', name, arch))
    return layers


def fast_rcnn_layers(arch, num_classes, params, test):
    """RoI pooling, fc6/fc7 with ReLU and dropout, cls_score and bbox_pred."""
    size = arch.pooled_size
    pool = {'name': arch.roi_pool_name, 'type': 'ROIPooling', 'bottom': [arch.feature_blob, 'rois'],
            'top': arch.roi_pool_name,
            'roi_pooling_param': {'pooled_w': size, 'pooled_h': size, 'spatial_scale': 1.0 / FEAT_STRIDE}}
    fc6, fc7 = arch.fc_dims
    return [
        pool,
        *_fc_block(6, arch.roi_pool_name, fc6, arch, params),
        *_fc_block(7, 'fc6', fc7, arch, params),
        inner_product('cls_score', 'fc7', 'cls_score', num_classes, params, None if test else 0.01),
        inner_product('bbox_pred', 'fc7', 'bbox_pred', BOX_DELTAS * num_classes, params,
                      None if test else 0.001),
    ]


def fast_rcnn_loss_layers(arch):
    """Classification and box-regression losses of the head (SmoothL1 with sigma 1)."""
    cls_top, bbox_top = arch.head_loss_tops
    return [softmax_loss('loss_cls', 'cls_score', 'labels', cls_top),
            smooth_l1_loss('loss_bbox', 'bbox_', bbox_top)]


def frozen_fc_layers(arch):
    """fc6/fc7 fed by a dummy blob: carried unchanged through an RPN stage so its snapshot keeps them."""
    dummy = 'dummy_roi_pool_conv5'
    dim = arch.feature_channels * arch.pooled_size ** 2
    fc6, fc7 = arch.fc_dims
    return [
        {'name': dummy, 'type': 'DummyData', 'top': dummy,
         'dummy_data_param': {'shape': {'dim': [1, dim]}, 'data_filler': ZERO}},
        inner_product('fc6', dummy, 'fc6', fc6, FROZEN), relu('relu6', 'fc6'),
        inner_product('fc7', 'fc6', 'fc7', fc7, FROZEN),
        silence('fc7'),
    ]


def rpn_data_layer(num_classes):
    """Data layer in RPN mode: one image, its im_info and gt boxes."""
    return python_layer('input-data', 'roi_data_layer.layer', 'RoIDataLayer', [],
                        ['data', 'im_info', 'gt_boxes'], num_classes_param(num_classes))


def fast_rcnn_data_layer(num_classes):
    """Data layer in Fast R-CNN mode: images, sampled RoIs with labels and regression targets."""
    return python_layer('data', 'roi_data_layer.layer', 'RoIDataLayer', [],
                        ['data', 'rois', 'labels', 'bbox_targets', 'bbox_inside_weights',
                         'bbox_outside_weights'], num_classes_param(num_classes))


def test_inputs(second='im_info'):
    """Net inputs of the test nets (placeholder shapes; the test code reshapes them): ``data`` and
    ``im_info`` (RPN nets) or ``rois`` (R x 5 ``[level, x1, y1, x2, y2]``, Fast R-CNN nets)."""
    dims = {'im_info': [1, IM_INFO_DIM], 'rois': [1, ROI_DIM]}[second]
    return render({'input': 'data', 'input_shape': {'dim': list(TEST_INPUT_SHAPE)}}) + \
        render({'input': second, 'input_shape': {'dim': dims}})


def cls_prob():
    """Class probabilities of the test nets."""
    return {'name': 'cls_prob', 'type': 'Softmax', 'bottom': 'cls_score', 'top': 'cls_prob'}


# ------------------------------------------------------------------------------------------------------------
# Nets (each returns the body text: name, inputs or data layer, sections)
# ------------------------------------------------------------------------------------------------------------

def net_text(arch, head, sections):
    """A net's body: name, optional inputs/data text, then the sections."""
    return render({'name': arch.net_name}) + head + ''.join(sections)


def data_section(layer):
    """The data layer as text."""
    return render({'layer': layer})


def backbone_section(arch, frozen_shared=False, test=False):
    """The shared convs as a section."""
    return section('conv layers (shared)', arch.backbone(arch, frozen_shared, test))


def rpn_stage_train(arch, family, frozen_shared):
    """Alt-opt RPN training (stage 1: from ImageNet; stage 2, the paper's step 3: shared convs frozen)."""
    anchors, names = family.anchors, arch.alt_opt_rpn_names
    return net_text(arch, data_section(rpn_data_layer(family.num_classes)), [
        backbone_section(arch, frozen_shared),
        section('RPN', rpn_layers(arch, anchors, names, LEARNED, test=False) + [rpn_score_reshape()] +
                rpn_loss_layers(anchors)),
        section('Fast R-CNN (frozen, only carried into the snapshot)', frozen_fc_layers(arch)),
    ])


def fast_rcnn_stage_train(arch, family, frozen_shared):
    """Alt-opt Fast R-CNN training on precomputed proposals (stage 2 = the paper's step 4: convs frozen)."""
    names, k = arch.alt_opt_rpn_names, family.num_classes
    return net_text(arch, data_section(fast_rcnn_data_layer(k)), [
        backbone_section(arch, frozen_shared),
        section('Fast R-CNN', fast_rcnn_layers(arch, k, LEARNED, test=False) + fast_rcnn_loss_layers(arch)),
        section('RPN (frozen, only carried into the snapshot)',
                rpn_layers(arch, family.anchors, names, FROZEN, test=False) +
                [silence('rpn_cls_score'), silence('rpn_bbox_pred')]),
    ])


def rpn_test(arch, family):
    """RPN alone at test time: proposals ``rois`` (R x 5) and their objectness ``scores``."""
    anchors = family.anchors
    return net_text(arch, test_inputs(), [
        backbone_section(arch, test=True),
        section('RPN', rpn_layers(arch, anchors, arch.alt_opt_rpn_names, NO_MULTIPLIERS, test=True) +
                [rpn_score_reshape()]),
        section('Proposals', proposal_layers(anchors, ['rois', 'scores'])),
    ])


def detector_test(arch, family, rpn_names):
    """The full detector at test time: proposals -> head -> ``cls_prob`` and ``bbox_pred``."""
    anchors = family.anchors
    return net_text(arch, test_inputs(), [
        backbone_section(arch, test=True),
        section('RPN', rpn_layers(arch, anchors, rpn_names, NO_MULTIPLIERS, test=True) +
                [rpn_score_reshape()]),
        section('Proposals', proposal_layers(anchors, ['rois'])),
        section('Fast R-CNN', fast_rcnn_layers(arch, family.num_classes, NO_MULTIPLIERS, test=True) +
                [cls_prob()]),
    ])


def end2end_train(arch, family):
    """Approximate joint training: RPN losses + proposals -> proposal targets -> head losses, one net."""
    anchors, k = family.anchors, family.num_classes
    proposal_target = python_layer(
        'roi-data', 'rpn.proposal_target_layer', 'ProposalTargetLayer', ['rpn_rois', 'gt_boxes'],
        ['rois', 'labels', 'bbox_targets', 'bbox_inside_weights', 'bbox_outside_weights'],
        num_classes_param(k))
    return net_text(arch, data_section(rpn_data_layer(k)), [
        backbone_section(arch),
        section('RPN', rpn_layers(arch, anchors, STANDARD_RPN, LEARNED, test=False) + [rpn_score_reshape()] +
                rpn_loss_layers(anchors)),
        # Proposals are treated as fixed boxes: no gradient flows through their coordinates.
        section('Proposals', proposal_layers(anchors, ['rpn_rois'], cut_backward=True) + [proposal_target]),
        section('Fast R-CNN', fast_rcnn_layers(arch, k, LEARNED, test=False) + fast_rcnn_loss_layers(arch)),
    ])


def fast_rcnn_train(arch, family):
    """Fast R-CNN on precomputed proposals (SS, EB, dense windows or an RPN's file), from ImageNet."""
    k = family.num_classes
    return net_text(arch, data_section(fast_rcnn_data_layer(k)), [
        backbone_section(arch),
        section('Fast R-CNN', fast_rcnn_layers(arch, k, LEARNED, test=False) + fast_rcnn_loss_layers(arch)),
    ])


def fast_rcnn_test(arch, family):
    """Fast R-CNN at test time on given proposals ``rois``: ``cls_prob`` and ``bbox_pred``."""
    return net_text(arch, test_inputs('rois'), [
        backbone_section(arch, test=True),
        section('Fast R-CNN', fast_rcnn_layers(arch, family.num_classes, NO_MULTIPLIERS, test=True) +
                [cls_prob()]),
    ])


def alt_opt_nets(arch, family):
    """``{filename: body}`` of the alt-opt nets."""
    nets = {'rpn_test.pt': rpn_test(arch, family),
            'faster_rcnn_test.pt': detector_test(arch, family, arch.alt_opt_rpn_names)}
    for stage, frozen in (('stage1', False), ('stage2', True)):
        nets[f'{stage}_rpn_train.pt'] = rpn_stage_train(arch, family, frozen)
        nets[f'{stage}_fast_rcnn_train.pt'] = fast_rcnn_stage_train(arch, family, frozen)
    return nets


def end2end_nets(arch, family):
    """``{filename: body}`` of the end-to-end nets."""
    return {'train.prototxt': end2end_train(arch, family),
            'test.prototxt': detector_test(arch, family, STANDARD_RPN)}


def fast_rcnn_nets(arch, family):
    """``{filename: body}`` of the Fast R-CNN nets."""
    return {'train.prototxt': fast_rcnn_train(arch, family), 'test.prototxt': fast_rcnn_test(arch, family)}


# Method directory -> the function writing its nets.
METHODS = {'faster_rcnn_alt_opt': alt_opt_nets, 'faster_rcnn_end2end': end2end_nets,
           'fast_rcnn': fast_rcnn_nets}


# ------------------------------------------------------------------------------------------------------------
# Solvers and families
# ------------------------------------------------------------------------------------------------------------

def solver_body(arch, family, method, solver):
    """A solver's text (before the family's style is applied)."""
    fields = {'train_net': f'{REPO_MODELS_DIR}/{family.dirname}/{arch.dirname}/{method}/{solver.train_net}',
              **family.solver_head, 'stepsize': solver.stepsize}
    if solver.max_iter is not None:
        fields['max_iter'] = solver.max_iter
    fields.update(family.solver_tail)
    fields['snapshot_prefix'] = f'{arch.snapshot_name}_{solver.kind}'
    if solver.iter_size is not None:
        fields['iter_size'] = solver.iter_size
    return render(fields)


def released_alt_opt_solvers():
    """The released alt-opt solvers: RPN step at 60k (of 80k), Fast R-CNN step at 30k (of 40k)."""
    solvers = []
    for stage in ('stage1', 'stage2'):
        solvers += [Solver(f'{stage}_rpn_solver60k80k.pt', f'{stage}_rpn_train.pt', 'rpn', 60000),
                    Solver(f'{stage}_fast_rcnn_solver30k40k.pt', f'{stage}_fast_rcnn_train.pt', 'fast_rcnn',
                           30000)]
    return tuple(solvers)


def tiny_solver(file, train_net, kind, max_iter, iter_size=None):
    """A TINY solver: the step at 3/4 of ``max_iter`` (the default length the training tools use)."""
    return Solver(file, train_net, kind, max_iter * 3 // 4, max_iter=max_iter, iter_size=iter_size)


def tiny_alt_opt_solvers():
    """TINY's alt-opt stages: 3000 / 4000 / 2000 / 4000 iterations."""
    lengths = {('stage1', 'rpn'): 3000, ('stage1', 'fast_rcnn'): 4000, ('stage2', 'rpn'): 2000,
               ('stage2', 'fast_rcnn'): 4000}
    return tuple(tiny_solver(f'{stage}_{kind}_solver.pt', f'{stage}_{kind}_train.pt', kind, max_iter)
                 for (stage, kind), max_iter in lengths.items())



# The released solver settings (max_iter comes from the training tools).
RELEASED_SOLVER_HEAD = {'base_lr': 0.001, 'lr_policy': 'step', 'gamma': 0.1}
RELEASED_SOLVER_TAIL = {'display': 20, 'average_loss': 100, 'momentum': 0.9, 'weight_decay': 0.0005,
                        # The training wrapper snapshots itself (it folds the bbox normalisation into
                        # bbox_pred).
                        'snapshot': 0}

PASCAL_VOC = Family(
    dirname='pascal_voc', num_classes=21, anchors=Anchors(), archs=(ZF, VGG16, VGG_CNN_M_1024),
    solvers={'faster_rcnn_alt_opt': released_alt_opt_solvers(),
             'faster_rcnn_end2end': (Solver('solver.prototxt', 'train.prototxt', 'faster_rcnn', 50000,
                                            iter_size=2),),
             # The released Fast R-CNN solver: 40k iterations, step at 30k.
             'fast_rcnn': (Solver('solver.prototxt', 'train.prototxt', 'fast_rcnn', 30000),)},
    solver_head=RELEASED_SOLVER_HEAD, solver_tail=RELEASED_SOLVER_TAIL)

# MS COCO as released: 80 classes + background, 12 anchors (scale 4 added for the small objects), end-to-end
# and Fast R-CNN only; steps at 350k (of 490k) and 200k (of 280k) iterations.
COCO = Family(
    dirname='coco', num_classes=81, anchors=Anchors(scales=(4, 8, 16, 32)), archs=(VGG16, VGG_CNN_M_1024),
    solvers={'faster_rcnn_end2end': (Solver('solver.prototxt', 'train.prototxt', 'faster_rcnn', 350000,
                                            iter_size=2),),
             'fast_rcnn': (Solver('solver.prototxt', 'train.prototxt', 'fast_rcnn', 200000),)},
    solver_head=RELEASED_SOLVER_HEAD, solver_tail=RELEASED_SOLVER_TAIL)

# The embedded SYNTH dataset. Its nets carry the VOC class count like the pascal_voc ones (the tools adapt
# them to the dataset's classes with fast_rcnn.models.adapt_prototxt).
# Anchor scales (x 16 px): 32 to 256 px squares for objects of about 20 to 320 px. A larger scale would
# never lie inside a training image (anchors crossing the border are not labelled), so it would stay
# untrained and rank arbitrary boxes at test time.
# allowed_border: at 400 px most 256-px anchors cross the border; left unlabelled they never learn, yet the
# test-time RPN scores them like any other (clipped), and they crowded the top proposals: measured on
# synth_test after 2000 stage-1 RPN iterations, 0 px -> 64 px moved recall@50 proposals (IoU 0.5) from 0.46
# to 0.62 and the share of top-50 proposals touching the border from 88 % to 29 %.
# Solvers: SGD with momentum 0.9 as in the paper; the learning rate is 30x the released one because the
# heads start from a random initialisation, batch norm keeps the shared convs well scaled, and the
# schedules are short. Measured on synth_test after 2000 stage-1 RPN iterations: 0.01 -> 0.03 moved
# recall@300 proposals (IoU 0.5) from 0.71 to 0.84. Early from-scratch updates of the Fast R-CNN head
# explode at this rate without a gradient norm cap.
SYNTH = Family(
    dirname='synth', num_classes=21,
    anchors=Anchors(scales=(2, 4, 8, 16), ratios=(0.5, 1, 2), allowed_border=64), archs=(TINY,),
    solvers={'faster_rcnn_alt_opt': tiny_alt_opt_solvers(),
             'faster_rcnn_end2end': (tiny_solver('solver.prototxt', 'train.prototxt', 'faster_rcnn', 10500),),
             # Fast R-CNN on external proposals: as long as the alt-opt Fast R-CNN stages.
             'fast_rcnn': (tiny_solver('solver.prototxt', 'train.prototxt', 'fast_rcnn', 4000),)},
    solver_head={'base_lr': 0.03, 'lr_policy': 'step', 'gamma': 0.1},
    solver_tail={'display': 50, 'momentum': 0.9, 'weight_decay': 0.0005, 'clip_gradients': 10.0,
                 'snapshot': 0},
    style='canonical')

FAMILIES = (PASCAL_VOC, COCO, SYNTH)


def family_files(family):
    """``{path relative to models/: text}`` of a family's nets and solvers."""
    files = {}
    for arch in family.archs:
        for method, solvers in family.solvers.items():
            folder = osp.join(family.dirname, arch.dirname, method)
            for name, body in METHODS[method](arch, family).items():
                files[osp.join(folder, name)] = finish(family, body, 'NetParameter')
            for solver in solvers:
                files[osp.join(folder, solver.file)] = finish(
                    family, solver_body(arch, family, method, solver), 'SolverParameter')
    return files


def all_files(families=FAMILIES):
    """``{path relative to models/: text}`` of every generated file."""
    files = {}
    for family in families:
        files.update(family_files(family))
    return files


def write_files(files, root):
    """Write ``{relative path: text}`` under ``root``, printing each path."""
    for rel, text in files.items():
        path = osp.join(root, rel)
        os.makedirs(osp.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
        print(path)


def main(argv=None):
    """Write every file under models/ (or ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default=MODELS_DIR, help='root to write under (default: models/)')
    args = parser.parse_args(argv)
    write_files(all_files(), args.out)


if __name__ == '__main__':
    main()
