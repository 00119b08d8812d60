"""Running a trained detector outside our Caffe: the OpenCV dnn deploy net and an OpenCV backend.

OpenCV 4.x dnn reads our test nets once the Python proposal layer (``rpn.proposal_layer.ProposalLayer``)
is replaced by OpenCV's native ``Proposal`` layer, whose parameters (``proposal_param``: feat_stride,
base_size, ratio, scale, pre_nms_topn, post_nms_topn, nms_thresh) travel in the prototxt. This module

* reads the proposal settings a test net runs with (its layer's param_str plus ``cfg.TEST``) and checks
  which of them OpenCV's layer can express (``proposal_settings``, ``opencv_limitations``);
* writes the OpenCV deploy prototxt (``opencv_deploy_text``) and the export's description
  (``export_manifest`` / ``read_manifest``: class names, pixel means, scales, post-processing);
* runs such a net in OpenCV with the interface ``fast_rcnn.test.im_detect`` expects of a Caffe net
  (``OpenCVNet``: ``blobs``, ``forward_segments``), so both engines share the pre- and post-processing;
* compares two engines' detections (``match_detections``).

What OpenCV's ``Proposal`` computes (read from its source, checked against ours in the tests): anchors of
``floor(base / sqrt(r) + 0.5)`` × ``floor(w · r + 0.5)`` pixels times each scale, centred at
``(x + 0.5) · feat_stride`` for a 16-px base, tiled in (h, w, anchor) order; the released decoding
(x2 = centre + w / 2, no −1) and clipping to [0, W−1] × [0, H−1] using im_info's height and width; rank by
objectness, keep ``pre_nms_topn``, NMS at ``nms_thresh`` with pixel-inclusive IoU, keep ``post_nms_topn``.
It has no minimum box size (the ``min_size`` field exists in OpenCV's proto but no OpenCV backend reads
it) and always returns ``post_nms_topn`` rows, zero-filled past the last proposal.

Boxes are ``[x1, y1, x2, y2]``, 0-based, pixel-inclusive, in the scaled input image's pixels for
proposals and in original-image pixels for detections.
"""

import inspect
import json
import os
import os.path as osp
import re
import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import yaml
from google.protobuf import text_format

from caffe.proto import caffe_pb2
from fast_rcnn.models import CLS_SCORE_LAYER, adapt_net
from fast_rcnn.test import PROPOSAL_TOP, SEGMENTS
from rpn.generate_anchors import generate_anchors, shifted_anchors
from rpn.proposal import generate_proposals
from utils.cython_bbox import bbox_overlaps

# Our proposal layer, as the test prototxts name it.
PYTHON_PROPOSAL_MODULE = 'rpn.proposal_layer'
PYTHON_PROPOSAL_LAYER = 'ProposalLayer'
# OpenCV's native layer type for it.
OPENCV_PROPOSAL_TYPE = 'Proposal'
# param_str keys our proposal layer reads.
PROPOSAL_PARAM_KEYS = ('feat_stride', 'scales', 'ratios')
# The anchors' base box side: rpn.generate_anchors' default, which our proposal layer always uses.
ANCHOR_BASE_SIZE = inspect.signature(generate_anchors).parameters['base_size'].default
_ANCHOR_DEFAULTS = {key: tuple(inspect.signature(generate_anchors).parameters[key].default)
                    for key in ('scales', 'ratios')}
# Blobs im_detect reads from a net (besides the proposals).
HEAD_BLOBS = ('cls_prob', 'bbox_pred')
# Format tag of the manifest written next to an export.
MANIFEST_FORMAT = 'faster-rcnn-deploy/1'
MANIFEST_NAME = 'deploy.json'


@dataclass(frozen=True)
class ProposalSettings:
    """Everything that decides a test net's proposals.

    ``feat_stride``: feature-map stride in pixels; ``base_size``: anchor base box side; ``ratios``,
    ``scales``: anchor aspect ratios (h / w) and scales; ``pre_nms_top_n``, ``post_nms_top_n``: boxes kept
    before / after NMS; ``nms_thresh``: NMS IoU threshold; ``min_size``: minimum box side in original-image
    pixels (``RPN_MIN_SIZE``; scaled by im_info[2] at run time). The last four come from ``cfg.TEST``.
    """
    feat_stride: int
    base_size: int
    ratios: tuple
    scales: tuple
    pre_nms_top_n: int
    post_nms_top_n: int
    nms_thresh: float
    min_size: float

    def to_json(self):
        """A JSON-serialisable dict (lists for the tuples)."""
        out = asdict(self)
        out['ratios'], out['scales'] = list(self.ratios), list(self.scales)
        return out


