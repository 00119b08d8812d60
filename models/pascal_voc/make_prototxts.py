#!/usr/bin/env python3
"""Write the PASCAL VOC network definitions and solvers for ZF and VGG-16.

The nets share most of their text (backbones, RPN, Fast R-CNN head), so they are written from one description
here instead of being edited by hand in twenty places. Run from anywhere:

    python models/pascal_voc/make_prototxts.py

The output mirrors the released py-faster-rcnn nets: the same layer and blob names (released caffemodels load
by name), the same learning-rate multipliers and fillers. In alternating optimisation every stage's net also
carries the other task's layers with frozen parameters, so that its snapshot holds a complete detector and the
next stage can start from it (the RPN nets feed fc6/fc7 from a DummyData blob; the Fast R-CNN nets silence the
RPN outputs).
"""

import os
import os.path as osp
from collections.abc import Callable
from dataclasses import dataclass

MODELS_DIR = osp.dirname(osp.abspath(__file__))
# train_net paths in the solvers are relative to the repository root, like the released ones.
REPO_MODELS_DIR = 'models/pascal_voc'
HEADER = '# Written by models/pascal_voc/make_prototxts.py: edit that script and rerun it, not this file.\n'

# PASCAL VOC: 20 object classes + background. Other class lists: fast_rcnn.models.adapt_prototxt.
NUM_CLASSES = 21
# 3 aspect ratios x 3 scales.
NUM_ANCHORS = 9
# conv5 has stride 16 in both backbones; RoI pooling maps image coordinates with its inverse.
FEAT_STRIDE = 16
FC_DIM = 4096
DROPOUT_RATIO = 0.5
# Test-time input placeholder; the test code reshapes `data` to each image.
TEST_INPUT_SHAPE = (1, 3, 224, 224)
# im_info = (height, width, scale).
IM_INFO_DIM = 3
# A RoI = (image index in the batch, x1, y1, x2, y2).
ROI_DIM = 5

# Solver settings shared by every stage (the released values).
SOLVER_BASE = {'base_lr': 0.001, 'lr_policy': 'step', 'gamma': 0.1}
SOLVER_TAIL = {'display': 20, 'average_loss': 100, 'momentum': 0.9, 'weight_decay': 0.0005,
               # The training wrapper snapshots itself (it folds the bbox normalisation into bbox_pred).
               'snapshot': 0}
# Learning-rate step of each training kind (the tools pass max_iter: 80k / 40k / 70k).
RPN_STEPSIZE = 60000
FAST_RCNN_STEPSIZE = 30000
END2END_STEPSIZE = 50000
END2END_ITER_SIZE = 2


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
    """What differs between the ZF and VGG-16 detectors."""
    dirname: str
    net_name: str
    backbone: Callable
    feature_blob: str
    feature_channels: int
    rpn_channels: int
    pooled_size: int
    roi_pool_name: str
    # ZF's ImageNet model was trained with unscaled dropout (the mask only), VGG-16's with the usual scaling.
    dropout_scale_train: bool
    snapshot_name: str
    # VGG-16 keeps its first conv blocks fixed in every train net (they generalise and save memory).
    always_frozen: tuple
    # The released alt-opt ZF nets name the RPN conv 'rpn_conv1'; every other net names it 'rpn_conv/3x3'.
    alt_opt_rpn_names: RpnNames
    # Tops of the head's two losses: the released ZF nets write (cls_loss, bbox_loss), VGG-16's
    # (loss_cls, loss_bbox); log parsers rely on them.
    head_loss_tops: tuple = ('cls_loss', 'bbox_loss')


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
        return '"' + value.replace('\\', '\\\\').replace('"', '\\"') + '"'
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


def lrn(name, bottom, top):
    """ZF's within-channel local response normalisation."""
    return {'name': name, 'type': 'LRN', 'bottom': bottom, 'top': top,
            'lrn_param': {'local_size': 3, 'alpha': 0.00005, 'beta': 0.75,
                          'norm_region': Enum('WITHIN_CHANNEL'), 'engine': Enum('CAFFE')}}


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


