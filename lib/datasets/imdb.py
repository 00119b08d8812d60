"""The image-database base class and the proposal-file format.

Boxes everywhere are ``[x1, y1, x2, y2]``, 0-based, pixel-inclusive (width = x2 - x1 + 1).

A roidb is a list with one dict per image (see docs/architecture.md):
``image`` (path), ``width``, ``height``, ``boxes`` (N x 4 float32), ``gt_classes`` (N int32, 0 for
proposals), ``gt_overlaps`` (N x K float32, dense), ``flipped`` (bool), ``seg_areas`` (N float32).
"""

import os
import os.path as osp
import zipfile

import numpy as np

from fast_rcnn.config import cfg
from utils.cython_bbox import bbox_overlaps
from utils.fileio import atomic_write
from utils.image import stored_image_size

# Area ranges (in squared pixels of the gt box) understood by ``imdb.evaluate_recall``; the names and
# bounds are the released ones (COCO-style small / medium / large plus finer large-object bins).
RECALL_AREA_RANGES = {
    'all': (0 ** 2, 1e5 ** 2),
    'small': (0 ** 2, 32 ** 2),
    'medium': (32 ** 2, 96 ** 2),
    'large': (96 ** 2, 1e5 ** 2),
    '96-128': (96 ** 2, 128 ** 2),
    '128-256': (128 ** 2, 256 ** 2),
    '256-512': (256 ** 2, 512 ** 2),
    '512-inf': (512 ** 2, 1e5 ** 2),
}

# 'gt': ground truth only; the others add proposals: 'rpn' from config['rpn_file'], 'selective_search' and
# 'edge_boxes' computed by datasets.external_proposals (or the released .mat files), 'dense' sliding windows.
PROPOSAL_METHODS = ('gt', 'rpn', 'selective_search', 'edge_boxes', 'dense')
# Settings of the non-network proposal methods (config keys of every imdb; tools set them from cfg.PROPOSALS):
# ss_source 'auto' (the released .mat where the imdb has one, else OpenCV) | 'mat' | 'opencv'; max_boxes and
# min_size of SS/EB; dense windows: anchors (A x 4, scaled-input pixels), their stride, and the
# (shorter side, max size) the net input is scaled to.
DEFAULT_PROPOSAL_CONFIG = {'ss_source': 'auto', 'max_boxes': 2000, 'min_size': 2, 'workers': 0,
                           'dense_anchors': None, 'dense_stride': 16, 'dense_input_size': (600, 1000)}