def read_net_text(path, allow_unknown_field=False):
    """Parse the text-format NetParameter at ``path``.

    ``allow_unknown_field`` skips fields our Caffe does not know (OpenCV's ``proposal_param``), which is
    enough to read an OpenCV deploy prototxt's structure. Errors name the file.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'network definition not found: {path}')
    net = caffe_pb2.NetParameter()
    with open(path, encoding='utf-8') as f:
        text = f.read()
    try:
        text_format.Parse(text, net, allow_unknown_field=allow_unknown_field)
    except text_format.ParseError as exc:
        raise ValueError(f'{path}: not a Caffe network definition ({exc})') from exc
    return net


def find_proposal_layer(net, source):
    """The one proposal layer of NetParameter ``net`` (our Python layer or OpenCV's ``Proposal``).

    ``source`` names the prototxt in errors. Raises ValueError when there is none or more than one.
    """
    found = [layer for layer in net.layer
             if layer.type == OPENCV_PROPOSAL_TYPE
             or (layer.type == 'Python' and layer.python_param.module == PYTHON_PROPOSAL_MODULE)]
    if len(found) != 1:
        raise ValueError(f'{source}: expected one proposal layer (Python {PYTHON_PROPOSAL_MODULE}.'
                         f'{PYTHON_PROPOSAL_LAYER} or {OPENCV_PROPOSAL_TYPE}), found {len(found)}')
    return found[0]


def proposal_settings(net, test_cfg, source):
    """The ProposalSettings of a test net whose proposal layer is our Python layer.

    ``net``: NetParameter; ``test_cfg``: ``cfg.TEST`` (RPN_PRE_NMS_TOP_N, RPN_POST_NMS_TOP_N,
    RPN_NMS_THRESH, RPN_MIN_SIZE and the RPN_USE_* ablation switches); ``source`` names the prototxt in
    errors. Raises ValueError for a param_str that is not a mapping, lacks ``feat_stride`` or has keys our
    layer does not read, and for settings OpenCV's layer cannot run at all (the Table 1 ablations, a
    non-positive top-N).
    """
    layer = find_proposal_layer(net, source)
    if layer.type != 'Python':
        raise ValueError(f'{source}: layer {layer.name!r} is already an OpenCV {OPENCV_PROPOSAL_TYPE} layer')
    where = f'{source}: layer {layer.name!r} param_str'
    try:
        params = yaml.safe_load(layer.python_param.param_str) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f'{where} is not YAML ({exc})') from exc
    if not isinstance(params, dict):
        raise ValueError(f'{where} is not a mapping: {layer.python_param.param_str!r}')
    unknown = sorted(set(params) - set(PROPOSAL_PARAM_KEYS))
    if unknown:
        raise ValueError(f'{where} has keys the proposal layer does not read: {unknown}')
    if 'feat_stride' not in params:
        raise ValueError(f'{where} has no feat_stride')
    for key in ('RPN_USE_NMS', 'RPN_USE_CLS', 'RPN_USE_REG'):
        if not test_cfg[key]:
            raise ValueError(f'cfg.TEST.{key} is False: OpenCV\'s {OPENCV_PROPOSAL_TYPE} layer always ranks '
                             f'by objectness, decodes the boxes and applies NMS; export the net without '
                             f'this ablation')
    for key in ('RPN_PRE_NMS_TOP_N', 'RPN_POST_NMS_TOP_N'):
        if int(test_cfg[key]) <= 0:
            raise ValueError(f'cfg.TEST.{key} = {test_cfg[key]}: OpenCV\'s {OPENCV_PROPOSAL_TYPE} layer '
                             f'needs a positive count')
    return ProposalSettings(
        feat_stride=int(params['feat_stride']), base_size=int(ANCHOR_BASE_SIZE),
        ratios=tuple(float(r) for r in params.get('ratios', _ANCHOR_DEFAULTS['ratios'])),
        scales=tuple(float(s) for s in params.get('scales', _ANCHOR_DEFAULTS['scales'])),
        pre_nms_top_n=int(test_cfg.RPN_PRE_NMS_TOP_N), post_nms_top_n=int(test_cfg.RPN_POST_NMS_TOP_N),
        nms_thresh=float(test_cfg.RPN_NMS_THRESH), min_size=float(test_cfg.RPN_MIN_SIZE))


def opencv_reference_anchors(settings):
    """The anchors of feature cell (0, 0) as OpenCV's ``Proposal`` layer builds them (A×4 float64).

    Per ratio r: w = floor(base / sqrt(r) + 0.5), h = floor(w · r + 0.5) (rounding half up), times each
    scale; centre (0.5 · base, 0.5 · base); x1 = c − W / 2, x2 = c + W / 2 − 1. Ratio-major, like
    ``rpn.generate_anchors``.
    """
    base = float(settings.base_size)
    boxes = []
    for ratio in settings.ratios:
        width = np.floor(base / np.sqrt(ratio) + 0.5)
        height = np.floor(width * ratio + 0.5)
        for scale in settings.scales:
            w, h = scale * width, scale * height
            boxes.append([0.5 * base - 0.5 * w, 0.5 * base - 0.5 * h,
                          0.5 * base + 0.5 * w - 1, 0.5 * base + 0.5 * h - 1])
    return np.array(boxes, dtype=np.float64)


def opencv_limitations(settings):
    """What OpenCV's ``Proposal`` layer computes differently from ours for ``settings``.

    Returns ``(refusals, reports)``, two lists of sentences. A refusal means the exported net would give
    other proposals on every image (the anchors differ: OpenCV rounds half up where numpy rounds half to
    even); a report names a setting OpenCV ignores (``min_size``: OpenCV keeps boxes of any size), whose
    effect must be measured on the data (``tools/export_deploy.py --measure``).
    """
    refusals, reports = [], []
    ours = generate_anchors(settings.base_size, settings.ratios, settings.scales)
    theirs = opencv_reference_anchors(settings)
    if not np.array_equal(ours, theirs):
        rows = np.where(np.any(ours != theirs, axis=1))[0]
        refusals.append(f'anchors {rows.tolist()} differ: ours {ours[rows].tolist()}, OpenCV\'s '
                        f'{theirs[rows].tolist()} (ratios {list(settings.ratios)}, '
                        f'base {settings.base_size})')
    if settings.min_size > 0:
        reports.append(f'RPN_MIN_SIZE = {settings.min_size:g}: OpenCV\'s {OPENCV_PROPOSAL_TYPE} layer keeps '
                       f'boxes of any size, so the exported net behaves as RPN_MIN_SIZE = 0')
    return refusals, reports


def _indent(text, pad):
    """``text`` with every non-empty line prefixed by ``pad``."""
    return ''.join(pad + line if line.strip() else line for line in text.splitlines(True))


def proposal_param_text(settings):
    """The ``proposal_param { ... }`` block of OpenCV's layer for ``settings`` (text format, unindented).

    ``min_size`` is written as 0, the size OpenCV applies, so that an engine honouring the field computes
    what OpenCV does.
    """
    lines = [f'feat_stride: {settings.feat_stride}', f'base_size: {settings.base_size}', 'min_size: 0']
    lines += [f'ratio: {r:g}' for r in settings.ratios] + [f'scale: {s:g}' for s in settings.scales]
    lines += [f'pre_nms_topn: {settings.pre_nms_top_n}', f'post_nms_topn: {settings.post_nms_top_n}',
              f'nms_thresh: {settings.nms_thresh:g}']
    return 'proposal_param {\n' + ''.join(f'  {line}\n' for line in lines) + '}\n'


def opencv_deploy_text(net, settings, source):
    """Text of the OpenCV deploy prototxt for the test NetParameter ``net``.

    The same layers, names and inputs; the Python proposal layer becomes ``type: "Proposal"`` with
    ``proposal_param`` from ``settings`` and the same bottoms and first top (its optional scores top is
    dropped: OpenCV's Python API returns only a layer's first output). ``source`` names the prototxt in
    errors; any other Python layer is an error (OpenCV cannot run it).
    """
    proposal = find_proposal_layer(net, source)
    others = [layer.name for layer in net.layer if layer.type == 'Python' and layer is not proposal]
    if others:
        raise ValueError(f'{source}: Python layers {others} cannot run in OpenCV (only the proposal layer '
                         f'has an OpenCV counterpart)')
    head = caffe_pb2.NetParameter()
    head.CopyFrom(net)
    del head.layer[:]
    parts = ['# OpenCV dnn deploy net written by tools/export_deploy.py (OpenCV 4.x Caffe importer).\n',
             text_format.MessageToString(head)]
    for layer in net.layer:
        extra = ''
        if layer is proposal:
            layer = _opencv_proposal_layer(proposal)
            extra = _indent(proposal_param_text(settings), '  ')
        parts.append('layer {\n' + _indent(text_format.MessageToString(layer), '  ') + extra + '}\n')
    return ''.join(parts)


def _opencv_proposal_layer(python_layer):
    """A copy of our Python proposal layer as an OpenCV ``Proposal`` layer (parameters added as text)."""
    layer = caffe_pb2.LayerParameter()
    layer.name = python_layer.name
    layer.type = OPENCV_PROPOSAL_TYPE
    layer.bottom.extend(python_layer.bottom)
    layer.top.append(python_layer.top[0])
    return layer


_PROPOSAL_PARAM_RE = re.compile(r'proposal_param\s*\{(?P<body>[^}]*)\}')
_FIELD_RE = re.compile(r'(?P<key>\w+)\s*:\s*(?P<value>[-+0-9.eE]+)')


def read_opencv_proposal_settings(path):
    """Parse the ``proposal_param`` block of the OpenCV deploy prototxt at ``path`` (OpenCV's defaults for
    absent fields: feat_stride 16, base_size 16, pre 6000, post 300, NMS 0.7).

    Returns a ProposalSettings with ``min_size`` 0 (what OpenCV applies). Raises ValueError naming the
    file when there is no block or it has no ratio / scale.
    """
    with open(path, encoding='utf-8') as f:
        match = _PROPOSAL_PARAM_RE.search(f.read())
    if match is None:
        raise ValueError(f'{path}: no proposal_param block (not an OpenCV deploy net?)')
    fields = {}
    for m in _FIELD_RE.finditer(match.group('body')):
        fields.setdefault(m.group('key'), []).append(float(m.group('value')))
    for key in ('ratio', 'scale'):
        if key not in fields:
            raise ValueError(f'{path}: proposal_param has no {key}')

    def one(key, default):
        return fields.get(key, [default])[-1]

    return ProposalSettings(feat_stride=int(one('feat_stride', 16)), base_size=int(one('base_size', 16)),
                            ratios=tuple(fields['ratio']), scales=tuple(fields['scale']),
                            pre_nms_top_n=int(one('pre_nms_topn', 6000)),
                            post_nms_top_n=int(one('post_nms_topn', 300)),
                            nms_thresh=float(one('nms_thresh', 0.7)), min_size=0.0)


# ProposalSettings fields that come from cfg.TEST, with their cfg key.
_CFG_KEYS = {'pre_nms_top_n': 'RPN_PRE_NMS_TOP_N', 'post_nms_top_n': 'RPN_POST_NMS_TOP_N',
             'nms_thresh': 'RPN_NMS_THRESH'}


def check_settings_agree(exported, test_cfg, source):
    """Raise ValueError (naming ``source`` and the field) unless an OpenCV deploy net's top-N and NMS
    settings (ProposalSettings ``exported``) equal ``cfg.TEST``'s: OpenCV reads them from the prototxt, so
    a configuration that says otherwise would be silently ignored."""
    for field, key in _CFG_KEYS.items():
        ours, theirs = float(test_cfg[key]), float(getattr(exported, field))
        if not np.isclose(ours, theirs, rtol=1e-6, atol=0):
            raise ValueError(f'{source}: proposal_param gives {field} {theirs:g} but cfg.TEST.{key} is '
                             f'{ours:g} (set cfg.TEST to the exported value or re-export)')


# ------------------------------------------------------------------------------------------------------------
# The export's manifest
# ------------------------------------------------------------------------------------------------------------

def export_manifest(classes, test_cfg, pixel_means, settings, target, files, reports, opencv_outputs=None,
                    opencv_fusion=None):
    """The ``deploy.json`` dict of an export.

    ``classes``: class names (index 0 the background); ``test_cfg``: ``cfg.TEST``; ``pixel_means``: BGR
    means (1×1×3 or 3 values); ``settings``: ProposalSettings; ``target``: 'opencv' or 'caffe';
    ``files``: dict role → file name in the export directory; ``reports``: sentences from
    ``opencv_limitations``; ``opencv_outputs``: the layer names to pass to OpenCV's ``forward`` for the
    proposals, ``cls_prob`` and ``bbox_pred`` (opencv target); ``opencv_fusion``: whether OpenCV may fuse
    layers in a net reused across input sizes (False for nets with BatchNorm / Scale, see OpenCVNet).
    """
    manifest = {
        'format': MANIFEST_FORMAT, 'target': target, 'files': dict(files), 'classes': list(classes),
        'input': {'blobs': ['data', 'im_info'], 'layout': 'NCHW, BGR, float32, mean-subtracted',
                  'pixel_means_bgr': [float(v) for v in np.asarray(pixel_means).ravel()],
                  'scales': [int(s) for s in test_cfg.SCALES], 'max_size': int(test_cfg.MAX_SIZE),
                  'interpolation': 'INTER_LINEAR', 'im_info': '[scaled height, scaled width, scale]'},
        'proposals': settings.to_json(),
        'postprocess': {'bbox_reg': bool(test_cfg.BBOX_REG), 'score_thresh': float(test_cfg.SCORE_THRESH),
                        'nms': float(test_cfg.NMS), 'max_per_image': int(test_cfg.MAX_PER_IMAGE),
                        'box_convention': '[x1, y1, x2, y2], 0-based, pixel-inclusive'},
        'not_expressible': list(reports),
    }
    if opencv_outputs is not None:
        manifest['opencv_outputs'] = list(opencv_outputs)
    if opencv_fusion is not None:
        manifest['opencv_enable_fusion'] = bool(opencv_fusion)
    return manifest


_MANIFEST_FIELDS = {'format': str, 'target': str, 'files': dict, 'classes': list, 'input': dict,
                    'proposals': dict, 'postprocess': dict}


def read_manifest(path):
    """Read and check an export's ``deploy.json``. Raises ValueError naming the file and the field."""
    with open(path, encoding='utf-8') as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f'{path}: not JSON ({exc})') from exc
    for key, kind in _MANIFEST_FIELDS.items():
        if not isinstance(manifest.get(key), kind):
            raise ValueError(f'{path}: field {key!r} missing or not a {kind.__name__}')
    if manifest['format'] != MANIFEST_FORMAT:
        raise ValueError(f'{path}: field \'format\' is {manifest["format"]!r}, expected {MANIFEST_FORMAT!r}')
    if len(manifest['classes']) < 2 or manifest['classes'][0] != '__background__':
        raise ValueError(f'{path}: field \'classes\' must start with __background__ and name >= 1 class')
    for key in ('pixel_means_bgr', 'scales', 'max_size'):
        if key not in manifest['input']:
            raise ValueError(f'{path}: field \'input.{key}\' missing')
    if len(manifest['input']['pixel_means_bgr']) != 3:
        raise ValueError(f'{path}: field \'input.pixel_means_bgr\' must hold 3 values')
    return manifest


