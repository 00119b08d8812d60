"""Proposals that do not come from a network: Selective Search, EdgeBoxes, dense sliding windows, and the
released Selective Search ``.mat`` files.

These are the baselines the paper compares RPN with (Table 1, Table 2, Table 5, Fig. 2). Boxes are
``[x1, y1, x2, y2]``, 0-based, pixel-inclusive, in original-image pixels, best first (each method's own
ranking). Selective Search and EdgeBoxes come from OpenCV's contrib module ``ximgproc``:

* Selective Search: ``switchToSelectiveSearchFast`` (the paper's "fast" mode: HSV and Lab colour spaces,
  k = 150, 300, colour/texture/size/fill similarities), in SS's own ranking (hierarchy level times a random
  number). OpenCV draws that number with C's ``rand()``, so it is seeded per image with ``srand(seed)``.
* EdgeBoxes: ``createEdgeBoxes`` with the defaults the EB paper tunes for IoU 0.7 (alpha 0.65, beta 0.75).
  The edge map is NOT the structured-forest edges of the EB paper (OpenCV's ``StructuredEdgeDetection``
  needs a trained model file that is not available offline): it is the Sobel gradient magnitude of the
  Gaussian-smoothed image (strongest of the three colour channels per pixel), normalised to [0, 1], with
  the gradient direction modulo pi as the orientation map (see ``sobel_edges``).

Both follow the released loader's clean-up: duplicate boxes and boxes with a side below ``min_size`` px are
dropped, then the first ``max_boxes`` are kept.

Per-imdb results are computed once, in parallel over the cores with progress and ETA, and cached as a
``save_box_list`` .npz keyed by every image's bytes, the method and its settings (``imdb_proposals``).
"""

import ctypes
import hashlib
import json
import multiprocessing as mp
import os
import os.path as osp
import time

import cv2
import numpy as np

from datasets.imdb import load_box_list, save_box_list
from utils.fileio import write_json_atomic
from utils.image import read_image
from utils.timer import format_eta

# Bumped when the computation changes, so old caches are recomputed.
_CACHE_VERSION = 1
# The released loader drops boxes with a side below 2 px (after removing duplicates).
DEFAULT_MIN_SIZE = 2
DEFAULT_MAX_BOXES = 2000
SELECTIVE_SEARCH = 'selective_search'
EDGE_BOXES = 'edge_boxes'
METHODS = (SELECTIVE_SEARCH, EDGE_BOXES)
# EdgeBoxes' defaults "tuned for IoU 0.7" (step size alpha, NMS threshold beta), as the paper used them.
EB_ALPHA = 0.65
EB_BETA = 0.75
# Smoothing before the Sobel operator of the edge map (Gaussian sigma in pixels).
EDGE_SIGMA = 1.0
_LIBC = ctypes.CDLL(None)


def xywh_to_xyxy(rects):
    """OpenCV rectangles (N×4 ``x, y, w, h``) as N×4 float32 ``[x1, y1, x2, y2]`` pixel-inclusive."""
    rects = np.asarray(rects, dtype=np.float32).reshape(-1, 4)
    return np.hstack([rects[:, :2], rects[:, :2] + rects[:, 2:] - 1])


def clean_boxes(boxes, min_size, max_boxes, scores=None):
    """Drop duplicate rows (first occurrence kept, order kept) and boxes with a side < ``min_size``; keep
    the first ``max_boxes``. ``boxes``: N×4; ``scores``: optional N. Returns M×4 float32 (or M×5 with the
    scores as a last column)."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    _, first = np.unique(boxes, axis=0, return_index=True)
    keep = np.sort(first)
    widths = boxes[keep, 2] - boxes[keep, 0] + 1
    heights = boxes[keep, 3] - boxes[keep, 1] + 1
    keep = keep[(widths >= min_size) & (heights >= min_size)][:max_boxes]
    if scores is None:
        return boxes[keep]
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    return np.hstack([boxes[keep], scores[keep, np.newaxis]])


def selective_search(im, max_boxes=DEFAULT_MAX_BOXES, min_size=DEFAULT_MIN_SIZE, seed=0):
    """Selective Search ("fast" mode) on ``im`` (H×W×3 BGR uint8): M×4 float32 boxes in SS's ranking."""
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(im)
    search.switchToSelectiveSearchFast()
    _LIBC.srand(int(seed))
    return clean_boxes(xywh_to_xyxy(search.process()), min_size, max_boxes)


