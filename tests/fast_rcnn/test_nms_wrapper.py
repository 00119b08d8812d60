"""NMS dispatch (fast_rcnn.nms_wrapper)."""

import numpy as np
import pytest

from fast_rcnn import device, nms_wrapper
from fast_rcnn.config import cfg

# IoU(0, 1) = 81 / 119 = 0.6807; box 2 is disjoint from both.
DETS = np.array([[0, 0, 9, 9, 0.9],
                 [1, 1, 10, 10, 0.8],
                 [20, 20, 29, 29, 0.7]], dtype=np.float32)


@pytest.fixture
def gpu_settings():
    saved = (cfg.USE_GPU_NMS, cfg.GPU_ID)
    yield
    cfg.USE_GPU_NMS, cfg.GPU_ID = saved


@pytest.fixture
def fake_gpu(monkeypatch):
    calls = []

    def fake_gpu_nms(dets, thresh, device_id=0):
        calls.append(device_id)
        return np.array([0], dtype=np.int64)

    monkeypatch.setattr(nms_wrapper, 'gpu_nms', fake_gpu_nms)
    monkeypatch.setattr(device, 'usable_gpu_count', lambda: 2)
    return calls


def test_cpu_suppression_is_strict_iou_above_thresh():
    np.testing.assert_array_equal(nms_wrapper.nms(DETS, 0.5, force_cpu=True), [0, 2])
    np.testing.assert_array_equal(nms_wrapper.nms(DETS, 0.7, force_cpu=True), [0, 1, 2])


def test_gpu_used_when_built_enabled_and_a_gpu_is_in_use(gpu_settings, fake_gpu):
    cfg.USE_GPU_NMS, cfg.GPU_ID = True, 1
    np.testing.assert_array_equal(nms_wrapper.nms(DETS, 0.5), [0])
    assert fake_gpu == [1]


@pytest.mark.parametrize('use_gpu_nms, gpu_id, force_cpu', [(True, -1, False), (False, 0, False),
                                                            (True, 0, True)])
def test_cpu_used_otherwise(gpu_settings, fake_gpu, use_gpu_nms, gpu_id, force_cpu):
    cfg.USE_GPU_NMS, cfg.GPU_ID = use_gpu_nms, gpu_id
    np.testing.assert_array_equal(nms_wrapper.nms(DETS, 0.5, force_cpu=force_cpu), [0, 2])
    assert fake_gpu == []


def test_cpu_used_when_gpu_nms_is_not_built(gpu_settings, monkeypatch):
    monkeypatch.setattr(nms_wrapper, 'gpu_nms', None)
    cfg.USE_GPU_NMS, cfg.GPU_ID = True, 0
    np.testing.assert_array_equal(nms_wrapper.nms(DETS, 0.5), [0, 2])


def test_cpu_with_one_warning_when_the_gpu_asked_for_is_not_usable(gpu_settings, monkeypatch):
    calls = []
    monkeypatch.setattr(nms_wrapper, 'gpu_nms', lambda dets, thresh, device_id=0: calls.append(device_id))
    monkeypatch.setattr(device, 'usable_gpu_count', lambda: 0)
    monkeypatch.setattr(device, '_warned', set())
    cfg.USE_GPU_NMS, cfg.GPU_ID = True, 0
    with pytest.warns(UserWarning, match='NMS: GPU 0 was asked for but no CUDA devices are usable') as caught:
        for _ in range(3):
            np.testing.assert_array_equal(nms_wrapper.nms(DETS, 0.5), [0, 2])
    assert len(caught) == 1 and calls == []


def test_usable_gpu_count_matches_the_build():
    count = device.usable_gpu_count()
    assert isinstance(count, int) and count >= 0
    if nms_wrapper.gpu_nms is None:
        assert count == 0
