"""RPN training targets: label anchors against the ground truth, sample a minibatch, regression targets.

Pure numpy (no Caffe), used by ``rpn.anchor_target_layer.AnchorTargetLayer``.
Boxes are ``[x1, y1, x2, y2]``, 0-based, pixel-inclusive. Labels: 1 object, 0 background, −1 ignored.
"""

import numpy as np

from fast_rcnn.bbox_transform import bbox_transform
from utils.cython_bbox import bbox_overlaps


def inside_anchor_inds(anchors, im_height, im_width, allowed_border):
    """Indices of the N×4 ``anchors`` lying inside the image grown by ``allowed_border`` pixels on each side
    (0: fully inside [0, W) × [0, H))."""
    return np.where((anchors[:, 0] >= -allowed_border) &
                    (anchors[:, 1] >= -allowed_border) &
                    (anchors[:, 2] < im_width + allowed_border) &
                    (anchors[:, 3] < im_height + allowed_border))[0]


def label_anchors(overlaps, positive_overlap, negative_overlap, clobber_positives):
    """Label anchors from their IoU with the gt boxes.

    ``overlaps``: N×G IoU of N anchors with G gt boxes. Negative: max IoU < ``negative_overlap``.
    Positive: the anchors tying some gt's highest IoU, and those with IoU ≥ ``positive_overlap``.
    Negatives are assigned first (positives overwrite them) unless ``clobber_positives``.
    Returns ``(labels, argmax_overlaps)``: N int32 labels in {1, 0, −1} and, per anchor, the index of
    its best gt (0 when G = 0). With no gt boxes every anchor is negative.
    """
    num_anchors, num_gt = overlaps.shape
    labels = np.full(num_anchors, -1, dtype=np.int32)
    if num_gt == 0:
        labels[:] = 0
        return labels, np.zeros(num_anchors, dtype=np.int64)
    if num_anchors == 0:
        return labels, np.zeros(0, dtype=np.int64)

    argmax_overlaps = overlaps.argmax(axis=1)
    max_overlaps = overlaps[np.arange(num_anchors), argmax_overlaps]
    gt_max_overlaps = overlaps.max(axis=0)
    # The released code also matches gts whose best IoU is 0 (no anchor inside the image touches them),
    # which turns every zero-IoU anchor into a positive; such gts get no best-match positive here.
    ties_best = ((overlaps == gt_max_overlaps) & (gt_max_overlaps > 0)).any(axis=1)

    if not clobber_positives:
        labels[max_overlaps < negative_overlap] = 0
    labels[ties_best] = 1
    labels[max_overlaps >= positive_overlap] = 1
    if clobber_positives:
        labels[max_overlaps < negative_overlap] = 0
    return labels, argmax_overlaps


def subsample_labels(labels, batch_size, fg_fraction):
    """Disable labels (set −1) so at most ``int(fg_fraction · batch_size)`` are 1 and the 0s fill the
    batch up to ``batch_size``. Which ones survive is drawn with numpy's global RNG, without replacement.

    ``labels``: N int array in {1, 0, −1}. Returns a new array; the input is unchanged.
    """
    labels = labels.copy()
    num_fg = int(fg_fraction * batch_size)
    fg_inds = np.where(labels == 1)[0]
    if len(fg_inds) > num_fg:
        labels[np.random.choice(fg_inds, size=len(fg_inds) - num_fg, replace=False)] = -1

    num_bg = batch_size - int(np.sum(labels == 1))
    bg_inds = np.where(labels == 0)[0]
    if len(bg_inds) > num_bg:
        labels[np.random.choice(bg_inds, size=len(bg_inds) - num_bg, replace=False)] = -1
    return labels