def readme_text(manifest):
    """A short README for an export directory described by ``manifest`` (``export_manifest``)."""
    files, inp, post = manifest['files'], manifest['input'], manifest['postprocess']
    prop = manifest['proposals']
    means = ', '.join(f'{v:g}' for v in inp['pixel_means_bgr'])
    lines = [
        f'# Faster R-CNN deploy export ({manifest["target"]})', '',
        f'Classes ({len(manifest["classes"]) - 1} + background): see `{files["labels"]}` (line i = class i).',
        f'Settings: `{MANIFEST_NAME}` (written by tools/export_deploy.py).', '',
        '## Input',
        f'- `data`: 1x3xHxW float32, BGR, minus the pixel means ({means}), resized (INTER_LINEAR) so the '
        f'shorter side is {inp["scales"][0]} unless the longer side would exceed {inp["max_size"]}.',
        '- `im_info`: 1x3 float32 `[H, W, scale]` of the resized image.', '',
        '## Outputs and post-processing',
        '- proposals (R x 5, `[0, x1, y1, x2, y2]` in resized-image pixels), `cls_prob` (R x K), '
        '`bbox_pred` (R x 4K, raw deltas: the target normalisation is folded into the weights).',
        '- Boxes: divide the proposals by `scale`; per class j, decode deltas 4j..4j+3 with centre '
        '`x1 + 0.5 w` (w = x2 - x1 + 1), `x2 = cx + 0.5 w` (no -1), clip to the image.',
        f'- Keep scores > {post["score_thresh"]:g}, NMS {post["nms"]:g} per class, at most '
        f'{post["max_per_image"]} detections per image. Boxes are 0-based, pixel-inclusive.', '',
    ]
    if manifest['target'] == 'opencv':
        lines += [
            '## OpenCV dnn (4.x; OpenCV 5 has no Caffe importer)',
            '```python',
            f"net = cv2.dnn.readNetFromCaffe('{files['prototxt']}', '{files['model']}')",
            "net.setInput(data, 'data'); net.setInput(im_info, 'im_info')",
            f"rois, cls_prob, bbox_pred = net.forward({manifest['opencv_outputs']})",
            '```',
            f'- The proposal layer returns {prop["post_nms_top_n"]} rows; rows of zeros past the last '
            'proposal are padding: drop them (and the same rows of `cls_prob` / `bbox_pred`).',
            ('- Input sizes: this net has BatchNorm / Scale layers; call `net.enableFusion(False)` once '
             'after loading: OpenCV 4.14 re-plans a net when the input size changes and then folds each '
             'Scale into its BatchNorm a second time (wrong features from the second size on).')
            if not manifest.get('opencv_enable_fusion', True) else
            '- Input sizes: one net serves every size (no BatchNorm / Scale layers).',
            f'- Proposals: anchors ratios {prop["ratios"]} x scales {prop["scales"]}, stride '
            f'{prop["feat_stride"]}, top {prop["pre_nms_top_n"]} -> NMS {prop["nms_thresh"]:g} -> '
            f'{prop["post_nms_top_n"]}.', '',
        ]
    else:
        lines += ['## Our Caffe',
                  'The proposal layer is the toolkit\'s Python layer: run with `lib/` on the path, e.g. '
                  f'`tools/demo.py --def {files["prototxt"]} --net {files["model"]}`.', '']
    if manifest['not_expressible']:
        lines += ['## Not expressible in this engine'] + [f'- {s}' for s in manifest['not_expressible']]
        for key, value in sorted(manifest.get('measured', {}).items()):
            lines.append(f'- measured {key}: {value}')
        lines.append('')
    return '\n'.join(lines)