class imdb:
    """Base class of image databases.

    Subclasses set ``self._image_index`` (list of image ids) and implement ``image_path_at(i)`` and
    ``gt_roidb()``; they may override ``image_size_at(i)`` when sizes are known without decoding images.
    """

    def __init__(self, name, classes, cache_dir=None):
        """``classes``: class names, index 0 must be ``'__background__'``. ``cache_dir``: where the
        annotation and proposal caches go (``datasets.factory.get_imdb`` passes ``<cfg.DATA_DIR>/cache``)."""
        classes = tuple(classes)
        if not classes or classes[0] != '__background__':
            raise ValueError(f'imdb {name}: classes[0] must be "__background__", got {classes[:1]}')
        if len(set(classes)) != len(classes):
            raise ValueError(f'imdb {name}: duplicate class names in {classes}')
        self._name = name
        self._classes = classes
        self._cache_dir = cache_dir
        self._image_index = []
        self._roidb = None
        self._proposal_method = 'gt'
        self._flipped_appended = False
        self.config = dict(DEFAULT_PROPOSAL_CONFIG)

    @property
    def name(self):
        return self._name

    @property
    def classes(self):
        return self._classes

    @property
    def num_classes(self):
        return len(self._classes)

    @property
    def image_index(self):
        return self._image_index

    @property
    def num_images(self):
        return len(self._image_index)

    @property
    def cache_path(self):
        """The ``cache_dir`` given, created on first use. An imdb constructed without one (directly, not by
        ``get_imdb``) reads ``<cfg.DATA_DIR>/cache`` here: this property is then the config boundary."""
        path = self._cache_dir or osp.join(cfg.DATA_DIR, 'cache')
        os.makedirs(path, exist_ok=True)
        return path

    @property
    def proposal_method(self):
        return self._proposal_method

    def set_proposal_method(self, method):
        """Choose the roidb handler (one of ``PROPOSAL_METHODS``): ``'gt'`` (ground truth only), ``'rpn'``
        (gt + ``config['rpn_file']``), ``'selective_search'`` / ``'edge_boxes'`` / ``'dense'`` (gt + those
        proposals, see ``external_boxes``).

        Drops an already built roidb, so it must be called before ``append_flipped_images``.
        """
        if method not in PROPOSAL_METHODS:
            raise ValueError(f'imdb {self.name}: unknown proposal method {method!r}; '
                             f'known: {", ".join(PROPOSAL_METHODS)}')
        if self._flipped_appended:
            raise RuntimeError(f'imdb {self.name}: set_proposal_method must come before '
                               'append_flipped_images')
        self._proposal_method = method
        self._roidb = None

    @property
    def roidb(self):
        """The roidb, built on first access by the handler of the current proposal method."""
        if self._roidb is None:
            if self._proposal_method == 'gt':
                self._roidb = self.gt_roidb()
            elif self._proposal_method == 'rpn':
                self._roidb = self.rpn_roidb()
            else:
                self._roidb = self.proposal_roidb(self.external_boxes(self._proposal_method))
            if len(self._roidb) != self.num_images:
                raise RuntimeError(f'imdb {self.name}: {self._proposal_method} roidb has {len(self._roidb)} '
                                   f'entries for {self.num_images} images')
        return self._roidb

    def image_path_at(self, i):
        """Absolute path of image ``i`` (position in ``image_index``)."""
        raise NotImplementedError(f'{type(self).__name__} must implement image_path_at')

    def gt_roidb(self):
        """Ground-truth roidb: one entry per image in ``image_index``."""
        raise NotImplementedError(f'{type(self).__name__} must implement gt_roidb')

    def image_size_at(self, i):
        """``(width, height)`` of image ``i``, read from the image file."""
        return stored_image_size(self.image_path_at(i))

    def rpn_roidb(self):
        """Ground truth merged with the proposals of ``config['rpn_file']`` (a ``save_box_list`` .npz)."""
        rpn_file = self.config.get('rpn_file')
        if not rpn_file:
            raise KeyError(f'imdb {self.name}: proposal method "rpn" needs config["rpn_file"] '
                           '(a proposals .npz written by datasets.imdb.save_box_list)')
        return self.proposal_roidb(load_box_list(rpn_file, self.image_index))

    def proposal_roidb(self, box_list):
        """Ground truth merged with ``box_list`` (per image M×4 / M×5 proposals, see
        ``create_roidb_from_box_list``)."""
        gt_roidb = self.gt_roidb()
        return merge_roidbs(gt_roidb, self.create_roidb_from_box_list(box_list, gt_roidb))

    def released_selective_search_file(self):
        """Path of the released Selective Search ``.mat`` of this imdb, or None when there is none."""
        return None

    def external_boxes(self, method):
        """Per-image proposals of a non-network ``method`` (``'selective_search'``, ``'edge_boxes'``,
        ``'dense'``), original-image pixels, best first. Settings: ``self.config`` (see
        ``DEFAULT_PROPOSAL_CONFIG``). SS comes from the released .mat when ``ss_source`` is ``'mat'``, or
        ``'auto'`` and the imdb has one; otherwise SS and EB are computed with OpenCV and cached."""
        from datasets import external_proposals as ext
        conf = self.config
        if method == 'dense':
            if conf['dense_anchors'] is None:
                raise KeyError(f'imdb {self.name}: proposal method "dense" needs config["dense_anchors"] '
                               '(the net\'s anchors; the tools set them from the test net)')
            from utils.blob import blob_scale
            target, max_size = conf['dense_input_size']
            windows = []
            for i in range(self.num_images):
                width, height = self.image_size_at(i)
                scale = blob_scale((height, width), target, max_size)
                windows.append(ext.dense_windows(width, height, scale, np.asarray(conf['dense_anchors']),
                                                 conf['dense_stride']))
            return windows
        mat = self.released_selective_search_file()
        if method == 'selective_search' and conf['ss_source'] not in ('auto', 'mat', 'opencv'):
            raise ValueError(f'imdb {self.name}: ss_source must be auto, mat or opencv, '
                             f'got {conf["ss_source"]!r}')
        if method == 'selective_search' and (conf['ss_source'] == 'mat' or
                                             (conf['ss_source'] == 'auto' and mat is not None)):
            if mat is None:
                raise FileNotFoundError(f'imdb {self.name} has no released Selective Search file; '
                                        'use ss_source opencv')
            return ext.clean_released(ext.load_released_mat(mat, self.image_index), conf['min_size'])
        _, boxes = ext.imdb_proposals(self, method, osp.join(self.cache_path, 'proposals'),
                                      max_boxes=conf['max_boxes'], min_size=conf['min_size'],
                                      workers=conf['workers'] or None)
        return boxes

    def create_roidb_from_box_list(self, box_list, gt_roidb):
        """Roidb entries for proposals.

        ``box_list[i]``: M x 4 (or M x 5 with a score column, ignored) boxes of image ``i``.
        ``gt_roidb``: the ground-truth roidb of the same images, or None. Each proposal's ``gt_overlaps`` row
        holds its best IoU with a gt box, in the column of that gt box's class (the released rule).
        Proposals are clipped into the image (see ``clip_proposals``).
        """
        if len(box_list) != self.num_images:
            raise ValueError(f'imdb {self.name}: {len(box_list)} proposal lists for {self.num_images} images')
        roidb = []
        for i, proposals in enumerate(box_list):
            if gt_roidb is not None:
                width, height = gt_roidb[i]['width'], gt_roidb[i]['height']
            else:
                width, height = self.image_size_at(i)
            boxes = clip_proposals(as_box_array(proposals, np.float32), width, height, self.image_path_at(i))
            overlaps = np.zeros((boxes.shape[0], self.num_classes), dtype=np.float32)
            if gt_roidb is not None and gt_roidb[i]['boxes'].size > 0 and boxes.shape[0] > 0:
                gt_boxes = gt_roidb[i]['boxes']
                gt_classes = gt_roidb[i]['gt_classes']
                ious = bbox_overlaps(boxes.astype(np.float64), gt_boxes.astype(np.float64))
                argmaxes = ious.argmax(axis=1)
                maxes = ious.max(axis=1)
                hit = np.where(maxes > 0)[0]
                overlaps[hit, gt_classes[argmaxes[hit]]] = maxes[hit]
            roidb.append({
                'image': self.image_path_at(i),
                'width': width,
                'height': height,
                'boxes': boxes,
                'gt_classes': np.zeros(boxes.shape[0], dtype=np.int32),
                'gt_overlaps': overlaps,
                'flipped': False,
                'seg_areas': np.zeros(boxes.shape[0], dtype=np.float32),
            })
        return roidb

    def append_flipped_images(self):
        """Append horizontally mirrored copies of every roidb entry and double ``image_index``.

        x1' = W - x2 - 1 and x2' = W - x1 - 1. Every box must lie in [0, W - 1] with x1 <= x2 (then the
        mirror does too); a box that does not is reported with its image and raises ``ValueError``.
        """
        roidb = self.roidb
        flipped = [flip_roidb_entry(entry) for entry in roidb]
        roidb.extend(flipped)
        self._image_index = self._image_index * 2
        self._flipped_appended = True

    def evaluate_detections(self, all_boxes, output_dir):
        """Score detections (``all_boxes[class][image]``: N x 5 ``[x1, y1, x2, y2, score]``); returns mAP."""
        raise NotImplementedError(f'{type(self).__name__} does not implement evaluate_detections')

    def evaluate_recall(self, candidate_boxes=None, thresholds=None, area='all', limit=None):
        """Proposal recall at IoU thresholds (the paper's Fig. 2 curves).

        ``candidate_boxes[i]``: M x 4 (or M x 5) boxes of image ``i``, best first; None uses the roidb's
        proposals (entries with ``gt_classes == 0``). Only the first ``limit`` boxes are used when given.
        Gt boxes (``gt_classes > 0``) whose area is in ``RECALL_AREA_RANGES[area]`` are matched greedily
        one-to-one: repeatedly the best-covered gt takes its best box, and both leave the pool (the
        released rule). A gt left without a box has coverage 0.
        Returns ``{'ar': mean recall over thresholds, 'recalls': per threshold, 'thresholds': ...,
        'gt_overlaps': sorted coverage of every counted gt}``; default thresholds 0.5:0.05:0.95.
        """
        if area not in RECALL_AREA_RANGES:
            raise ValueError(f'unknown area {area!r}; known: {", ".join(RECALL_AREA_RANGES)}')
        area_lo, area_hi = RECALL_AREA_RANGES[area]
        roidb = self.roidb
        coverages = []
        for i in range(self.num_images):
            entry = roidb[i]
            is_gt = entry['gt_classes'] > 0
            gt_boxes = entry['boxes'][is_gt]
            gt_areas = entry['seg_areas'][is_gt]
            gt_boxes = gt_boxes[(gt_areas >= area_lo) & (gt_areas <= area_hi)]
            boxes = entry['boxes'][~is_gt] if candidate_boxes is None else candidate_boxes[i]
            boxes = as_box_array(boxes, np.float64)
            if limit is not None:
                boxes = boxes[:limit]
            coverages.append(greedy_gt_coverage(boxes, gt_boxes.astype(np.float64)))
        gt_overlaps = np.sort(np.concatenate(coverages)) if coverages else np.zeros(0)
        if thresholds is None:
            thresholds = np.arange(0.5, 0.95 + 1e-5, 0.05)
        thresholds = np.asarray(thresholds, dtype=np.float64)
        if gt_overlaps.size == 0:
            raise ValueError(f'imdb {self.name}: no gt boxes in area range {area!r}; recall is undefined')
        recalls = np.array([(gt_overlaps >= t).sum() / gt_overlaps.size for t in thresholds])
        return {'ar': float(recalls.mean()), 'recalls': recalls, 'thresholds': thresholds,
                'gt_overlaps': gt_overlaps}


