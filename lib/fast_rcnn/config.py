"""The one configuration object of the toolkit, ``cfg``.

Key names and defaults follow the released py-faster-rcnn so that users' YAML files and ``--set`` lists
carry over. Read ``cfg`` at the boundaries (Caffe layers, tools, the train/test drivers) and pass explicit
arguments to helpers.

Where the released code and the paper differ, the released value is the default and the comment says so.
"""

import ast
import os
import os.path as osp

import numpy as np
import yaml
from easydict import EasyDict as edict

__C = edict()
cfg = __C

# --------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------
__C.TRAIN = edict()

# Shorter-side scales to sample from (one per image); the paper uses a single scale of 600.
__C.TRAIN.SCALES = (600,)
# Cap on the longer side after scaling.
__C.TRAIN.MAX_SIZE = 1000
# Images per minibatch (Fast R-CNN mode); RPN mode always uses one image.
__C.TRAIN.IMS_PER_BATCH = 2
# RoIs per minibatch (split evenly over the images).
__C.TRAIN.BATCH_SIZE = 128
# Fraction of a minibatch that is foreground (label > 0).
__C.TRAIN.FG_FRACTION = 0.25
# RoI is foreground when its max IoU with a gt is >= FG_THRESH.
__C.TRAIN.FG_THRESH = 0.5
# RoI is background when its max IoU lies in [BG_THRESH_LO, BG_THRESH_HI). The Faster R-CNN experiment
# configs lower BG_THRESH_LO to 0.0 (see experiments/cfgs).
__C.TRAIN.BG_THRESH_HI = 0.5
__C.TRAIN.BG_THRESH_LO = 0.1
# Horizontally flipped copies double the training set.
__C.TRAIN.USE_FLIPPED = True
# Train bounding-box regressors.
__C.TRAIN.BBOX_REG = True
# A proposal needs this IoU with a gt to be used as a bbox-regression training example.
__C.TRAIN.BBOX_THRESH = 0.5
# Snapshot every this many iterations (0: only at the end).
__C.TRAIN.SNAPSHOT_ITERS = 10000
# Snapshot file prefix (the solver's snapshot_prefix is overridden by this plus the infix).
__C.TRAIN.SNAPSHOT_INFIX = ''
# Prefetch thread in the data layer: not supported (it would share numpy's global RNG with the anchor
# sampling and break determinism); RoIDataLayer raises if this is set. Kept so released YAMLs load.
__C.TRAIN.USE_PREFETCH = False
# Normalise bbox-regression targets by per-class means and stds (computed from the roidb in alt-opt).
__C.TRAIN.BBOX_NORMALIZE_TARGETS = True
# Deprecated in the released code, kept for compatibility: weights of the regression loss terms.
__C.TRAIN.BBOX_INSIDE_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
# Use the precomputed means/stds below instead of roidb statistics (end-to-end training).
__C.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED = False
__C.TRAIN.BBOX_NORMALIZE_MEANS = (0.0, 0.0, 0.0, 0.0)
__C.TRAIN.BBOX_NORMALIZE_STDS = (0.1, 0.1, 0.2, 0.2)
# Proposal source for Fast R-CNN training: 'gt' (RPN stages, end2end), 'rpn' (a precomputed file, the tools'
# --proposals), 'selective_search', 'edge_boxes' or 'dense' (see cfg.PROPOSALS).
__C.TRAIN.PROPOSAL_METHOD = 'gt'
# Group images of similar aspect ratio (landscape / portrait) into the same minibatch.
__C.TRAIN.ASPECT_GROUPING = True
# Keep objects marked difficult in training roidbs (the released code drops them).
__C.TRAIN.USE_DIFFICULT = False