# ------------------------------------------------------------------------------------------------------------
# The OpenCV backend
# ------------------------------------------------------------------------------------------------------------

class _Blob:
    """A net output held like a Caffe blob (``.data``)."""

    def __init__(self, data):
        self.data = data


def _producers(net, blob_names, source):
    """``{blob: name of the last layer writing it}`` (OpenCV names a layer's output by the layer)."""
    found = {}
    for layer in net.layer:
        for top in layer.top:
            if top in blob_names:
                found[top] = layer.name
    missing = [name for name in blob_names if name not in found]
    if missing:
        raise ValueError(f'{source}: no layer produces {missing}')
    return found


# Layer types whose parameters OpenCV folds into the layer before them when it plans a net, again at every
# re-plan (input shape change): see OpenCVNet.
REFOLDED_TYPES = ('BatchNorm', 'Scale')


def needs_fusion_off(net):
    """True when NetParameter ``net`` has a layer of REFOLDED_TYPES (a reused OpenCV net with fusion on
    would fold its parameters again after each input size change)."""
    return any(layer.type in REFOLDED_TYPES for layer in net.layer)


def opencv_output_layers(net, source):
    """Layer names to pass to OpenCV's ``forward`` for the proposals, ``cls_prob`` and ``bbox_pred`` of
    NetParameter ``net`` (the last layer writing each blob)."""
    found = _producers(net, (PROPOSAL_TOP,) + HEAD_BLOBS, source)
    return [found[name] for name in (PROPOSAL_TOP,) + HEAD_BLOBS]


