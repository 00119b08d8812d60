"""Non-maximum suppression dispatch: the CUDA kernel when it is built and a GPU is asked for, else the CPU
one.

Both implementations keep the same boxes in the same order (see ``nms``), so callers need not care which
one ran. The GPU is chosen by the caller (``nms_gpu_id(cfg)`` at a tool or layer boundary), never read
from the global config here.
"""

from fast_rcnn.device import gpu_usable
from nms.cpu_nms import cpu_nms

try:
    from nms.gpu_nms import gpu_nms
except ImportError:  # CPU-only build: the CUDA extension is not compiled
    gpu_nms = None


def nms_gpu_id(config):
    """The GPU NMS should run on under ``config`` (``cfg``): ``GPU_ID`` when ``USE_GPU_NMS``, else -1."""
    return config.GPU_ID if config.USE_GPU_NMS else -1


def nms(dets, thresh, gpu_id=-1):
    """Greedy NMS over ``dets`` (N×5 ``[x1, y1, x2, y2, score]``, 0-based pixel-inclusive).

    A box is dropped when its IoU with an already kept, higher-scoring box is > ``thresh``.
    Returns a 1-D int64 array of kept row indices, highest score first (ties: lower index first).
    Runs on GPU ``gpu_id`` when ``gpu_nms`` is built and ``gpu_id >= 0``; otherwise on the CPU (with one
    warning when that GPU is not usable).
    """
    if gpu_nms is not None and gpu_id >= 0 and gpu_usable(gpu_id, 'NMS'):
        return gpu_nms(dets, thresh, device_id=gpu_id)
    return cpu_nms(dets, thresh)