# The data layer feeds an RPN (tops data, im_info, gt_boxes) instead of precomputed RoIs.
__C.TRAIN.HAS_RPN = False
# RPN labelling: positive at IoU >= 0.7, negative below 0.3.
__C.TRAIN.RPN_POSITIVE_OVERLAP = 0.7
__C.TRAIN.RPN_NEGATIVE_OVERLAP = 0.3
# With True, negatives are assigned after positives (a positive can be overwritten). Released default False.
__C.TRAIN.RPN_CLOBBER_POSITIVES = False
# At most this fraction of the RPN minibatch is positive (<= 1:1).
__C.TRAIN.RPN_FG_FRACTION = 0.5
# Anchors per RPN minibatch.
__C.TRAIN.RPN_BATCHSIZE = 256
# NMS threshold on proposals.
__C.TRAIN.RPN_NMS_THRESH = 0.7
# Proposals kept before / after NMS while training end-to-end.
__C.TRAIN.RPN_PRE_NMS_TOP_N = 12000
__C.TRAIN.RPN_POST_NMS_TOP_N = 2000
# Proposals need both sides >= RPN_MIN_SIZE (in original-image pixels, i.e. scaled by im_info[2]).
__C.TRAIN.RPN_MIN_SIZE = 16
# Inside weights of positive anchors' regression targets.
__C.TRAIN.RPN_BBOX_INSIDE_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
# Outside weights: a value < 0 gives uniform 1/num_labelled; p in [0, 1] weighs positives p/num_pos and
# negatives (1 - p)/num_neg.
__C.TRAIN.RPN_POSITIVE_WEIGHT = -1.0

# --------------------------------------------------------------------------------------------------------
# Testing
# --------------------------------------------------------------------------------------------------------
__C.TEST = edict()

__C.TEST.SCALES = (600,)
__C.TEST.MAX_SIZE = 1000
# Per-class NMS threshold on detections.
__C.TEST.NMS = 0.3
# Experimental: treat the whole image as a single SVM-style class score (unused by the released nets).
__C.TEST.SVM = False
# Apply the bbox regressors at test time.
__C.TEST.BBOX_REG = True
# Proposals come from the net's RPN (True) or from a proposal file (False, Fast R-CNN only).
__C.TEST.HAS_RPN = False
# Proposal source when HAS_RPN is False (Fast R-CNN nets): as TRAIN.PROPOSAL_METHOD ('gt' excepted). The
# released default is Selective Search.
__C.TEST.PROPOSAL_METHOD = 'selective_search'
# RPN proposal settings at test time.
__C.TEST.RPN_NMS_THRESH = 0.7
__C.TEST.RPN_PRE_NMS_TOP_N = 6000
__C.TEST.RPN_POST_NMS_TOP_N = 300
__C.TEST.RPN_MIN_SIZE = 16
# Ablations of the paper's Table 1: switch off proposal NMS, the cls ranking (proposals are then taken in a
# seeded random order) or the box regression of the RPN at test time.
__C.TEST.RPN_USE_NMS = True
__C.TEST.RPN_USE_CLS = True
__C.TEST.RPN_USE_REG = True
# Detection post-processing: keep per-class scores above this, at most this many per image.
__C.TEST.SCORE_THRESH = 0.05
__C.TEST.MAX_PER_IMAGE = 100

# --------------------------------------------------------------------------------------------------------
# Proposals that do not come from a network (datasets.external_proposals)
# --------------------------------------------------------------------------------------------------------
__C.PROPOSALS = edict()
# Selective Search boxes: 'auto' (the released data/selective_search_data/<imdb>.mat for VOC years, OpenCV
# for other datasets), 'mat' or 'opencv'.
__C.PROPOSALS.SS_SOURCE = 'auto'
# SS / EB: at most this many boxes per image ("about 2k" in the paper), sides of at least MIN_SIZE px
# (the released loader's filter).
__C.PROPOSALS.MAX_BOXES = 2000
__C.PROPOSALS.MIN_SIZE = 2
# Processes computing SS / EB (0: one per core).
__C.PROPOSALS.WORKERS = 0
# Dense sliding windows of the one-stage baseline (Table 5): the anchors of generate_anchors with these
# scales (x 16 px) and ratios at every FEAT_STRIDE px of the training-scale image (released anchors).
__C.PROPOSALS.DENSE_SCALES = (8, 16, 32)
__C.PROPOSALS.DENSE_RATIOS = (0.5, 1, 2)
__C.PROPOSALS.DENSE_STRIDE = 16

# --------------------------------------------------------------------------------------------------------
# Misc
# --------------------------------------------------------------------------------------------------------

