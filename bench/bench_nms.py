"""Benchmark nms.cpu_nms (and nms.gpu_nms when a GPU is usable) against peers in the same run.

    cd <repo> && PYTHONPATH=lib .venv/bin/python bench/bench_nms.py [--sizes 6000 12000] [--thresh 0.7]

Peers: the vectorised numpy greedy NMS ``nms.py_cpu_nms`` (the usual pure-Python implementation, float32)
and OpenCV's ``cv2.dnn.NMSBoxes``. OpenCV takes ``(x, y, w, h)`` rectangles whose area is
``w·h`` and whose right edge is ``x + w`` (exclusive), so passing ``w = x2 − x1 + 1`` reproduces
our pixel-inclusive IoU exactly in real arithmetic; it evaluates it in its own precision
(``1 − (1 − IoU)`` through double), so kept sets may differ only where an IoU sits at the
threshold to within rounding. Its rule is the same (keep when IoU ≤ thresh, stable score sort).
Timings are the median of --repeats runs (OpenCV's conversion to Python lists is timed apart);
the kept indices of every method are checked against the numpy reference (order included) and a
cpu_nms mismatch makes the script exit non-zero.
"""

import argparse
import importlib
import os
import platform
import sys
import time

import cv2
import numpy as np

from nms.cpu_nms import cpu_nms
from nms.py_cpu_nms import py_cpu_nms


def unchanged(dets):
    """Input preparation of the methods that take the N×5 dets array directly."""
    return dets


def opencv_inputs(dets):
    """cv2.dnn.NMSBoxes inputs: ``(x1, y1, x2 − x1 + 1, y2 − y1 + 1)`` rects and scores, as lists."""
    rects = np.column_stack([dets[:, 0], dets[:, 1],
                             dets[:, 2] - dets[:, 0] + 1, dets[:, 3] - dets[:, 1] + 1])
    return rects.astype(np.float64).tolist(), dets[:, 4].tolist()


def opencv_nms(inputs, thresh):
    """cv2.dnn.NMSBoxes on ``opencv_inputs(dets)`` → int64 kept indices."""
    rects, scores = inputs
    # OpenCV first drops scores <= score_threshold (which must be >= 0): our scores are > 0.
    keep = cv2.dnn.NMSBoxes(rects, scores, 0.0, thresh)
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def proposal_like_dets(rng, n, height=600, width=1000):
    """n×5 float32 RPN-like proposals on a height×width image.

    70 % of the boxes jitter around 25 "objects" (so NMS at 0.7 has real work), 30 % are
    spread uniformly; sizes are log-uniform 16..512 px with aspect ratios around 0.5/1/2,
    clipped to the image like the proposal layer does. Scores are uniform in [0.01, 1).
    """
    objects = np.column_stack([rng.uniform(0, width, 25), rng.uniform(0, height, 25),
                               np.exp(rng.uniform(np.log(32), np.log(400), (25, 2)))])
    n_near = int(0.7 * n)
    near = objects[rng.integers(0, 25, n_near)]
    near = near * np.column_stack([np.ones((n_near, 2)), rng.uniform(0.7, 1.4, (n_near, 2))])
    near[:, :2] += rng.normal(0, 1, (n_near, 2)) * near[:, 2:] * 0.15
    sizes = np.exp(rng.uniform(np.log(16), np.log(512), n - n_near))
    ratios = rng.choice([0.5, 1.0, 2.0], n - n_near) * rng.uniform(0.8, 1.25, n - n_near)
    spread = np.column_stack([rng.uniform(0, width, n - n_near), rng.uniform(0, height, n - n_near),
                              sizes / np.sqrt(ratios), sizes * np.sqrt(ratios)])
    cxcywh = np.vstack([near, spread])
    boxes = np.hstack([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2])
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height - 1)
    order = rng.permutation(n)
    return np.hstack([boxes[order], rng.uniform(0.01, 1.0, (n, 1))]).astype(np.float32)


def median_time(fn, inputs, thresh, repeats):
    """(median seconds over ``repeats`` calls of ``fn(inputs, thresh)``, result of the last)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        keep = fn(inputs, thresh)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), keep


def usable_gpu_nms():
    """(gpu_nms function, None) when the extension loads and runs, else (None, reason)."""
    try:
        gpu_nms = importlib.import_module('nms.gpu_nms').gpu_nms
    except ImportError as exc:
        return None, f'nms.gpu_nms not built ({exc})'
    try:
        gpu_nms(np.array([[0, 0, 9, 9, 1]], dtype=np.float32), 0.5)  # also pays CUDA init
    except RuntimeError as exc:
        return None, str(exc)
    return gpu_nms, None


def describe_agreement(keep, reference):
    """'identical' or a short description of how ``keep`` differs from ``reference``."""
    if np.array_equal(keep, reference):
        return 'identical'
    only_here = np.setdiff1d(keep, reference).size
    only_ref = np.setdiff1d(reference, keep).size
    return f'DIFFERS ({keep.size} vs {reference.size} kept; +{only_here} / -{only_ref} boxes)'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[6000, 12000])
    parser.add_argument('--thresh', type=float, default=0.7)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    print(f'python {platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}, '
          f'{os.cpu_count()} CPUs ({platform.processor() or platform.machine()})')
    gpu_nms, gpu_reason = usable_gpu_nms()
    methods = [('cpu_nms (Cython)', cpu_nms, unchanged), ('numpy vectorised', py_cpu_nms, unchanged),
               ('cv2.dnn.NMSBoxes', opencv_nms, opencv_inputs)]
    if gpu_nms is not None:
        methods.append(('gpu_nms (CUDA)', gpu_nms, unchanged))
    else:
        print(f'gpu_nms not timed: {gpu_reason}')

    rng = np.random.default_rng(args.seed)
    cpu_agrees = True
    for n in args.sizes:
        dets = proposal_like_dets(rng, n)
        reference = py_cpu_nms(dets, args.thresh)
        print(f'\n{n} boxes, thresh {args.thresh}: {reference.size} kept '
              f'(median of {args.repeats} runs)')
        base_time = None
        for name, fn, prepare in methods:
            start = time.perf_counter()
            inputs = prepare(dets)
            prepare_ms = (time.perf_counter() - start) * 1e3
            seconds, keep = median_time(fn, inputs, args.thresh, args.repeats)
            base_time = base_time or seconds
            agreement = describe_agreement(keep, reference)
            cpu_agrees &= fn is not cpu_nms or agreement == 'identical'
            print(f'  {name:18s} {seconds * 1e3:9.2f} ms  {seconds / base_time:7.2f}x cpu_nms  '
                  f'vs numpy: {agreement}'
                  + (f'  (+{prepare_ms:.2f} ms input conversion)' if prepare is not unchanged else ''))
    if not cpu_agrees:
        sys.exit('cpu_nms disagrees with the numpy reference')


if __name__ == '__main__':
    main()
