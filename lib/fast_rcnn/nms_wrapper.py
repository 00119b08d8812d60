"""Non-maximum suppression dispatch: the CUDA kernel when it is built and a GPU is in use, else the CPU one.

Both implementations keep the same boxes in the same order (see ``nms``), so callers need not care which
one ran.
"""

from fast_rcnn.config import cfg
from fast_rcnn.device import gpu_usable
from nms.cpu_nms import cpu_nms

try:
    from nms.gpu_nms import gpu_nms
except ImportError:  # CPU-only build: the CUDA extension is not compiled
    gpu_nms = None


def nms(dets, thresh, force_cpu=False):
    """Greedy NMS over ``dets`` (N×5 ``[x1, y1, x2, y2, score]``, 0-based pixel-inclusive).

    A box is dropped when its IoU with an already kept, higher-scoring box is > ``thresh``.
    Returns a 1-D int64 array of kept row indices, highest score first (ties: lower index first).
    Runs on GPU ``cfg.GPU_ID`` when ``gpu_nms`` is built, ``cfg.USE_GPU_NMS`` is set, ``cfg.GPU_ID >= 0``
    and ``force_cpu`` is false; otherwise on the CPU (with one warning when that GPU is not usable).
    """
    if gpu_nms is not None and cfg.USE_GPU_NMS and cfg.GPU_ID >= 0 and not force_cpu \
            and gpu_usable(cfg.GPU_ID, 'NMS'):
        return gpu_nms(dets, thresh, device_id=cfg.GPU_ID)
    return cpu_nms(dets, thresh)
