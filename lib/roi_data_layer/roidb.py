"""Prepare an imdb's roidb for training: per-RoI class and overlap summaries, bbox-regression targets.

Boxes are ``[x1, y1, x2, y2]``, 0-based, pixel-inclusive. Entry format: docs/architecture.md.
"""

import numpy as np

from fast_rcnn.bbox_transform import bbox_transform
from utils.cython_bbox import bbox_overlaps


def prepare_roidb(imdb):
    """Complete ``imdb.roidb`` in place for training.

    Fills ``image``, ``width``, ``height`` where the dataset did not, and adds ``max_classes`` (N int64,
    argmax of ``gt_overlaps``) and ``max_overlaps`` (N float32). Raises ValueError on an inconsistent entry:
    ``gt_overlaps`` not N×K (K = ``imdb.num_classes``), or a RoI whose zero/non-zero max overlap disagrees
    with a background/object class.
    """
    for i, entry in enumerate(imdb.roidb):
        if 'image' not in entry:
            entry['image'] = imdb.image_path_at(i)
        if 'width' not in entry or 'height' not in entry:
            entry['width'], entry['height'] = imdb.image_size_at(i)
        gt_overlaps = entry['gt_overlaps']
        if gt_overlaps.shape != (entry['boxes'].shape[0], imdb.num_classes):
            raise ValueError(f'{entry["image"]}: gt_overlaps has shape {gt_overlaps.shape}, expected '
                             f'({entry["boxes"].shape[0]}, {imdb.num_classes})')
        max_overlaps = gt_overlaps.max(axis=1) if gt_overlaps.size else np.zeros(0, dtype=np.float32)
        max_classes = gt_overlaps.argmax(axis=1) if gt_overlaps.size else np.zeros(0, dtype=np.int64)
        # A RoI overlapping nothing must be background, one overlapping something must not be.
        if np.any(max_classes[max_overlaps == 0] != 0) or np.any(max_classes[max_overlaps > 0] == 0):
            raise ValueError(f'{entry["image"]}: max_classes and max_overlaps disagree '
                             '(a zero-overlap RoI with an object class, or an overlapping RoI of class 0)')
        entry['max_overlaps'] = max_overlaps.astype(np.float32)
        entry['max_classes'] = max_classes.astype(np.int64)


def compute_targets(rois, max_overlaps, max_classes, bbox_thresh):
    """Regression targets of one image's RoIs towards its gt boxes.

    ``rois``: N×4; gt boxes are the rows with ``max_overlaps == 1``. Each RoI with max overlap
    ≥ ``bbox_thresh`` regresses to the gt box it overlaps most. Returns N×5 float32
    ``[class, dx, dy, dw, dh]``, all zeros for the other RoIs (and for an image without gt boxes).
    """
    targets = np.zeros((rois.shape[0], 5), dtype=np.float32)
    gt_inds = np.where(max_overlaps == 1)[0]
    if gt_inds.size == 0:
        return targets
    ex_inds = np.where(max_overlaps >= bbox_thresh)[0]
    rois = rois.astype(np.float64)
    ex_gt_overlaps = bbox_overlaps(np.ascontiguousarray(rois[ex_inds]), np.ascontiguousarray(rois[gt_inds]))
    gt_assignment = ex_gt_overlaps.argmax(axis=1)
    targets[ex_inds, 0] = max_classes[ex_inds]
    targets[ex_inds, 1:] = bbox_transform(rois[ex_inds], rois[gt_inds[gt_assignment]])
    return targets


def class_target_stats(target_list, num_classes):
    """Per-class mean and standard deviation of regression targets.

    ``target_list``: per-image N×5 ``[class, dx, dy, dw, dh]`` arrays. Returns ``(means, stds)``, each K×4
    float64. Row 0 (background) and classes without examples get mean 0. A zero std (background, no
    examples, or targets that never vary, e.g. a gt-only roidb) becomes 1: the released code divides 0 by 0
    there and produces NaN targets; with 1, normalising and folding back into ``bbox_pred`` are identities.
    """
    counts = np.zeros(num_classes)
    sums = np.zeros((num_classes, 4))
    squared_sums = np.zeros((num_classes, 4))
    for targets in target_list:
        classes = targets[:, 0].astype(np.int64)
        for cls in range(1, num_classes):
            cls_targets = targets[classes == cls, 1:].astype(np.float64)
            counts[cls] += cls_targets.shape[0]
            sums[cls] += cls_targets.sum(axis=0)
            squared_sums[cls] += (cls_targets ** 2).sum(axis=0)
    safe_counts = np.maximum(counts, 1)[:, np.newaxis]
    means = sums / safe_counts
    # var = E[x²] − E[x]², clamped at 0 against rounding.
    stds = np.sqrt(np.maximum(squared_sums / safe_counts - means ** 2, 0.0))
    stds[stds == 0] = 1.0
    return means, stds


def add_bbox_regression_targets(roidb, bbox_thresh, normalize, precomputed=None):
    """Add ``bbox_targets`` (N×5 ``[class, dx, dy, dw, dh]``) to every prepared entry.

    ``bbox_thresh``: a RoI regresses when its max IoU is ≥ this (``cfg.TRAIN.BBOX_THRESH``). With
    ``normalize`` (``cfg.TRAIN.BBOX_NORMALIZE_TARGETS``) the object classes' targets become
    (t − mean) / std in place, with ``precomputed`` = ``(means, stds)`` (each 4 values, used for every
    class) or, when None, the per-class statistics of the roidb's own targets.
    Returns ``(means, stds)``, each K×4 float64, that the trained ``bbox_pred`` must fold back in — or
    None when the targets were left raw (then there is nothing to fold: the one place that decides).
    """
    num_classes = roidb[0]['gt_overlaps'].shape[1]
    for entry in roidb:
        entry['bbox_targets'] = compute_targets(entry['boxes'], entry['max_overlaps'], entry['max_classes'],
                                                bbox_thresh)
    if not normalize:
        return None
    if precomputed is not None:
        means = np.tile(np.asarray(precomputed[0], dtype=np.float64), (num_classes, 1))
        stds = np.tile(np.asarray(precomputed[1], dtype=np.float64), (num_classes, 1))
    else:
        means, stds = class_target_stats([entry['bbox_targets'] for entry in roidb], num_classes)
    for entry in roidb:
        targets = entry['bbox_targets']
        for cls in range(1, num_classes):
            cls_inds = targets[:, 0] == cls
            targets[cls_inds, 1:] = (targets[cls_inds, 1:] - means[cls]) / stds[cls]
    return means, stds
