"""Greedy NMS in plain numpy: the reference the compiled kernels are checked and benchmarked against.

Same rule as ``nms.cpu_nms`` / ``nms.gpu_nms``: boxes ``[x1, y1, x2, y2, score]`` 0-based pixel-inclusive
(areas with +1), visited by descending score (ties: lower index first), a box dropped when its IoU with a
kept one is > ``thresh``, all in float32.
"""

import numpy as np


def py_cpu_nms(dets, thresh):
    """Kept row indices of ``dets`` (N×5), highest score first, as a 1-D int64 array."""
    dets = dets.astype(np.float32, copy=False)
    x1, y1, x2, y2, scores = (dets[:, c] for c in range(5))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    remaining = np.argsort(-scores, kind='stable')
    limit = np.float32(thresh)
    keep = []
    while remaining.size:
        i, rest = remaining[0], remaining[1:]
        keep.append(i)
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        with np.errstate(invalid='ignore', divide='ignore'):  # two zero-area boxes: 0/0 is NaN, never > limit
            iou = inter / (areas[i] + areas[rest] - inter)
        remaining = rest[~(iou > limit)]
    return np.array(keep, dtype=np.int64)