# RoI de-duplication on the original-image grid (1/16 for the nets' conv5). Not used by RPN nets.
__C.DEDUP_BOXES = 1.0 / 16.0
# Pixel mean in BGR order, subtracted from every image (the ImageNet mean of the released models).
__C.PIXEL_MEANS = np.array([[[102.9801, 115.9465, 122.7717]]])
# Seed for numpy and Caffe (the released default).
__C.RNG_SEED = 3
# Project root (the directory holding lib/).
__C.ROOT_DIR = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
# Data directory (datasets, ImageNet models, caches).
__C.DATA_DIR = osp.abspath(osp.join(__C.ROOT_DIR, 'data'))
# Model directory (prototxts).
__C.MODELS_DIR = osp.abspath(osp.join(__C.ROOT_DIR, 'models', 'pascal_voc'))
# Use the GPU NMS kernel when it is built and a GPU is in use.
__C.USE_GPU_NMS = True
# GPU to use; -1 means CPU mode.
__C.GPU_ID = 0
# Experiment name: output goes to output/<EXP_DIR>/<imdb name>/.
__C.EXP_DIR = 'default'


def get_output_dir(imdb_name, net_name=None):
    """Return (and create) ``<ROOT_DIR>/output/<EXP_DIR>/<imdb_name>[/<net_name>]``."""
    outdir = osp.abspath(osp.join(__C.ROOT_DIR, 'output', __C.EXP_DIR, imdb_name))
    if net_name is not None:
        outdir = osp.join(outdir, net_name)
    os.makedirs(outdir, exist_ok=True)
    return outdir


def _coerce(value, reference, key):
    """Convert ``value`` to the type of ``reference`` (the default), or raise naming ``key``."""
    if isinstance(reference, np.ndarray):
        arr = np.array(value, dtype=reference.dtype)
        if arr.size != reference.size:
            raise ValueError(f'config key {key}: expected {reference.size} values, got {arr.size}')
        return arr.reshape(reference.shape)
    if isinstance(reference, bool):
        if isinstance(value, bool):
            return value
        raise TypeError(f'config key {key}: expected a bool (true/false), got {value!r}')
    if isinstance(reference, (int, float)) and isinstance(value, (int, float)) \
            and not isinstance(value, bool):
        if isinstance(reference, int) and isinstance(value, float) and not value.is_integer():
            raise TypeError(f'config key {key}: expected an integer, got {value!r}')
        return type(reference)(value)
    if isinstance(reference, (tuple, list)) and isinstance(value, (tuple, list)):
        return type(reference)(value)
    if reference is None or isinstance(value, type(reference)):
        return value
    raise TypeError(f'config key {key}: expected {type(reference).__name__} '
                    f'(like the default {reference!r}), got {type(value).__name__} {value!r}')


def _merge_a_into_b(a, b, prefix=''):
    """Merge dict ``a`` into ``b`` recursively; keys must already exist in ``b`` (typos fail loudly)."""
    for k, v in a.items():
        key = prefix + k
        if k not in b:
            raise KeyError(f'unknown config key: {key}')
        if isinstance(b[k], edict):
            if not isinstance(v, dict):
                raise TypeError(f'config key {key} is a section; got {v!r}')
            _merge_a_into_b(v, b[k], key + '.')
        else:
            b[k] = _coerce(v, b[k], key)


def cfg_from_file(filename):
    """Merge a YAML config file into ``cfg`` (safe loader; unknown keys raise ``KeyError``)."""
    with open(filename, encoding='utf-8') as f:
        yaml_cfg = yaml.safe_load(f) or {}
    if not isinstance(yaml_cfg, dict):
        raise TypeError(f'{filename}: a config file must hold a mapping of keys, '
                        f'got {type(yaml_cfg).__name__}')
    _merge_a_into_b(edict(yaml_cfg), __C)


def _parse_value(text):
    """Parse a command-line value as a Python literal (numbers, tuples, True/False); otherwise a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        lowered = text.lower()
        if lowered in ('true', 'false'):
            return lowered == 'true'
        return text


def cfg_from_list(cfg_list):
    """Apply ``['TRAIN.SCALES', '(500,)', 'EXP_DIR', 'foo', ...]`` (the ``--set`` form) to ``cfg``."""
    if len(cfg_list) % 2 != 0:
        raise ValueError(f'--set takes KEY VALUE pairs; got an odd number of items: {cfg_list}')
    for key, text in zip(cfg_list[0::2], cfg_list[1::2]):
        *parents, leaf = key.split('.')
        node = __C
        for i, sub in enumerate(parents):
            if sub not in node or not isinstance(node[sub], edict):
                raise KeyError(f'unknown config key: {".".join(parents[:i + 1])} (in {key})')
            node = node[sub]
        if leaf not in node:
            raise KeyError(f'unknown config key: {key}')
        node[leaf] = _coerce(_parse_value(text), node[leaf], key)