def num_classes_param():
    """param_str of the layers that need the class count."""
    return f"'num_classes': {NUM_CLASSES}"


def feat_stride_param():
    """param_str of the anchor-based layers."""
    return f"'feat_stride': {FEAT_STRIDE}"


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
        lrn('norm1', 'conv1', 'norm1'), max_pool('pool1', 'norm1', 'pool1', 3, 2, pad=1),
        conv('conv2', 'pool1', 'conv2', 256, 5, 2, 2, p('conv2')), relu('relu2', 'conv2'),
        lrn('norm2', 'conv2', 'norm2'), max_pool('pool2', 'norm2', 'pool2', 3, 2, pad=1),
        conv('conv3', 'pool2', 'conv3', 384, 3, 1, 1, p('conv3')), relu('relu3', 'conv3'),
        conv('conv4', 'conv3', 'conv4', 384, 3, 1, 1, p('conv4')), relu('relu4', 'conv4'),
        conv('conv5', 'conv4', 'conv5', 256, 3, 1, 1, p('conv5')), relu('relu5', 'conv5'),
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


ZF = Arch(dirname='ZF', net_name='ZF', backbone=zf_backbone, feature_blob='conv5', feature_channels=256,
          rpn_channels=256, pooled_size=6, roi_pool_name='roi_pool_conv5', dropout_scale_train=False,
          snapshot_name='zf', always_frozen=(),
          alt_opt_rpn_names=RpnNames('rpn_conv1', 'rpn_relu1', 'rpn_conv1'))
VGG16 = Arch(dirname='VGG16', net_name='VGG_ILSVRC_16_layers', backbone=vgg16_backbone,
             feature_blob='conv5_3', feature_channels=512, rpn_channels=512, pooled_size=7,
             roi_pool_name='roi_pool5',
             dropout_scale_train=True, snapshot_name='vgg16', always_frozen=('conv1_', 'conv2_'),
             alt_opt_rpn_names=STANDARD_RPN, head_loss_tops=('loss_cls', 'loss_bbox'))
ARCHS = (ZF, VGG16)


# ------------------------------------------------------------------------------------------------------------
# RPN and Fast R-CNN parts
# ------------------------------------------------------------------------------------------------------------

def rpn_layers(arch, names, params, test):
    """The RPN: 3x3 conv + ReLU, sibling 1x1 objectness (2A) and box (4A) convs."""
    std = None if test else 0.01
    return [
        conv(names.conv, arch.feature_blob, names.output, arch.rpn_channels, 3, 1, 1, params, std),
        relu(names.relu, names.output),
        conv('rpn_cls_score', names.output, 'rpn_cls_score', 2 * NUM_ANCHORS, 1, 0, 1, params, std),
        conv('rpn_bbox_pred', names.output, 'rpn_bbox_pred', 4 * NUM_ANCHORS, 1, 0, 1, params, std),
    ]


def rpn_score_reshape():
    """(1, 2A, H, W) -> (1, 2, A*H, W): background/object scores of all anchors for a 2-way softmax."""
    return reshape('rpn_cls_score_reshape', 'rpn_cls_score', 'rpn_cls_score_reshape', 2)


def rpn_loss_layers():
    """Anchor targets and the RPN losses (SmoothL1 with sigma 3: the released balance of the two terms)."""
    return [
        python_layer('rpn-data', 'rpn.anchor_target_layer', 'AnchorTargetLayer',
                     ['rpn_cls_score', 'gt_boxes', 'im_info', 'data'],
                     ['rpn_labels', 'rpn_bbox_targets', 'rpn_bbox_inside_weights',
                      'rpn_bbox_outside_weights'], feat_stride_param()),
        softmax_loss('rpn_loss_cls', 'rpn_cls_score_reshape', 'rpn_labels', 'rpn_cls_loss'),
        smooth_l1_loss('rpn_loss_bbox', 'rpn_bbox_', 'rpn_loss_bbox', sigma=3.0),
    ]