def set_proposals(imdb_, method, proposals_cfg, input_size, rpn_file=None):
    """Choose ``imdb_``'s proposal ``method`` and its settings (call at a tool boundary, before the roidb).

    ``proposals_cfg``: ``cfg.PROPOSALS``; ``input_size``: ``(shorter side, max size)`` of the net input
    (where dense windows are laid out); ``rpn_file``: the proposals file of method ``'rpn'``.
    """
    from rpn.generate_anchors import generate_anchors
    imdb_.set_proposal_method(method)
    imdb_.config.update({
        'ss_source': proposals_cfg.SS_SOURCE, 'max_boxes': proposals_cfg.MAX_BOXES,
        'min_size': proposals_cfg.MIN_SIZE, 'workers': proposals_cfg.WORKERS,
        'dense_anchors': generate_anchors(ratios=np.array(proposals_cfg.DENSE_RATIOS),
                                          scales=np.array(proposals_cfg.DENSE_SCALES)).tolist(),
        'dense_stride': proposals_cfg.DENSE_STRIDE, 'dense_input_size': tuple(input_size)})
    if method == 'rpn':
        if not rpn_file:
            raise ValueError(f'imdb {imdb_.name}: proposal method "rpn" needs a proposals file (--proposals)')
        imdb_.config['rpn_file'] = rpn_file
    for part in getattr(imdb_, 'parts', []):
        part.config.update(imdb_.config)


