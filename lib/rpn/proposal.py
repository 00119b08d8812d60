"""Turn RPN outputs into object proposals: decode, clip, drop small boxes, rank, NMS.

Pure numpy (no Caffe), used by ``rpn.proposal_layer.ProposalLayer``.
Boxes are ``[x1, y1, x2, y2]``, 0-based, pixel-inclusive, in the scaled input image's pixels.
"""

import numpy as np

from fast_rcnn.bbox_transform import bbox_transform_inv, clip_boxes
from fast_rcnn.nms_wrapper import nms


def filter_small_boxes(boxes, min_size):
    """Indices of the N×4 ``boxes`` whose width and height (pixel-inclusive) are both ≥ ``min_size``."""
    widths = boxes[:, 2] - boxes[:, 0] + 1
    heights = boxes[:, 3] - boxes[:, 1] + 1
    return np.where((widths >= min_size) & (heights >= min_size))[0]


def rank_order(scores, use_cls, seed):
    """Visiting order of N proposals: descending ``scores`` (ties: lower index first), or, when
    ``use_cls`` is false (the paper's ablation without the cls scores), a random permutation drawn from
    a generator seeded with ``seed``. Returns an int64 array of length N."""
    if use_cls:
        return np.argsort(-scores, kind='stable')
    return np.random.default_rng(seed).permutation(len(scores))


def top_n(inds, n):
    """The first ``n`` of ``inds``; ``n`` ≤ 0 means no cut (alt-opt proposal generation uses −1)."""
    return inds[:n] if n > 0 else inds


def generate_proposals(all_anchors, bbox_deltas, scores, im_height, im_width, min_size,
                       pre_nms_top_n, post_nms_top_n, nms_thresh,
                       use_reg=True, use_cls=True, use_nms=True, seed=0, nms_gpu_id=-1):
    """Proposals for one image.

    ``all_anchors``: N×4; ``bbox_deltas``: N×4 RPN regression outputs; ``scores``: N objectness scores;
    ``im_height``, ``im_width``: size of the scaled input; ``min_size``: minimum side in the same pixels.
    Pipeline (released order): decode (anchors kept as they are when ``use_reg`` is false) → clip to the
    image → drop boxes with a side < ``min_size`` → rank (``rank_order``) → keep ``pre_nms_top_n`` → NMS at
    ``nms_thresh`` (skipped when ``use_nms`` is false; on GPU ``nms_gpu_id``, -1: the CPU) → keep
    ``post_nms_top_n``.
    Returns ``(boxes R×4 float32, scores R float32)`` in rank order, R ≥ 1: when no box survives (e.g.
    every box is under ``min_size``), the whole image is returned as one proposal with score 0, because
    Caffe's downstream layers (ROIPooling, Softmax) cannot take a blob with zero rows.
    """
    boxes, scores, _ = generate_proposals_with_anchors(
        all_anchors, bbox_deltas, scores, im_height, im_width, min_size, pre_nms_top_n, post_nms_top_n,
        nms_thresh, use_reg=use_reg, use_cls=use_cls, use_nms=use_nms, seed=seed, nms_gpu_id=nms_gpu_id)
    return boxes, scores


def generate_proposals_with_anchors(all_anchors, bbox_deltas, scores, im_height, im_width, min_size,
                                    pre_nms_top_n, post_nms_top_n, nms_thresh,
                                    use_reg=True, use_cls=True, use_nms=True, seed=0, nms_gpu_id=-1):
    """``generate_proposals`` plus, per proposal, the row of ``all_anchors`` it was decoded from
    (R int64; −1 for the whole-image fallback). Returns ``(boxes, scores, anchor_rows)``."""
    if use_reg:
        boxes = bbox_transform_inv(all_anchors.astype(np.float32), bbox_deltas.astype(np.float32, copy=False))
    else:
        boxes = all_anchors.astype(np.float32)
    boxes = clip_boxes(boxes, (im_height, im_width))
    keep = filter_small_boxes(boxes, min_size)
    boxes, scores, rows = boxes[keep], scores[keep], keep

    order = top_n(rank_order(scores, use_cls, seed), pre_nms_top_n)
    boxes, scores, rows = boxes[order], scores[order], rows[order]
    keep = np.arange(len(order))
    if use_nms:
        # NMS sorts by its score column; feed it the rank so it visits boxes in exactly our order (this
        # also covers the random-order ablation).
        rank_key = -np.arange(len(order), dtype=np.float32)
        keep = nms(np.hstack([boxes, rank_key[:, np.newaxis]]), nms_thresh, nms_gpu_id)
    keep = top_n(keep, post_nms_top_n)
    if len(keep) == 0:
        return (np.array([[0, 0, im_width - 1, im_height - 1]], dtype=np.float32),
                np.zeros(1, dtype=np.float32), np.array([-1], dtype=np.int64))
    return boxes[keep], scores[keep].astype(np.float32, copy=False), rows[keep].astype(np.int64)