def proposal_count(rois):
    """Rows of an OpenCV ``Proposal`` output (R×5, zero-filled past the last proposal) that are proposals.

    A trailing row of five zeros is padding. (A real proposal clipped to the single pixel (0, 0, 0, 0) in
    last place would be taken for padding too; no such box has been seen.)
    """
    nonzero = np.where(np.any(rois != 0, axis=1))[0]
    return int(nonzero[-1]) + 1 if len(nonzero) else 0


class OpenCVNet:
    """An OpenCV dnn deploy net behind the interface ``fast_rcnn.test.im_detect`` uses of a Caffe net.

    ``prototxt``: an OpenCV deploy net (``opencv_deploy_text``); ``weights``: its caffemodel; ``name``:
    shown in output paths (default: the weights' base name). ``forward_segments(blobs, timers)`` runs one
    image (``blobs``: ``data`` 1×3×H×W float32 and ``im_info`` 1×3) and fills ``blobs`` with ``rois``
    (R×5, padding rows removed), ``cls_prob`` (R×K) and ``bbox_pred`` (R×4K).

    One ``cv2.dnn.Net`` serves every input size. OpenCV 4.14 re-plans a net when the input shape changes
    and fuses its layers again; the BatchNorm → Scale fold is then applied a second time (measured: every
    Scale acts as (γ², γβ + β)), so with fusion on a reused TINY net computes wrong features after the
    first size change (docs/deploy.md, "Input sizes"). ``fusion`` (default None: off exactly when the
    net has a layer of REFOLDED_TYPES, e.g. TINY; on for ZF / VGG-16) sets ``enableFusion``.
    """

    def __init__(self, prototxt, weights, name=None, fusion=None):
        for path, what in ((prototxt, 'network definition'), (weights, 'model weights')):
            if not osp.isfile(path):
                raise FileNotFoundError(f'{what} not found: {path}')
        structure = read_net_text(prototxt, allow_unknown_field=True)
        proposal = find_proposal_layer(structure, prototxt)
        if proposal.type != OPENCV_PROPOSAL_TYPE:
            raise ValueError(f'{prototxt}: layer {proposal.name!r} is a Python layer; OpenCV needs the '
                             f'deploy net written by tools/export_deploy.py')
        self.prototxt, self.weights = prototxt, weights
        self.name = name or osp.splitext(osp.basename(weights))[0]
        self.settings = read_opencv_proposal_settings(prototxt)
        self._outputs = _producers(structure, (PROPOSAL_TOP,) + HEAD_BLOBS, prototxt)
        self._proposal_layer = proposal.name
        self.fusion = not needs_fusion_off(structure) if fusion is None else bool(fusion)
        self.net = cv2.dnn.readNetFromCaffe(prototxt, weights)
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.net.enableFusion(self.fusion)
        self.blobs = {}

    def forward_segments(self, blobs, timers=None):
        """One forward pass on ``blobs`` (``data``, ``im_info``); results in ``self.blobs``.

        ``timers``: optional dict segment name → ``utils.timer.Timer``. OpenCV runs the whole net in one
        call; the segments' times are its per-layer profile (``getPerfProfile``) summed over the layers
        before the proposal layer, the proposal layer, and the layers after it, scaled so that they add up
        to the call's wall time (the remainder is OpenCV's per-call overhead, spread proportionally).
        """
        data = np.ascontiguousarray(blobs['data'], dtype=np.float32)
        if data.ndim != 4 or data.shape[0] != 1:
            raise ValueError(f'OpenCVNet runs one image per call; data has shape {data.shape}')
        net = self.net
        net.setInput(data, 'data')
        net.setInput(np.ascontiguousarray(blobs['im_info'], dtype=np.float32).reshape(1, -1), 'im_info')
        names = [self._outputs[PROPOSAL_TOP]] + [self._outputs[name] for name in HEAD_BLOBS]
        start = time.perf_counter()
        outs = net.forward(names)
        wall = time.perf_counter() - start
        rois = outs[0]
        count = proposal_count(rois)
        self.blobs = {PROPOSAL_TOP: _Blob(rois[:count].copy())}
        for name, out in zip(HEAD_BLOBS, outs[1:]):
            self.blobs[name] = _Blob(out[:count].copy())
        if timers is not None:
            for segment, seconds in zip(SEGMENTS, self.segment_times(net, wall)):
                timers[segment].add(seconds)

    def segment_times(self, net, wall):
        """Seconds of the three SEGMENTS in ``net``'s last forward pass that took ``wall`` seconds."""
        _, ticks = net.getPerfProfile()
        ticks = np.asarray(ticks, dtype=np.float64).ravel()
        layer_names = list(net.getLayerNames())
        if len(ticks) != len(layer_names):
            raise RuntimeError(f'OpenCV profile has {len(ticks)} entries for {len(layer_names)} layers')
        split = layer_names.index(self._proposal_layer)
        parts = np.array([ticks[:split].sum(), ticks[split], ticks[split + 1:].sum()])
        total = parts.sum()
        return parts * (wall / total) if total > 0 else np.array([wall, 0.0, 0.0])


