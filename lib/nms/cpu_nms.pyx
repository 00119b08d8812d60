# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Greedy NMS on the CPU, float32 arithmetic identical to the CUDA kernel in ``nms_kernel.cu``."""

from libc.stdint cimport int64_t

import numpy as np

from nms.common import as_dets_array, score_order


def cpu_nms(dets, thresh):
    """Greedy non-maximum suppression.

    dets: N×5 (or wider) ``[x1, y1, x2, y2, score]``, 0-based pixel-inclusive boxes
    (area = (x2 − x1 + 1)·(y2 − y1 + 1)); computed in float32. thresh: IoU threshold.
    Returns a 1-D int64 array of kept row indices into ``dets``, highest score first (equal
    scores: lower index first). A box is suppressed when its IoU with an already kept box is
    strictly greater than ``float32(thresh)``; the comparison is done in float32 so it agrees
    with ``gpu_nms`` even when an IoU equals the threshold exactly. Boxes with width or height
    ≤ 0 never suppress nor get suppressed (for thresh ≥ 0).
    """
    boxes = as_dets_array(dets)
    order = score_order(boxes)
    ranked = np.ascontiguousarray(boxes[order, :4].T)  # 4×N rows x1, y1, x2, y2 by rank
    keep_ranks = np.empty(order.shape[0], dtype=np.int64)
    num_kept = _greedy_suppress(ranked, thresh, keep_ranks)
    return order[keep_ranks[:num_kept]]


cdef Py_ssize_t _greedy_suppress(const float[:, ::1] ranked, float thresh,
                                 int64_t[::1] keep_ranks):
    """Greedy pass over boxes already in rank order; writes kept ranks, returns how many.

    ranked: 4×N float32 (rows x1, y1, x2, y2), rank 0 = highest score.
    """
    cdef Py_ssize_t n = ranked.shape[1]
    cdef const float[::1] x1 = ranked[0]
    cdef const float[::1] y1 = ranked[1]
    cdef const float[::1] x2 = ranked[2]
    cdef const float[::1] y2 = ranked[3]
    areas_arr = np.empty(n, dtype=np.float32)
    suppressed_arr = np.zeros(n, dtype=np.uint8)
    cdef float[::1] areas = areas_arr
    cdef unsigned char[::1] suppressed = suppressed_arr
    cdef Py_ssize_t i, j, num_kept = 0
    cdef float ix1, iy1, ix2, iy2, iarea, w, h, inter
    # All arithmetic stays float32 (note the <float>1: a double 1.0 would round twice), in the
    # same operation order as box_iou() in nms_kernel.cu, so CPU and GPU agree bit for bit.
    with nogil:
        for i in range(n):
            areas[i] = (x2[i] - x1[i] + <float>1) * (y2[i] - y1[i] + <float>1)
        for i in range(n):
            if suppressed[i]:
                continue
            keep_ranks[num_kept] = i
            num_kept += 1
            ix1 = x1[i]
            iy1 = y1[i]
            ix2 = x2[i]
            iy2 = y2[i]
            iarea = areas[i]
            # Branch-free so the compiler vectorises it; re-testing already suppressed boxes
            # is cheaper than skipping them and cannot change the result (flags only get set).
            for j in range(i + 1, n):
                w = min(ix2, x2[j]) - max(ix1, x1[j]) + <float>1
                w = max(w, <float>0)
                h = min(iy2, y2[j]) - max(iy1, y1[j]) + <float>1
                h = max(h, <float>0)
                inter = w * h
                suppressed[j] |= inter / (iarea + areas[j] - inter) > thresh
    return num_kept
