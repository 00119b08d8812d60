"""Box regression parameterisation (R-CNN / Fast R-CNN / Faster R-CNN) and clipping.

Boxes are ``[x1, y1, x2, y2]``, 0-based, pixel-inclusive: width = x2 − x1 + 1, centre x = x1 + 0.5·width.
"""

import numpy as np

# Largest log-scale factor applied when decoding: exp(dw) ≤ 1000/16, i.e. a box can grow at most to
# 1000 px from a 16 px anchor. The released code has no clamp and overflows to inf on wild deltas early
# in training; later implementations (Detectron, torchvision) clamp here. Valid deltas never reach it.
BBOX_XFORM_CLIP = np.log(1000.0 / 16.0)


def _widths_heights_centres(boxes):
    """Return (widths, heights, centre_x, centre_y), each of length N, of N×4 ``boxes``."""
    widths = boxes[:, 2] - boxes[:, 0] + 1.0
    heights = boxes[:, 3] - boxes[:, 1] + 1.0
    return widths, heights, boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights


def bbox_transform(ex_rois, gt_rois):
    """Regression targets that move ``ex_rois`` (N×4) onto ``gt_rois`` (N×4).

    Returns N×4 ``(dx, dy, dw, dh)``: dx = (gx − ex)/ew, dy = (gy − ey)/eh (centres), dw = log(gw/ew),
    dh = log(gh/eh), in the dtype numpy promotes the inputs to (float64 for float64 inputs).
    """
    ex_w, ex_h, ex_x, ex_y = _widths_heights_centres(ex_rois)
    gt_w, gt_h, gt_x, gt_y = _widths_heights_centres(gt_rois)
    return np.stack([(gt_x - ex_x) / ex_w, (gt_y - ex_y) / ex_h,
                     np.log(gt_w / ex_w), np.log(gt_h / ex_h)], axis=1)


def bbox_transform_inv(boxes, deltas):
    """Apply ``deltas`` (N×4K, class k in columns 4k..4k+3) to ``boxes`` (N×4).

    Returns N×4K boxes in the dtype of ``deltas``: centre = d·size + centre, size = exp(d)·size,
    x1 = cx − 0.5·w, y1 = cy − 0.5·h, x2 = cx + 0.5·w, y2 = cy + 0.5·h. The released decoder has no −1 on
    x2/y2, so it is not the exact inverse of ``bbox_transform``: a decoded box is one pixel wider than the
    encoded one. We keep that, as the released models were trained and evaluated with it.
    dw, dh are clamped at ``BBOX_XFORM_CLIP`` so exp cannot overflow.
    """
    if boxes.shape[0] == 0:
        return np.zeros((0, deltas.shape[1]), dtype=deltas.dtype)
    widths, heights, ctr_x, ctr_y = _widths_heights_centres(boxes.astype(deltas.dtype, copy=False))
    dx = deltas[:, 0::4]
    dy = deltas[:, 1::4]
    dw = np.minimum(deltas[:, 2::4], BBOX_XFORM_CLIP)
    dh = np.minimum(deltas[:, 3::4], BBOX_XFORM_CLIP)

    pred_ctr_x = dx * widths[:, np.newaxis] + ctr_x[:, np.newaxis]
    pred_ctr_y = dy * heights[:, np.newaxis] + ctr_y[:, np.newaxis]
    pred_w = np.exp(dw) * widths[:, np.newaxis]
    pred_h = np.exp(dh) * heights[:, np.newaxis]

    pred_boxes = np.empty(deltas.shape, dtype=deltas.dtype)
    pred_boxes[:, 0::4] = pred_ctr_x - 0.5 * pred_w
    pred_boxes[:, 1::4] = pred_ctr_y - 0.5 * pred_h
    pred_boxes[:, 2::4] = pred_ctr_x + 0.5 * pred_w
    pred_boxes[:, 3::4] = pred_ctr_y + 0.5 * pred_h
    return pred_boxes


def clip_boxes(boxes, im_shape):
    """Clip N×4K ``boxes`` to the image: x to [0, W − 1], y to [0, H − 1].

    ``im_shape``: (H, W, ...). Returns a new array of the same shape and dtype (the input is unchanged).
    """
    clipped = np.empty_like(boxes)
    max_x = im_shape[1] - 1
    max_y = im_shape[0] - 1
    clipped[:, 0::4] = np.clip(boxes[:, 0::4], 0, max_x)
    clipped[:, 1::4] = np.clip(boxes[:, 1::4], 0, max_y)
    clipped[:, 2::4] = np.clip(boxes[:, 2::4], 0, max_x)
    clipped[:, 3::4] = np.clip(boxes[:, 3::4], 0, max_y)
    return clipped
