"""Which devices this process can use: asking for a GPU on a machine without one degrades to the CPU with
one warning instead of failing deep inside a CUDA call (``cudaErrorInsufficientDriver``)."""

import functools
import warnings


@functools.lru_cache(maxsize=1)
def usable_gpu_count():
    """Number of CUDA devices usable here: 0 in a CPU-only build (no ``nms.gpu_nms``), without a GPU
    or without a working driver. Queried once per process."""
    try:
        from nms.gpu_nms import gpu_device_count
    except ImportError:  # CPU-only build
        return 0
    return int(gpu_device_count())


_warned = set()


def gpu_usable(device_id, what):
    """True when GPU ``device_id`` can be used for ``what`` (e.g. ``'NMS'``); otherwise False and, once
    per ``what``, a warning that the CPU is used instead."""
    count = usable_gpu_count()
    if 0 <= device_id < count:
        return True
    if what not in _warned:
        _warned.add(what)
        warnings.warn(f'{what}: GPU {device_id} was asked for but {count or "no"} CUDA device'
                      f'{"" if count == 1 else "s"} {"is" if count == 1 else "are"} usable here; '
                      f'using the CPU', stacklevel=3)
    return False
