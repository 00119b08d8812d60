"""Greedy non-maximum suppression: ``nms.cpu_nms`` (Cython) and ``nms.gpu_nms`` (CUDA bitmask kernel).

Both keep the same boxes in the same order; ``fast_rcnn.nms_wrapper.nms`` picks one of them.
``nms.py_cpu_nms`` is the same rule in plain numpy (the reference of the tests and benchmarks).
"""
