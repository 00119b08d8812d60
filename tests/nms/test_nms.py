"""nms.cpu_nms / nms.gpu_nms: greedy NMS with strict IoU > thresh, +1 areas, stable score ties."""

import ctypes
import importlib

import numpy as np
import pytest

from nms.cpu_nms import cpu_nms
from nms.py_cpu_nms import py_cpu_nms as reference_nms


def proposal_like(rng, n, score_levels=None):
    """n×5 float32 dets: boxes 8..120 px in a 300×300 image, clustered so that NMS has work.

    score_levels: when given, scores take only that many distinct values (ties on purpose).
    """
    centres = rng.integers(0, 300, size=(6, 2))[rng.integers(0, 6, size=n)]
    centres = centres + rng.normal(0, 12, size=(n, 2))
    wh = rng.uniform(8, 120, size=(n, 2))
    boxes = np.hstack([centres - wh / 2, centres + wh / 2])
    if score_levels is None:
        scores = rng.random(n)
    else:
        scores = rng.integers(0, score_levels, size=n) / score_levels
    return np.hstack([boxes, scores[:, None]]).astype(np.float32)


def dets_of(rows):
    return np.array(rows, dtype=np.float32)


def with_integer_boxes(dets):
    """dets with box coordinates rounded to whole pixels (scores untouched)."""
    out = dets.copy()
    out[:, :4] = np.round(out[:, :4])
    return out


def test_keeps_in_descending_score_order():
    dets = dets_of([[0, 0, 9, 9, 0.1], [20, 0, 29, 9, 0.9], [40, 0, 49, 9, 0.5]])
    np.testing.assert_array_equal(cpu_nms(dets, 0.3), [1, 2, 0])


def test_returns_int64_indices():
    keep = cpu_nms(dets_of([[0, 0, 9, 9, 0.5]]), 0.3)
    assert keep.dtype == np.int64 and keep.tolist() == [0]


def test_iou_equal_to_thresh_is_not_suppressed():
    # (0,0,9,9) vs (0,0,19,9): inter 100, union 200, IoU exactly 0.5.
    dets = dets_of([[0, 0, 9, 9, 0.9], [0, 0, 19, 9, 0.8]])
    np.testing.assert_array_equal(cpu_nms(dets, 0.5), [0, 1])
    np.testing.assert_array_equal(cpu_nms(dets, 0.4999), [0])


def test_threshold_compared_in_float32():
    # IoU = float32(25) / float32(175) == float32(1/7): equal to the threshold, so kept.
    dets = dets_of([[0, 0, 9, 9, 0.9], [5, 5, 14, 14, 0.8]])
    np.testing.assert_array_equal(cpu_nms(dets, 25 / 175), [0, 1])
    np.testing.assert_array_equal(cpu_nms(dets, 0.14), [0])


def test_identical_boxes_survive_thresh_one():
    # IoU 1.0 is not > 1.0.
    dets = dets_of([[0, 0, 9, 9, 0.9], [0, 0, 9, 9, 0.8]])
    np.testing.assert_array_equal(cpu_nms(dets, 1.0), [0, 1])
    np.testing.assert_array_equal(cpu_nms(dets, 0.99), [0])


def test_shared_edge_pixel_counts_as_overlap():
    # x2 = 9 vs x1 = 9: one shared column, IoU 10/190 ≈ 0.0526 (0 without the +1).
    dets = dets_of([[0, 0, 9, 9, 0.9], [9, 0, 18, 9, 0.8]])
    np.testing.assert_array_equal(cpu_nms(dets, 0.05), [0])
    np.testing.assert_array_equal(cpu_nms(dets, 0.06), [0, 1])


def test_suppressed_box_does_not_suppress_others():
    # A–B IoU 70/130, B–C 70/130, A–C 40/160: B goes, so C (only close to B) stays.
    dets = dets_of([[0, 0, 9, 9, 0.9], [3, 0, 12, 9, 0.8], [6, 0, 15, 9, 0.7]])
    np.testing.assert_array_equal(cpu_nms(dets, 0.5), [0, 2])


def test_score_ties_keep_the_earlier_index():
    overlapping = dets_of([[1, 1, 10, 10, 0.5], [0, 0, 9, 9, 0.5], [0, 0, 9, 9, 0.7]])
    np.testing.assert_array_equal(cpu_nms(overlapping, 0.3), [2])
    np.testing.assert_array_equal(cpu_nms(overlapping[:2], 0.3), [0])
    disjoint = dets_of([[40, 0, 49, 9, 0.5], [0, 0, 9, 9, 0.5], [20, 0, 29, 9, 0.5]])
    np.testing.assert_array_equal(cpu_nms(disjoint, 0.3), [0, 1, 2])


def test_zero_area_boxes_neither_suppress_nor_get_suppressed():
    # Width 0 (x2 = x1 − 1): intersection and areas are 0, IoU 0/0 is never > thresh.
    dets = dets_of([[5, 5, 4, 9, 0.9], [5, 5, 4, 9, 0.8], [0, 0, 9, 9, 0.7]])
    np.testing.assert_array_equal(cpu_nms(dets, 0.3), [0, 1, 2])


def test_empty_input_gives_empty_int64():
    keep = cpu_nms(np.zeros((0, 5), dtype=np.float32), 0.7)
    assert keep.shape == (0,) and keep.dtype == np.int64


def test_extra_columns_and_float64_input():
    rng = np.random.default_rng(11)
    dets = proposal_like(rng, 80)
    wide = np.hstack([dets, np.full((80, 2), 3.0, dtype=np.float32)]).astype(np.float64)
    np.testing.assert_array_equal(cpu_nms(wide, 0.5), cpu_nms(dets, 0.5))