def open_opencv_net(prototxt, weights, num_classes, out_dir, test_cfg, name=None):
    """An OpenCVNet for ``prototxt`` and ``weights`` with ``num_classes`` classes (background included).

    ``prototxt`` is either an OpenCV deploy net (its top-N / NMS settings must agree with ``test_cfg`` =
    ``cfg.TEST``) or one of our test nets, which is adapted to ``num_classes`` and converted here with
    ``test_cfg``'s settings into ``<out_dir>/opencv_<basename>``. Returns ``(net, reports)``: the
    OpenCVNet and the ``opencv_limitations`` reports (settings OpenCV ignores). Raises ValueError for
    settings OpenCV cannot express and for a class count that does not match.
    """
    structure = read_net_text(prototxt, allow_unknown_field=True)
    proposal = find_proposal_layer(structure, prototxt)
    reports = []
    if proposal.type == 'Python':
        net = adapt_net(read_net_text(prototxt), num_classes, source=prototxt)
        settings = proposal_settings(net, test_cfg, prototxt)
        refusals, reports = opencv_limitations(settings)
        if refusals:
            raise ValueError(f'{prototxt}: OpenCV\'s {OPENCV_PROPOSAL_TYPE} layer cannot express: '
                             + '; '.join(refusals))
        os.makedirs(out_dir, exist_ok=True)
        converted = osp.join(out_dir, 'opencv_' + osp.basename(prototxt))
        with open(converted, 'w', encoding='utf-8') as f:
            f.write(opencv_deploy_text(net, settings, prototxt))
        prototxt = converted
    else:
        check_settings_agree(read_opencv_proposal_settings(prototxt), test_cfg, prototxt)
        head = [layer for layer in structure.layer if layer.name == CLS_SCORE_LAYER]
        if head and head[0].inner_product_param.num_output != num_classes:
            raise ValueError(f'{prototxt}: {CLS_SCORE_LAYER} has {head[0].inner_product_param.num_output} '
                             f'outputs but the imdb has {num_classes} classes')
    return OpenCVNet(prototxt, weights, name=name), reports


