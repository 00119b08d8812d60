# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Pairwise IoU of pixel-inclusive boxes (compiled as ``utils.cython_bbox``)."""

import numpy as np


def _as_box_array(boxes, name):
    """Return the first four columns of ``boxes`` as a C-contiguous float64 M×4 array.

    Extra columns are allowed (callers pass gt boxes as M×5 ``[x1, y1, x2, y2, cls]``).
    Raises ValueError for a wrong shape or a non-finite coordinate, so that bad input never
    turns into NaN overlaps further down.
    """
    arr = np.asarray(boxes)
    if arr.ndim != 2 or arr.shape[1] < 4:
        raise ValueError(f'{name} must be an M x 4 (or wider) array, got shape {arr.shape}')
    arr = np.ascontiguousarray(arr[:, :4], dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f'{name} contains non-finite coordinates')
    return arr


def bbox_overlaps(boxes, query_boxes):
    """IoU between every box and every query box.

    boxes: N×4 (or wider) ``[x1, y1, x2, y2]``; query_boxes: K×4 (or wider); both 0-based and
    pixel-inclusive (width = x2 − x1 + 1), converted to float64.
    Returns an N×K float64 array with ``out[n, k] = inter / (area_n + area_k − inter)``.

    Degenerate boxes: the intersection width is ``min(x2) − max(x1) + 1`` (same for height) and
    only a strictly positive width *and* height count as overlap. Since that width is at most
    each box's own width, a box with width ≤ 0 or height ≤ 0 (x2 − x1 + 1 ≤ 0, e.g. x2 = x1 − 1)
    gets IoU 0 against everything, itself included (x2 = x1 is a valid one-pixel-wide box).
    Whenever both extents are positive both areas are positive, so the union is never ≤ 0 and
    no NaN/inf can appear.
    Non-finite coordinates raise ValueError.
    """
    cdef const double[:, ::1] b = _as_box_array(boxes, 'boxes')
    cdef const double[:, ::1] q = _as_box_array(query_boxes, 'query_boxes')
    cdef Py_ssize_t n_boxes = b.shape[0]
    cdef Py_ssize_t n_query = q.shape[0]
    overlaps_arr = np.zeros((n_boxes, n_query), dtype=np.float64)
    query_areas_arr = np.empty(n_query, dtype=np.float64)
    cdef double[:, ::1] overlaps = overlaps_arr
    cdef double[::1] query_areas = query_areas_arr
    cdef Py_ssize_t n, k
    cdef double iw, ih, inter, box_area
    with nogil:
        for k in range(n_query):
            query_areas[k] = (q[k, 2] - q[k, 0] + 1) * (q[k, 3] - q[k, 1] + 1)
        # n outer, k inner: the output row is written contiguously.
        for n in range(n_boxes):
            box_area = (b[n, 2] - b[n, 0] + 1) * (b[n, 3] - b[n, 1] + 1)
            for k in range(n_query):
                iw = min(b[n, 2], q[k, 2]) - max(b[n, 0], q[k, 0]) + 1
                if iw <= 0:
                    continue
                ih = min(b[n, 3], q[k, 3]) - max(b[n, 1], q[k, 1]) + 1
                if ih <= 0:
                    continue
                inter = iw * ih
                overlaps[n, k] = inter / (box_area + query_areas[k] - inter)
    return overlaps_arr