def as_box_array(boxes, dtype):
    """``boxes`` (M x 4, M x 5 with a score column, or empty of any shape) as an M x 4 array of ``dtype``."""
    boxes = np.asarray(boxes, dtype=dtype)
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=dtype)
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 5):
        raise ValueError(f'expected M x 4 or M x 5 boxes, got shape {boxes.shape}')
    return np.ascontiguousarray(boxes[:, :4])


def clip_proposals(boxes, width, height, image):
    """Clip proposals (M x 4 float32) into [0, W - 1] x [0, H - 1]; returns a new array.

    Proposals mapped back from an up-scaled network input may overshoot W - 1 by up to 1 / scale (< 1 px);
    that is clipped, so flipping never yields x1 < 0. A larger overshoot is a bug upstream and raises
    ``ValueError`` naming ``image``.
    """
    limits = np.array([width - 1, height - 1, width - 1, height - 1], dtype=np.float32)
    overshoot = np.maximum(-boxes, 0) + np.maximum(boxes - limits, 0)
    if boxes.size and overshoot.max() >= 1:
        k = int(np.argmax(overshoot.max(axis=1)))
        raise ValueError(f'proposal {k} = {boxes[k].tolist()} of {image} lies outside the {width} x {height} '
                         'image by a pixel or more')
    return np.clip(boxes, 0, limits)