# ------------------------------------------------------------------------------------------------------------
# Comparing engines
# ------------------------------------------------------------------------------------------------------------

def match_detections(dets_a, dets_b, top_k=10):
    """Match one image's top detections of engine A to engine B's.

    ``dets_a``, ``dets_b``: lists over classes of N×5 ``[x1, y1, x2, y2, score]`` (postprocessed; entry 0,
    the background, is ignored). A's ``top_k`` highest-scoring detections over all classes (ties: lower
    class, then list order) are matched greedily, in that order, each to the not yet matched detection of
    B of the same class with the highest IoU (pixel-inclusive). Returns a dict: ``ious`` (array, one per
    considered A detection; 0 where B had none left), ``score_diffs`` (|score A − score B| of the pairs;
    A's score where unmatched), ``count_a``, ``count_b`` (detections per engine over all classes).
    """
    flat = [(float(d[4]), j, i) for j in range(1, len(dets_a)) for i, d in enumerate(np.asarray(dets_a[j]))]
    flat.sort(key=lambda t: (-t[0], t[1], t[2]))
    taken = [np.zeros(len(d), dtype=bool) for d in dets_b]
    ious, score_diffs = [], []
    for score, j, i in flat[:top_k]:
        b = np.asarray(dets_b[j], dtype=np.float64).reshape(-1, 5)
        if not len(b) or taken[j].all():
            ious.append(0.0)
            score_diffs.append(score)
            continue
        box = np.asarray(dets_a[j], dtype=np.float64)[i:i + 1, :4]
        overlaps = bbox_overlaps(np.ascontiguousarray(box), np.ascontiguousarray(b[:, :4]))[0]
        overlaps[taken[j]] = -1.0
        k = int(np.argmax(overlaps))
        taken[j][k] = True
        ious.append(float(overlaps[k]))
        score_diffs.append(abs(score - float(b[k, 4])))
    return {'ious': np.array(ious), 'score_diffs': np.array(score_diffs),
            'count_a': int(sum(len(d) for d in dets_a[1:])), 'count_b': int(sum(len(d) for d in dets_b[1:]))}


def parity_summary(all_boxes_a, all_boxes_b, top_k=10, min_iou=0.99):
    """Per-image ``match_detections`` over a whole test set.

    ``all_boxes_*[class][image]``: N×5 detections (as ``fast_rcnn.test.test_net`` returns them). Returns a
    dict: ``images``, ``images_ok`` (images whose matched top detections all have IoU ≥ ``min_iou``),
    ``min_iou`` (over all matched detections), ``max_score_diff``, ``detections_a`` / ``detections_b``
    (totals) and ``bad_images`` (indices of the other images).
    """
    num_images = len(all_boxes_a[0])
    ok, worst_iou, worst_score, bad, count_a, count_b = 0, 1.0, 0.0, [], 0, 0
    for i in range(num_images):
        m = match_detections([c[i] for c in all_boxes_a], [c[i] for c in all_boxes_b], top_k)
        count_a, count_b = count_a + m['count_a'], count_b + m['count_b']
        if len(m['ious']):
            worst_iou = min(worst_iou, float(m['ious'].min()))
            worst_score = max(worst_score, float(m['score_diffs'].max()))
        if np.all(m['ious'] >= min_iou):
            ok += 1
        else:
            bad.append(i)
    return {'images': num_images, 'images_ok': ok, 'min_iou': worst_iou, 'max_score_diff': worst_score,
            'detections_a': count_a, 'detections_b': count_b, 'bad_images': bad}


