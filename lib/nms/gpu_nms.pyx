# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Greedy NMS on a CUDA device (bitmask kernel in ``nms_kernel.cu``)."""

from libc.limits cimport INT_MAX
from libc.stdint cimport int64_t

import numpy as np

from nms.common import as_dets_array, score_order


cdef extern from "gpu_nms.hpp":
    int gpu_nms_sorted(const float* host_boxes, int num_boxes, int box_dim, float thresh,
                       int device_id, int64_t* keep_out) except + nogil
    int gpu_device_count_c "gpu_device_count"() nogil


def gpu_nms(dets, thresh, device_id=0):
    """Greedy non-maximum suppression on GPU ``device_id``; same result as ``cpu_nms``.

    dets: N×5 (or wider) ``[x1, y1, x2, y2, score]``, 0-based pixel-inclusive boxes, computed
    in float32. Returns a 1-D int64 array of kept row indices, highest score first (equal
    scores: lower index first); suppression when IoU > float32(thresh).
    CUDA failures (no device, out of memory, ...) raise RuntimeError with the CUDA error text.
    Empty input returns an empty array without touching the device.
    """
    boxes = as_dets_array(dets)
    order = score_order(boxes)
    cdef Py_ssize_t n = order.shape[0]
    if n == 0:
        return order
    if n > INT_MAX:
        raise ValueError(f'gpu_nms supports at most {INT_MAX} boxes, got {n}')
    ranked_arr = np.ascontiguousarray(boxes[order])
    keep_ranks_arr = np.empty(n, dtype=np.int64)
    cdef const float[:, ::1] ranked = ranked_arr
    cdef int64_t[::1] keep_ranks = keep_ranks_arr
    cdef float thresh_f = thresh
    cdef int device = device_id
    cdef int num_kept
    with nogil:
        num_kept = gpu_nms_sorted(&ranked[0, 0], <int>n, <int>ranked.shape[1], thresh_f,
                                  device, &keep_ranks[0])
    return order[keep_ranks_arr[:num_kept]]


def gpu_device_count():
    """Number of CUDA devices usable by this process (0 without a GPU or a working driver)."""
    return gpu_device_count_c()