def test_bad_input_raises():
    with pytest.raises(ValueError, match='N x 5'):
        cpu_nms(np.zeros((3, 4), dtype=np.float32), 0.5)
    with pytest.raises(ValueError, match='non-finite'):
        cpu_nms(dets_of([[0, 0, 9, 9, np.nan]]), 0.5)


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('thresh', [0.3, 0.5, 0.7])
def test_random_proposals_match_reference(seed, thresh):
    rng = np.random.default_rng(seed)
    dets = proposal_like(rng, 400)
    keep = cpu_nms(dets, thresh)
    np.testing.assert_array_equal(keep, reference_nms(dets, thresh))
    assert 5 < keep.size < 400  # NMS actually removed and kept boxes


@pytest.mark.parametrize('seed', range(3))
def test_random_integer_boxes_with_ties_at_an_occurring_iou(seed):
    # Integer boxes repeat exact IoU values. Pick as threshold an occurring IoU at which strict
    # '>' and '>=' suppression give different results, so the equality case is really decided;
    # four score levels make score ties common too.
    rng = np.random.default_rng(100 + seed)
    dets = with_integer_boxes(proposal_like(rng, 300, score_levels=4))
    pairs = reference_pair_ious(dets)
    for value in np.unique(pairs[(pairs > 0.2) & (pairs < 0.8)])[:300]:
        below = np.nextafter(value, np.float32(0))  # '>= value' is '> below' in float32
        if not np.array_equal(reference_nms(dets, value), reference_nms(dets, below)):
            break
    else:
        pytest.fail('no threshold where IoU == thresh matters')
    np.testing.assert_array_equal(cpu_nms(dets, float(value)), reference_nms(dets, value))
    np.testing.assert_array_equal(cpu_nms(dets, float(below)), reference_nms(dets, below))


def reference_pair_ious(dets):
    """All pairwise float32 IoUs (upper triangle, flattened) of dets' boxes."""
    x1, y1, x2, y2 = (dets[:, c][:, None] for c in range(4))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    w = np.maximum(np.float32(0), np.minimum(x2, x2.T) - np.maximum(x1, x1.T) + 1)
    h = np.maximum(np.float32(0), np.minimum(y2, y2.T) - np.maximum(y1, y1.T) + 1)
    inter = w * h
    iou = inter / (areas + areas.T - inter)
    return iou[np.triu_indices(len(dets), 1)]


# --- GPU NMS --------------------------------------------------------------------------------

def cuda_device_count():
    """Number of CUDA devices per the driver API; 0 when there is no driver or no device."""
    try:
        libcuda = ctypes.CDLL('libcuda.so.1')
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if libcuda.cuInit(0) != 0 or libcuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def import_gpu_nms():
    """nms.gpu_nms.gpu_nms, or skip when the extension was not built (no nvcc at build time)."""
    try:
        return importlib.import_module('nms.gpu_nms').gpu_nms
    except ImportError as exc:
        pytest.skip(f'nms.gpu_nms not built: {exc}')


HAS_GPU = cuda_device_count() > 0


def test_gpu_nms_empty_input_needs_no_device():
    gpu_nms = import_gpu_nms()
    keep = gpu_nms(np.zeros((0, 5), dtype=np.float32), 0.7)
    assert keep.shape == (0,) and keep.dtype == np.int64


@pytest.mark.skipif(HAS_GPU, reason='a CUDA device is present')
def test_gpu_nms_without_device_raises_runtime_error():
    gpu_nms = import_gpu_nms()
    dets = dets_of([[0, 0, 9, 9, 0.9], [1, 1, 10, 10, 0.8]])
    with pytest.raises(RuntimeError, match=r'^gpu_nms: cuda\w+ failed: cudaError\w+: \S'):
        gpu_nms(dets, 0.5)
    # The process is still usable afterwards, and the CPU path unaffected.
    np.testing.assert_array_equal(cpu_nms(dets, 0.5), [0])


@pytest.mark.skipif(not HAS_GPU, reason='no CUDA device')
def test_gpu_nms_matches_cpu_on_hand_cases():
    gpu_nms = import_gpu_nms()
    cases = [
        (dets_of([[0, 0, 9, 9, 0.9], [0, 0, 19, 9, 0.8]]), 0.5),
        (dets_of([[0, 0, 9, 9, 0.9], [5, 5, 14, 14, 0.8]]), 25 / 175),
        (dets_of([[0, 0, 9, 9, 0.9], [9, 0, 18, 9, 0.8]]), 0.05),
        (dets_of([[0, 0, 9, 9, 0.9], [3, 0, 12, 9, 0.8], [6, 0, 15, 9, 0.7]]), 0.5),
        (dets_of([[1, 1, 10, 10, 0.5], [0, 0, 9, 9, 0.5], [0, 0, 9, 9, 0.7]]), 0.3),
        (dets_of([[5, 5, 4, 9, 0.9], [5, 5, 4, 9, 0.8], [0, 0, 9, 9, 0.7]]), 0.3),
    ]
    for dets, thresh in cases:
        np.testing.assert_array_equal(gpu_nms(dets, thresh), cpu_nms(dets, thresh))


@pytest.mark.skipif(not HAS_GPU, reason='no CUDA device')
@pytest.mark.parametrize('n', [1, 63, 64, 65, 500, 3000])
def test_gpu_nms_matches_cpu_on_random_proposals(n):
    # Sizes around the 64-box block edge exercise partial blocks and the diagonal block.
    gpu_nms = import_gpu_nms()
    rng = np.random.default_rng(n)
    for dets in (proposal_like(rng, n), with_integer_boxes(proposal_like(rng, n, score_levels=3))):
        for thresh in (0.3, 0.7):
            np.testing.assert_array_equal(gpu_nms(dets, thresh), cpu_nms(dets, thresh))