def outside_weights(labels, positive_weight):
    """Per-anchor weight of the regression loss's outer sum (length N float32, 0 on ignored anchors).

    ``positive_weight < 0``: every labelled anchor gets 1 / (number labelled), as released. Otherwise
    ``positive_weight`` = p in [0, 1]: positives share p, negatives share 1 − p.
    """
    weights = np.zeros(len(labels), dtype=np.float32)
    positives = labels == 1
    negatives = labels == 0
    if positive_weight < 0:
        pos_weight = neg_weight = 1.0 / max(int(np.sum(labels >= 0)), 1)
    elif positive_weight <= 1:
        pos_weight = positive_weight / max(int(np.sum(positives)), 1)
        neg_weight = (1.0 - positive_weight) / max(int(np.sum(negatives)), 1)
    else:
        raise ValueError(f'RPN_POSITIVE_WEIGHT must be < 0 (uniform) or in [0, 1], got {positive_weight}')
    weights[positives] = pos_weight
    weights[negatives] = neg_weight
    return weights


def unmap(data, count, inds, fill):
    """Scatter ``data`` (len(inds)×...) back to ``count`` rows at ``inds``; other rows get ``fill``."""
    ret = np.full((count,) + data.shape[1:], fill, dtype=data.dtype)
    ret[inds] = data
    return ret


def anchor_targets(all_anchors, gt_boxes, im_height, im_width, allowed_border, positive_overlap,
                   negative_overlap, clobber_positives, batch_size, fg_fraction, bbox_inside_weights,
                   positive_weight):
    """Labels, regression targets and loss weights for every anchor.

    ``all_anchors``: N×4 (e.g. from ``shifted_anchors``); ``gt_boxes``: G×4 (G may be 0), both in the
    scaled image's pixels; ``im_height``, ``im_width``: scaled image size. Anchors outside the image
    (beyond ``allowed_border``) are ignored (−1). Others are labelled by ``label_anchors`` and sampled by
    ``subsample_labels``. Targets go from each inside anchor to its best gt (0 with no gt);
    ``bbox_inside_weights`` (4 values) mark the positives, ``outside_weights`` the labelled anchors.
    Returns ``(labels N int32, bbox_targets N×4 float32, inside_weights N×4 float32,
    outside_weights N×4 float32)``.
    """
    num_all = all_anchors.shape[0]
    inds_inside = inside_anchor_inds(all_anchors, im_height, im_width, allowed_border)
    anchors = np.ascontiguousarray(all_anchors[inds_inside], dtype=np.float64)
    gt = np.ascontiguousarray(gt_boxes[:, :4], dtype=np.float64)

    overlaps = bbox_overlaps(anchors, gt)
    labels, argmax_overlaps = label_anchors(overlaps, positive_overlap, negative_overlap, clobber_positives)
    labels = subsample_labels(labels, batch_size, fg_fraction)

    targets = np.zeros((len(inds_inside), 4), dtype=np.float32)
    if gt.shape[0] > 0:
        targets[:] = bbox_transform(anchors, gt[argmax_overlaps])
    inside = np.zeros((len(inds_inside), 4), dtype=np.float32)
    inside[labels == 1] = np.asarray(bbox_inside_weights, dtype=np.float32)
    outside = np.repeat(outside_weights(labels, positive_weight)[:, np.newaxis], 4, axis=1)

    return (unmap(labels, num_all, inds_inside, -1),
            unmap(targets, num_all, inds_inside, 0),
            unmap(inside, num_all, inds_inside, 0),
            unmap(outside, num_all, inds_inside, 0))


def anchor_target_blobs(labels, bbox_targets, inside_weights, outside_weights, height, width, num_anchors):
    """Lay out per-anchor arrays (rows in (h, w, a) order) as the layer's top blobs.

    Returns float32 ``labels`` 1×1×(A·H)×W (row a·H + h) and ``bbox_targets``, ``inside_weights``,
    ``outside_weights`` each 1×4A×H×W (channel 4a + k).
    """
    labels = labels.reshape(1, height, width, num_anchors).transpose(0, 3, 1, 2)
    labels = labels.reshape(1, 1, num_anchors * height, width).astype(np.float32)

    def per_channel(values):
        values = values.reshape(1, height, width, 4 * num_anchors).transpose(0, 3, 1, 2)
        return np.ascontiguousarray(values, dtype=np.float32)

    return labels, per_channel(bbox_targets), per_channel(inside_weights), per_channel(outside_weights)
