"""Fast R-CNN training targets for RPN proposals (end-to-end training).

Pure numpy (no Caffe), used by ``rpn.proposal_target_layer.ProposalTargetLayer``.
Boxes are ``[x1, y1, x2, y2]``, 0-based, pixel-inclusive, in the scaled image's pixels.
"""

import numpy as np

from fast_rcnn.bbox_transform import bbox_transform
from roi_data_layer.minibatch import expand_bbox_targets, sample_fg_bg_inds
from utils.cython_bbox import bbox_overlaps


def normalized_targets(ex_rois, gt_rois, means, stds):
    """Regression targets (N×4) from ``ex_rois`` to ``gt_rois`` (N×4 each), as ``(t − means) / stds``;
    ``means``, ``stds``: 4 values each, or None for raw targets."""
    targets = bbox_transform(ex_rois, gt_rois)
    if means is not None:
        targets = (targets - np.asarray(means)) / np.asarray(stds)
    return targets


def proposal_targets(rpn_rois, gt_boxes, num_classes, rois_per_image, fg_rois_per_image, fg_thresh,
                     bg_thresh_hi, bg_thresh_lo, means, stds, inside_weights):
    """Sample RoIs of one image and compute their classification and regression targets.

    ``rpn_rois``: R×5 ``[0, x1, y1, x2, y2]``; ``gt_boxes``: G×5 ``[x1, y1, x2, y2, class]`` (G may be 0).
    The gt boxes join the candidates. Each candidate takes the class of its highest-IoU gt (background
    when G = 0); sampling by ``sample_fg_bg_inds``; targets from ``normalized_targets`` (``means``/``stds``
    None: unnormalised), laid out by ``expand_bbox_targets``.
    Returns float32 ``rois`` S×5, ``labels`` S (foreground first, background 0), ``bbox_targets``,
    ``bbox_inside_weights``, ``bbox_outside_weights`` S×4K (outside = 1 where inside > 0).
    """
    if rpn_rois.shape[0] and np.any(rpn_rois[:, 0] != 0):
        raise ValueError('proposal targets support single-image batches only (batch index 0)')
    gt_rois = np.hstack([np.zeros((gt_boxes.shape[0], 1), dtype=np.float64), gt_boxes[:, :4]])
    all_rois = np.vstack([rpn_rois.astype(np.float64), gt_rois])
    overlaps = bbox_overlaps(np.ascontiguousarray(all_rois[:, 1:5]),
                             np.ascontiguousarray(gt_boxes[:, :4], dtype=np.float64))
    if gt_boxes.shape[0] > 0:
        gt_assignment = overlaps.argmax(axis=1)
        max_overlaps = overlaps.max(axis=1)
        classes = gt_boxes[gt_assignment, 4]
    else:
        gt_assignment = np.zeros(all_rois.shape[0], dtype=np.int64)
        max_overlaps = np.zeros(all_rois.shape[0])
        classes = np.zeros(all_rois.shape[0])

    keep_inds, num_fg = sample_fg_bg_inds(max_overlaps, rois_per_image, fg_rois_per_image, fg_thresh,
                                          bg_thresh_hi, bg_thresh_lo)
    labels = classes[keep_inds]
    labels[num_fg:] = 0
    rois = all_rois[keep_inds]

    targets = np.zeros((keep_inds.size, 4))
    if num_fg > 0:
        # Only foreground targets are used (inside weights are 0 elsewhere), and they all have a gt.
        fg_gt = gt_boxes[gt_assignment[keep_inds[:num_fg]], :4]
        targets[:num_fg] = normalized_targets(rois[:num_fg, 1:5], fg_gt, means, stds)
    bbox_targets, bbox_inside_weights = expand_bbox_targets(np.hstack([labels[:, np.newaxis], targets]),
                                                            num_classes, inside_weights)
    return (rois.astype(np.float32), labels.astype(np.float32), bbox_targets, bbox_inside_weights,
            (bbox_inside_weights > 0).astype(np.float32))