def proposal_layers(tops, cut_backward=False):
    """Objectness softmax and the proposal layer; ``cut_backward`` stops Caffe from backpropagating into
    it."""
    proposal = python_layer('proposal', 'rpn.proposal_layer', 'ProposalLayer',
                            ['rpn_cls_prob_reshape', 'rpn_bbox_pred', 'im_info'], tops, feat_stride_param())
    if cut_backward:
        proposal['propagate_down'] = [False, False, False]
    return [
        {'name': 'rpn_cls_prob', 'type': 'Softmax', 'bottom': 'rpn_cls_score_reshape', 'top': 'rpn_cls_prob'},
        reshape('rpn_cls_prob_reshape', 'rpn_cls_prob', 'rpn_cls_prob_reshape', 2 * NUM_ANCHORS),
        proposal,
    ]


def fast_rcnn_layers(arch, params, test):
    """RoI pooling, fc6/fc7 with ReLU and dropout, cls_score and bbox_pred."""
    size = arch.pooled_size
    pool = {'name': arch.roi_pool_name, 'type': 'ROIPooling', 'bottom': [arch.feature_blob, 'rois'],
            'top': arch.roi_pool_name,
            'roi_pooling_param': {'pooled_w': size, 'pooled_h': size, 'spatial_scale': 1.0 / FEAT_STRIDE}}
    return [
        pool,
        inner_product('fc6', arch.roi_pool_name, 'fc6', FC_DIM, params), relu('relu6', 'fc6'),
        dropout('drop6', 'fc6', arch),
        inner_product('fc7', 'fc6', 'fc7', FC_DIM, params), relu('relu7', 'fc7'),
        dropout('drop7', 'fc7', arch),
        inner_product('cls_score', 'fc7', 'cls_score', NUM_CLASSES, params, None if test else 0.01),
        inner_product('bbox_pred', 'fc7', 'bbox_pred', 4 * NUM_CLASSES, params, None if test else 0.001),
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
    return [
        {'name': dummy, 'type': 'DummyData', 'top': dummy,
         'dummy_data_param': {'shape': {'dim': [1, dim]}, 'data_filler': ZERO}},
        inner_product('fc6', dummy, 'fc6', FC_DIM, FROZEN), relu('relu6', 'fc6'),
        inner_product('fc7', 'fc6', 'fc7', FC_DIM, FROZEN),
        silence('fc7'),
    ]


def rpn_data_layer():
    """Data layer in RPN mode: one image, its im_info and gt boxes."""
    return python_layer('input-data', 'roi_data_layer.layer', 'RoIDataLayer', [],
                        ['data', 'im_info', 'gt_boxes'], num_classes_param())


def fast_rcnn_data_layer():
    """Data layer in Fast R-CNN mode: images, sampled RoIs with labels and regression targets."""
    return python_layer('data', 'roi_data_layer.layer', 'RoIDataLayer', [],
                        ['data', 'rois', 'labels', 'bbox_targets', 'bbox_inside_weights',
                         'bbox_outside_weights'], num_classes_param())


def test_inputs(second='im_info'):
    """Net inputs of the test nets (placeholder shapes; the test code reshapes them): ``data`` and
    ``im_info`` (RPN nets) or ``rois`` (R x 5 ``[level, x1, y1, x2, y2]``, Fast R-CNN nets)."""
    dims = {'im_info': [1, IM_INFO_DIM], 'rois': [1, ROI_DIM]}[second]
    return render({'input': 'data', 'input_shape': {'dim': list(TEST_INPUT_SHAPE)}}) + \
        render({'input': second, 'input_shape': {'dim': dims}})


# ------------------------------------------------------------------------------------------------------------
# Nets
# ------------------------------------------------------------------------------------------------------------

def net_text(arch, head, sections):
    """A whole prototxt: header, name, optional inputs/data text, then the sections."""
    return HEADER + render({'name': arch.net_name}) + head + ''.join(sections)


def data_section(layer):
    """The data layer as text."""
    return render({'layer': layer})


def backbone_section(arch, frozen_shared=False, test=False):
    """The shared convs as a section."""
    return section('conv layers (shared)', arch.backbone(arch, frozen_shared, test))


def rpn_stage_train(arch, frozen_shared):
    """Alt-opt RPN training (stage 1: from ImageNet; stage 2, the paper's step 3: shared convs frozen)."""
    names = arch.alt_opt_rpn_names
    return net_text(arch, data_section(rpn_data_layer()), [
        backbone_section(arch, frozen_shared),
        section('RPN', rpn_layers(arch, names, LEARNED, test=False) + [rpn_score_reshape()] +
                rpn_loss_layers()),
        section('Fast R-CNN (frozen, only carried into the snapshot)', frozen_fc_layers(arch)),
    ])


def fast_rcnn_stage_train(arch, frozen_shared):
    """Alt-opt Fast R-CNN training on precomputed proposals (stage 2 = the paper's step 4: convs frozen)."""
    names = arch.alt_opt_rpn_names
    return net_text(arch, data_section(fast_rcnn_data_layer()), [
        backbone_section(arch, frozen_shared),
        section('Fast R-CNN', fast_rcnn_layers(arch, LEARNED, test=False) + fast_rcnn_loss_layers(arch)),
        section('RPN (frozen, only carried into the snapshot)',
                rpn_layers(arch, names, FROZEN, test=False) + [silence('rpn_cls_score'),
                                                               silence('rpn_bbox_pred')]),
    ])


def rpn_test(arch):
    """RPN alone at test time: proposals ``rois`` (R x 5) and their objectness ``scores``."""
    return net_text(arch, test_inputs(), [
        backbone_section(arch, test=True),
        section('RPN', rpn_layers(arch, arch.alt_opt_rpn_names, NO_MULTIPLIERS, test=True) +
                [rpn_score_reshape()]),
        section('Proposals', proposal_layers(['rois', 'scores'])),
    ])


def detector_test(arch, rpn_names):
    """The full detector at test time: proposals -> head -> ``cls_prob`` and ``bbox_pred``."""
    return net_text(arch, test_inputs(), [
        backbone_section(arch, test=True),
        section('RPN', rpn_layers(arch, rpn_names, NO_MULTIPLIERS, test=True) + [rpn_score_reshape()]),
        section('Proposals', proposal_layers(['rois'])),
        section('Fast R-CNN', fast_rcnn_layers(arch, NO_MULTIPLIERS, test=True) +
                [{'name': 'cls_prob', 'type': 'Softmax', 'bottom': 'cls_score', 'top': 'cls_prob'}]),
    ])


def end2end_train(arch):
    """Approximate joint training: RPN losses + proposals -> proposal targets -> head losses, one net."""
    proposal_target = python_layer(
        'roi-data', 'rpn.proposal_target_layer', 'ProposalTargetLayer', ['rpn_rois', 'gt_boxes'],
        ['rois', 'labels', 'bbox_targets', 'bbox_inside_weights', 'bbox_outside_weights'],
        num_classes_param())
    return net_text(arch, data_section(rpn_data_layer()), [
        backbone_section(arch),
        section('RPN', rpn_layers(arch, STANDARD_RPN, LEARNED, test=False) + [rpn_score_reshape()] +
                rpn_loss_layers()),
        # Proposals are treated as fixed boxes: no gradient flows through their coordinates.
        section('Proposals', proposal_layers(['rpn_rois'], cut_backward=True) + [proposal_target]),
        section('Fast R-CNN', fast_rcnn_layers(arch, LEARNED, test=False) + fast_rcnn_loss_layers(arch)),
    ])


def fast_rcnn_train(arch):
    """Fast R-CNN on precomputed proposals (SS, EB, dense windows or an RPN's file), from ImageNet."""
    return net_text(arch, data_section(fast_rcnn_data_layer()), [
        backbone_section(arch),
        section('Fast R-CNN', fast_rcnn_layers(arch, LEARNED, test=False) + fast_rcnn_loss_layers(arch)),
    ])


def fast_rcnn_test(arch):
    """Fast R-CNN at test time on given proposals ``rois``: ``cls_prob`` and ``bbox_pred``."""
    return net_text(arch, test_inputs('rois'), [
        backbone_section(arch, test=True),
        section('Fast R-CNN', fast_rcnn_layers(arch, NO_MULTIPLIERS, test=True) +
                [{'name': 'cls_prob', 'type': 'Softmax', 'bottom': 'cls_score', 'top': 'cls_prob'}]),
    ])


def solver_text(train_net, stepsize, snapshot_prefix, extra=None):
    """A solver prototxt (max_iter comes from the training tool)."""
    fields = {'train_net': train_net, **SOLVER_BASE, 'stepsize': stepsize, **SOLVER_TAIL,
              'snapshot_prefix': snapshot_prefix, **(extra or {})}
    return HEADER + render(fields)


def alt_opt_files(arch):
    """``{filename: text}`` of an arch's faster_rcnn_alt_opt directory."""
    rel = f'{REPO_MODELS_DIR}/{arch.dirname}/faster_rcnn_alt_opt'
    files = {'rpn_test.pt': rpn_test(arch),
             'faster_rcnn_test.pt': detector_test(arch, arch.alt_opt_rpn_names)}
    for stage, frozen in (('stage1', False), ('stage2', True)):
        files[f'{stage}_rpn_train.pt'] = rpn_stage_train(arch, frozen)
        files[f'{stage}_fast_rcnn_train.pt'] = fast_rcnn_stage_train(arch, frozen)
        files[f'{stage}_rpn_solver60k80k.pt'] = solver_text(
            f'{rel}/{stage}_rpn_train.pt', RPN_STEPSIZE, f'{arch.snapshot_name}_rpn')
        files[f'{stage}_fast_rcnn_solver30k40k.pt'] = solver_text(
            f'{rel}/{stage}_fast_rcnn_train.pt', FAST_RCNN_STEPSIZE, f'{arch.snapshot_name}_fast_rcnn')
    return files


def end2end_files(arch):
    """``{filename: text}`` of an arch's faster_rcnn_end2end directory."""
    rel = f'{REPO_MODELS_DIR}/{arch.dirname}/faster_rcnn_end2end'
    return {
        'train.prototxt': end2end_train(arch),
        'test.prototxt': detector_test(arch, STANDARD_RPN),
        'solver.prototxt': solver_text(f'{rel}/train.prototxt', END2END_STEPSIZE,
                                       f'{arch.snapshot_name}_faster_rcnn', {'iter_size': END2END_ITER_SIZE}),
    }


def fast_rcnn_files(arch):
    """``{filename: text}`` of an arch's fast_rcnn directory (the released Fast R-CNN solver: 40k
    iterations, step at 30k, passed by the tools)."""
    rel = f'{REPO_MODELS_DIR}/{arch.dirname}/fast_rcnn'
    return {
        'train.prototxt': fast_rcnn_train(arch),
        'test.prototxt': fast_rcnn_test(arch),
        'solver.prototxt': solver_text(f'{rel}/train.prototxt', FAST_RCNN_STEPSIZE,
                                       f'{arch.snapshot_name}_fast_rcnn'),
    }


# Sub-directory of each arch -> the function writing its files.
SUBDIRS = (('faster_rcnn_alt_opt', alt_opt_files), ('faster_rcnn_end2end', end2end_files),
           ('fast_rcnn', fast_rcnn_files))


def all_files():
    """``{path relative to models/pascal_voc: text}`` of every generated file."""
    files = {}
    for arch in ARCHS:
        for subdir, make in SUBDIRS:
            for name, text in make(arch).items():
                files[osp.join(arch.dirname, subdir, name)] = text
    return files


def write_files(files, root):
    """Write ``{relative path: text}`` under ``root``, printing each path."""
    for rel, text in files.items():
        path = osp.join(root, rel)
        os.makedirs(osp.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
        print(path)


def main():
    """Write every file under this directory."""
    write_files(all_files(), MODELS_DIR)


if __name__ == '__main__':
    main()