# Two engines' box coordinates agree to this many pixels (their convs differ by ~1e-5 relative).
BOX_TOL = 0.05


def _find_row(box, rows, tol=BOX_TOL):
    """Index of the first of ``rows`` (N×4) within ``tol`` of ``box`` in every coordinate, or -1."""
    hits = np.where(np.all(np.abs(rows - box) <= tol, axis=1))[0] if len(rows) else []
    return int(hits[0]) if len(hits) else -1


def _max_iou(box, rows):
    """Largest pixel-inclusive IoU of ``box`` (4) with ``rows`` (N×4); 0 for no rows."""
    if not len(rows):
        return 0.0
    return float(bbox_overlaps(np.asarray(box, np.float64)[np.newaxis], np.asarray(rows, np.float64)).max())


def compare_proposals(rois_a, scores_a, rois_b, nms_thresh):
    """Compare two engines' proposals of one image and explain where their orders part.

    ``rois_a`` / ``rois_b``: R×4 boxes in rank order (A: our Caffe, B: OpenCV); ``scores_a``: A's objectness
    of its proposals. Returns a dict: ``count_a``, ``count_b``; ``same_prefix`` (leading rows equal within
    BOX_TOL); ``same_rank`` (rows equal at the same rank); ``in_both`` (rows of A found anywhere in B);
    ``cause`` of the first divergence: 'none',
    'score tie' (the two boxes at that rank swap places: ``gap`` is |difference of A's scores|), 'nms tie'
    (a box one engine suppressed: ``gap`` is |its largest IoU with the boxes ranked before it − the NMS
    threshold|), or 'other'.
    """
    rois_a, rois_b = np.asarray(rois_a, np.float64), np.asarray(rois_b, np.float64)
    n = min(len(rois_a), len(rois_b))
    equal = np.all(np.abs(rois_a[:n] - rois_b[:n]) <= BOX_TOL, axis=1)
    prefix = int(np.argmin(equal)) if not equal.all() else n
    in_both = sum(_find_row(box, rois_b) >= 0 for box in rois_a)
    out = {'count_a': len(rois_a), 'count_b': len(rois_b), 'same_prefix': prefix,
           'same_rank': int(equal.sum()), 'in_both': int(in_both),
           'cause': 'none', 'gap': 0.0}
    if prefix == n:
        return out
    box_a, box_b = rois_a[prefix], rois_b[prefix]
    j = _find_row(box_b, rois_a)
    if j >= 0:
        out.update(cause='score tie', gap=abs(float(scores_a[prefix] - scores_a[j])))
        if j < prefix:
            out['cause'] = 'other'
        return out
    # B kept a box that A never returned: A suppressed it (or cut it before NMS); or the other way round.
    iou_b = _max_iou(box_b, rois_a[:prefix])
    iou_a = _max_iou(box_a, rois_b[:prefix])
    gap = min(abs(iou_b - nms_thresh), abs(iou_a - nms_thresh))
    out.update(cause='nms tie' if gap < 0.01 else 'other', gap=gap)
    return out


def caffe_proposal_scores(net, settings, im_info):
    """Our proposals and their objectness from a pycaffe net's RPN blobs: what our proposal layer computes
    with ``settings`` (min size included, scaled by im_info[2]) for ``im_info`` = (height, width, scale).
    Returns ``(boxes R×4, scores R)``."""
    im_height, im_width, im_scale = (float(v) for v in np.asarray(im_info).ravel()[:3])
    prob, deltas = net.blobs['rpn_cls_prob_reshape'].data, net.blobs['rpn_bbox_pred'].data
    anchors = generate_anchors(settings.base_size, settings.ratios, settings.scales)
    height, width = prob.shape[2:]
    return generate_proposals(
        shifted_anchors(anchors, height, width, settings.feat_stride),
        deltas.transpose(0, 2, 3, 1).reshape(-1, 4),
        prob[:, len(anchors):].transpose(0, 2, 3, 1).reshape(-1), im_height, im_width,
        settings.min_size * im_scale,
        settings.pre_nms_top_n, settings.post_nms_top_n, settings.nms_thresh)


def paired_rows(rois_a, rois_b, spatial_scale):
    """Pairs of rows (any rank) where two engines' RoIs (R×4 or R×5) agree within BOX_TOL and round to the
    same RoI-pooling grid cells (``round(x · spatial_scale)``), so both pool the same features.

    Returns ``(rows_a, rows_b)``, two int arrays; each row of A pairs with the first such row of B.
    """
    a, b = np.asarray(rois_a, np.float64)[:, -4:], np.asarray(rois_b, np.float64)[:, -4:]
    rows_a, rows_b = [], []
    for i, box in enumerate(a):
        j = _find_row(box, b)
        if j >= 0 and np.array_equal(np.round(box * spatial_scale), np.round(b[j] * spatial_scale)):
            rows_a.append(i)
            rows_b.append(j)
    return np.array(rows_a, dtype=np.int64), np.array(rows_b, dtype=np.int64)