def sobel_edges(im, sigma=EDGE_SIGMA):
    """Edge map and orientation map for EdgeBoxes: ``(E, O)``, both H×W float32.

    ``E``: per pixel the largest Sobel gradient magnitude over the three channels of the image smoothed
    with a Gaussian of ``sigma`` px, thinned by non-maximum suppression across the edge (a pixel is kept
    when it is above its neighbour one pixel ahead along the gradient and not below the one behind,
    bilinearly sampled) and
    scaled so the image's maximum is 1 (all zeros for a flat image). ``O``: that channel's gradient
    direction modulo pi (EdgeBoxes only compares orientations).
    """
    smooth = cv2.GaussianBlur(im.astype(np.float32) / 255.0, (0, 0), sigma)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = np.sqrt(gx ** 2 + gy ** 2)
    channel = magnitude.argmax(axis=2)[..., np.newaxis]
    edges = np.take_along_axis(magnitude, channel, axis=2)[..., 0]
    angle = np.arctan2(np.take_along_axis(gy, channel, axis=2)[..., 0],
                       np.take_along_axis(gx, channel, axis=2)[..., 0])
    rows, cols = np.indices(edges.shape, dtype=np.float32)
    dx, dy = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    ahead = cv2.remap(edges, cols + dx, rows + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    behind = cv2.remap(edges, cols - dx, rows - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # strict on one side: of two equal pixels straddling a step edge only one stays
    edges = np.where((edges > ahead) & (edges >= behind), edges, 0)
    peak = edges.max()
    if peak > 0:
        edges = edges / peak
    return (np.ascontiguousarray(edges, dtype=np.float32),
            np.ascontiguousarray(np.mod(angle, np.pi), dtype=np.float32))


def edge_boxes(im, max_boxes=DEFAULT_MAX_BOXES, min_size=DEFAULT_MIN_SIZE):
    """EdgeBoxes (alpha 0.65, beta 0.75) on the ``sobel_edges`` of ``im`` (H×W×3 BGR uint8).

    Returns M×5 float32 ``[x1, y1, x2, y2, score]`` in descending EB score."""
    edges, orientation = sobel_edges(im)
    boxes = cv2.ximgproc.createEdgeBoxes(alpha=EB_ALPHA, beta=EB_BETA, maxBoxes=max_boxes)
    rects, scores = boxes.getBoundingBoxes(edges, orientation)
    if len(rects) == 0:
        return np.zeros((0, 5), dtype=np.float32)
    return clean_boxes(xywh_to_xyxy(rects), min_size, max_boxes, scores=np.asarray(scores).reshape(-1))


def dense_windows(width, height, scale, anchors, feat_stride):
    """The one-stage baseline's "proposals": every anchor at every feature-map position (Table 5).

    ``width``, ``height``: original image size; ``scale``: the factor the net input is scaled by;
    ``anchors``: A×4 anchors centred on the first cell (``rpn.generate_anchors``), in
    scaled-input pixels; ``feat_stride``: their stride. The windows are mapped back to the original image,
    clipped into it, and duplicates removed. Returns N×4 float32, position-major, anchor-minor.
    """
    from rpn.generate_anchors import shifted_anchors
    feat_h = int(np.ceil(height * scale / feat_stride))
    feat_w = int(np.ceil(width * scale / feat_stride))
    windows = shifted_anchors(anchors, feat_h, feat_w, feat_stride) / scale
    windows = np.clip(windows, 0, [width - 1, height - 1, width - 1, height - 1]).astype(np.float32)
    return clean_boxes(windows, 1, len(windows))


def load_released_mat(path, image_index):
    """Boxes of a released ``selective_search_data/<imdb>.mat`` file, in ``image_index`` order.

    The file holds ``images`` (cell of ids) and ``boxes`` (cell of N×4 MATLAB 1-based ``[y1 x1 y2 x2]``).
    Returns a list of N×4 float32 0-based ``[x1, y1, x2, y2]``. Raises ``FileNotFoundError`` naming the
    file and where it comes from, ``ValueError`` when its ids do not match ``image_index``.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'Selective Search boxes not found: {path}. The released ones are the Fast R-CNN '
            f'"selective_search_data" archive (voc_<year>_<split>.mat files); extract it into '
            f'{osp.dirname(path)}/ , or compute them here with --set PROPOSALS.SS_SOURCE opencv.')
    import scipy.io
    try:
        data = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises several types for a corrupt file
        raise ValueError(f'{path}: not a readable MATLAB file ({err})') from None
    for key in ('images', 'boxes'):
        if key not in data:
            raise ValueError(f'{path}: no variable {key!r} (expected "images" and "boxes")')
    ids = [str(np.asarray(entry).ravel()[0]) for entry in np.asarray(data['images']).ravel()]
    if ids != [str(i) for i in image_index]:
        raise ValueError(f'{path}: its {len(ids)} image ids do not match the {len(image_index)} of the imdb '
                         f'(first ids: {ids[:3]} vs {list(image_index)[:3]})')
    boxes = []
    for k, raw in enumerate(np.asarray(data['boxes']).ravel()):
        raw = np.asarray(raw, dtype=np.float32).reshape(-1, 4)
        if raw.size and raw.min() < 1:
            raise ValueError(f'{path}: boxes of image {ids[k]} hold coordinates below 1 (not 1-based)')
        boxes.append(np.ascontiguousarray(raw[:, (1, 0, 3, 2)] - 1))
    return boxes


def clean_released(box_list, min_size=DEFAULT_MIN_SIZE):
    """The released loader's clean-up of ``.mat`` boxes: duplicates and sides < ``min_size`` dropped."""
    return [clean_boxes(boxes, min_size, len(boxes)) for boxes in box_list]


# ---------------------------------------------------------------------------------------------------------
# Whole imdbs: computed in parallel, cached
# ---------------------------------------------------------------------------------------------------------

def _compute_one(job):
    """Worker: ``(method, path, max_boxes, min_size, seed)`` → (boxes, seconds)."""
    method, path, max_boxes, min_size, seed = job
    im = read_image(path)
    start = time.perf_counter()
    if method == SELECTIVE_SEARCH:
        boxes = selective_search(im, max_boxes, min_size, seed)
    else:
        boxes = edge_boxes(im, max_boxes, min_size)
    return boxes, time.perf_counter() - start


def _worker_init():
    """One OpenCV thread per worker process: the pool already uses every core."""
    cv2.setNumThreads(1)


def cache_key(method, image_paths, settings):
    """SHA-256 (hex, 20 chars) over the method, its settings, OpenCV's version and every image's bytes."""
    digest = hashlib.sha256(json.dumps([_CACHE_VERSION, method, settings, cv2.__version__],
                                       sort_keys=True).encode())
    for path in image_paths:
        with open(path, 'rb') as f:
            digest.update(f.read())
    return digest.hexdigest()[:20]


def imdb_proposals(imdb, method, cache_dir, max_boxes=DEFAULT_MAX_BOXES, min_size=DEFAULT_MIN_SIZE,
                   workers=None, seed=0):
    """Proposals of ``method`` for every image of ``imdb`` (unflipped), computed once and cached.

    Returns ``(path, boxes)``: the cache file (``<cache_dir>/<imdb>_<method>_<key>.npz``, a
    ``save_box_list`` file) and the per-image list. ``workers``: processes (default: all cores); image i
    is seeded with ``seed + i``. A summary JSON beside the cache records the mean seconds per image.
    """
    if method not in METHODS:
        raise ValueError(f'unknown proposal method {method!r}; known: {", ".join(METHODS)}')
    paths = [imdb.image_path_at(i) for i in range(imdb.num_images)]
    settings = {'max_boxes': max_boxes, 'min_size': min_size, 'seed': seed}
    key = cache_key(method, paths, settings)
    os.makedirs(cache_dir, exist_ok=True)
    path = osp.join(cache_dir, f'{imdb.name}_{method}_{key}.npz')
    if osp.isfile(path):
        print(f'{method} proposals of {imdb.name} from the cache {path}', flush=True)
        return path, load_box_list(path, imdb.image_index)
    workers = workers or os.cpu_count() or 1
    jobs = [(method, p, max_boxes, min_size, seed + i) for i, p in enumerate(paths)]
    print(f'Computing {method} proposals of {imdb.name} ({len(jobs)} images, {workers} processes)',
          flush=True)
    boxes, seconds = [], []
    start = time.perf_counter()
    step = max(1, len(jobs) // 20)
    # spawn, not fork: a process forked after OpenCV started its thread pool can deadlock in OpenCV
    with mp.get_context('spawn').Pool(workers, initializer=_worker_init) as pool:
        for i, (b, s) in enumerate(pool.imap(_compute_one, jobs, chunksize=4)):
            boxes.append(b)
            seconds.append(s)
            if (i + 1) % step == 0 or i + 1 == len(jobs):
                elapsed = time.perf_counter() - start
                print(f'{method}: {i + 1}/{len(jobs)} images, {np.mean(seconds):.3f} s/image/process, '
                      f'{np.mean([len(x) for x in boxes]):.0f} boxes/image, '
                      f'ETA {format_eta(elapsed / (i + 1) * (len(jobs) - i - 1))}', flush=True)
    save_box_list(path, imdb.image_index, boxes)
    summary = {'imdb': imdb.name, 'method': method, 'settings': settings, 'images': len(jobs),
               'seconds_per_image': float(np.mean(seconds)) if seconds else 0.0,
               'boxes_per_image': float(np.mean([len(b) for b in boxes])) if boxes else 0.0}
    write_json_atomic(osp.splitext(path)[0] + '.json', summary, indent=2)
    print(f'Wrote {path}', flush=True)
    return path, boxes


def proposal_summary(path):
    """The summary JSON ``imdb_proposals`` wrote beside ``path`` (mean seconds and boxes per image)."""
    with open(osp.splitext(path)[0] + '.json', encoding='utf-8') as f:
        return json.load(f)
