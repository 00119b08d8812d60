"""Input preparation shared by the CPU and GPU NMS so both see identical boxes and order."""

import numpy as np


def as_dets_array(dets):
    """Return ``dets[:, :5]`` as a C-contiguous float32 N×5 array ``[x1, y1, x2, y2, score]``.

    Boxes are 0-based and pixel-inclusive; NMS arithmetic is float32 on both CPU and GPU, so any
    real dtype is converted. Extra columns are ignored. Raises ValueError for a wrong shape or
    a non-finite value (NaN scores would make the order, and NaN boxes the overlaps, arbitrary).
    """
    arr = np.asarray(dets)
    if arr.ndim != 2 or arr.shape[1] < 5:
        raise ValueError(f'dets must be an N x 5 (or wider) array, got shape {arr.shape}')
    arr = np.ascontiguousarray(arr[:, :5], dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError('dets contains non-finite values')
    return arr


def score_order(dets):
    """Indices (int64, length N) visiting ``dets`` by descending score, equal scores by index.

    A stable sort of the negated scores keeps the earlier index first among ties.
    """
    return np.argsort(-dets[:, 4], kind='stable').astype(np.int64, copy=False)
