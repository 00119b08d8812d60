"""NMS dispatch (fast_rcnn.nms_wrapper)."""

import types

import numpy as np
import pytest

from fast_rcnn import device, nms_wrapper

# IoU(0, 1) = 81 / 119 = 0.6807; box 2 is disjoint from both.
DETS = np.array([[0, 0, 9, 9, 0.9],
                 [1, 1, 10, 10, 0.8],
                 [20, 20, 29, 29, 0.7]], dtype=np.float32)


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
    np.testing.assert_array_equal(nms_wrapper.nms(DETS, 0.5), [0, 2])
    np.testing.assert_array_equal(nms_wrapper.nms(DETS, 0.7), [0, 1, 2])


def test_gpu_used_when_built_and_asked_for(fake_gpu):
    np.testing.assert_array_equal(nms_wrapper.nms(DETS, 0.5, gpu_id=1), [0])
    assert fake_gpu == [1]


def test_cpu_used_without_a_gpu_id(fake_gpu):
    np.testing.assert_array_equal(nms_wrapper.nms(DETS, 0.5, gpu_id=-1), [0, 2])
    assert fake_gpu == []


@pytest.mark.parametrize('use_gpu_nms, gpu_id, expected', [(True, 1, 1), (True, -1, -1), (False, 0, -1)])
def test_nms_gpu_id_from_config(use_gpu_nms, gpu_id, expected):
    config = types.SimpleNamespace(USE_GPU_NMS=use_gpu_nms, GPU_ID=gpu_id)
    assert nms_wrapper.nms_gpu_id(config) == expected


def test_cpu_used_when_gpu_nms_is_not_built(monkeypatch):
    monkeypatch.setattr(nms_wrapper, 'gpu_nms', None)
    np.testing.assert_array_equal(nms_wrapper.nms(DETS, 0.5, gpu_id=0), [0, 2])


def test_cpu_with_one_warning_when_the_gpu_asked_for_is_not_usable(monkeypatch):
    calls = []
    monkeypatch.setattr(nms_wrapper, 'gpu_nms', lambda dets, thresh, device_id=0: calls.append(device_id))
    monkeypatch.setattr(device, 'usable_gpu_count', lambda: 0)
    monkeypatch.setattr(device, '_warned', set())
    with pytest.warns(UserWarning, match='NMS: GPU 0 was asked for but no CUDA devices are usable') as caught:
        for _ in range(3):
            np.testing.assert_array_equal(nms_wrapper.nms(DETS, 0.5, gpu_id=0), [0, 2])
    assert len(caught) == 1 and calls == []


def test_usable_gpu_count_matches_the_build():
    count = device.usable_gpu_count()
    assert isinstance(count, int) and count >= 0
    if nms_wrapper.gpu_nms is None:
        assert count == 0