def greedy_gt_coverage(boxes, gt_boxes):
    """IoU with which each gt box is covered under greedy one-to-one matching.

    ``boxes``: M x 4 float64 candidates, ``gt_boxes``: G x 4 float64. Repeatedly the gt with the highest
    IoU to any remaining box takes its best box (ties: lowest gt index, then lowest box index, as released),
    and both leave the pool. Returns G float64 (0 for gts left unmatched).
    """
    coverage = np.zeros(gt_boxes.shape[0])
    if boxes.shape[0] == 0 or gt_boxes.shape[0] == 0:
        return coverage
    overlaps = bbox_overlaps(gt_boxes, boxes)  # G x M: row-major argmax gives the released tie order
    for _ in range(min(boxes.shape[0], gt_boxes.shape[0])):
        gt_ind, box_ind = np.unravel_index(overlaps.argmax(), overlaps.shape)
        coverage[gt_ind] = overlaps[gt_ind, box_ind]
        overlaps[gt_ind, :] = -1
        overlaps[:, box_ind] = -1
    return coverage


def flip_roidb_entry(entry):
    """Return a horizontally mirrored copy of one roidb entry (``flipped`` set to True).

    Raises ``ValueError`` naming the image when a box is outside [0, W - 1] or has x2 < x1.
    """
    boxes = entry['boxes']
    width = entry['width']
    bad = (boxes[:, 0] < 0) | (boxes[:, 2] > width - 1) | (boxes[:, 2] < boxes[:, 0])
    if bad.any():
        k = int(np.where(bad)[0][0])
        raise ValueError(f'cannot flip {entry["image"]} (width {width}): box {k} = {boxes[k].tolist()} '
                         f'must satisfy 0 <= x1 <= x2 <= {width - 1}')
    flipped_boxes = boxes.copy()
    flipped_boxes[:, 0] = width - boxes[:, 2] - 1
    flipped_boxes[:, 2] = width - boxes[:, 0] - 1
    flipped = {key: (value.copy() if isinstance(value, np.ndarray) else value)
               for key, value in entry.items()}
    flipped['boxes'] = flipped_boxes
    flipped['flipped'] = True
    return flipped


def merge_roidbs(a, b):
    """Concatenate the boxes (and their gt_classes, gt_overlaps, seg_areas) of two aligned roidbs.

    ``a`` is modified in place and returned; the other keys are taken from ``a``.
    """
    if len(a) != len(b):
        raise ValueError(f'cannot merge roidbs of {len(a)} and {len(b)} images')
    for entry_a, entry_b in zip(a, b):
        if entry_a['image'] != entry_b['image']:
            raise ValueError(f'cannot merge roidb entries of different images: {entry_a["image"]} and '
                             f'{entry_b["image"]}')
        entry_a['boxes'] = np.vstack((entry_a['boxes'], entry_b['boxes'])).astype(np.float32)
        entry_a['gt_classes'] = np.hstack((entry_a['gt_classes'], entry_b['gt_classes'])).astype(np.int32)
        entry_a['gt_overlaps'] = np.vstack((entry_a['gt_overlaps'],
                                            entry_b['gt_overlaps'])).astype(np.float32)
        entry_a['seg_areas'] = np.hstack((entry_a['seg_areas'], entry_b['seg_areas'])).astype(np.float32)
    return a


def save_box_list(path, image_index, box_list):
    """Write per-image boxes to one ``.npz``: ``image_index`` (str), ``boxes`` (concatenated M x C float32,
    C = 4 or 5, all images alike) and ``offsets`` (num_images + 1 int64; image i owns rows
    offsets[i]:offsets[i+1]). Written to a temporary file and renamed, so readers never see a partial file.
    """
    if len(image_index) != len(box_list):
        raise ValueError(f'{path}: {len(box_list)} box arrays for {len(image_index)} image ids')
    arrays = [np.asarray(b, dtype=np.float32) for b in box_list]
    columns = {a.shape[1] for a in arrays if a.ndim == 2 and a.shape[0] > 0}
    if len(columns) > 1 or columns - {4, 5} or any(a.ndim != 2 and a.size > 0 for a in arrays):
        raise ValueError(f'{path}: every box array must be M x 4 or M x 5 (all alike); got shapes '
                         f'{sorted({a.shape for a in arrays})}')
    ncols = columns.pop() if columns else 4
    arrays = [a.reshape(-1, ncols) for a in arrays]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([a.shape[0] for a in arrays])
    boxes = np.concatenate(arrays) if arrays else np.zeros((0, ncols), dtype=np.float32)
    with atomic_write(path) as f:
        np.savez(f, image_index=np.array(list(image_index), dtype=str), boxes=boxes, offsets=offsets)


def load_box_list(path, image_index):
    """Read a ``save_box_list`` file; its ids must equal ``image_index`` (in order). Returns a list of
    per-image float32 arrays (M x 4 or M x 5)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'proposal file not found: {path}')
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {'image_index', 'boxes', 'offsets'} - set(data.files)
            if missing:
                raise ValueError(f'{path}: not a proposals file (missing {", ".join(sorted(missing))})')
            ids = [str(s) for s in data['image_index']]
            boxes = data['boxes']
            offsets = data['offsets']
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f'{path}: unreadable proposals file ({type(exc).__name__}: {exc})') from None
    expected = [str(s) for s in image_index]
    if ids != expected:
        where = next((k for k, (x, y) in enumerate(zip(ids, expected)) if x != y),
                     min(len(ids), len(expected)))
        found = ids[where] if where < len(ids) else '<end>'
        wanted = expected[where] if where < len(expected) else '<end>'
        raise ValueError(f'{path}: image ids do not match the imdb ({len(ids)} in file, {len(expected)} '
                         f'expected); first difference at position {where}: file has {found!r}, '
                         f'imdb has {wanted!r}')
    if offsets.shape != (len(ids) + 1,) or offsets[-1] != boxes.shape[0]:
        raise ValueError(f'{path}: offsets do not match the boxes ({offsets.shape[0]} offsets, '
                         f'{boxes.shape[0]} boxes)')
    return [boxes[offsets[i]:offsets[i + 1]].copy() for i in range(len(ids))]
