"""datasets.external_proposals: Selective Search / EdgeBoxes wrappers, dense windows, the released .mat
import, and the per-imdb cache."""

import os.path as osp

import cv2
import numpy as np
import pytest
import scipy.io

from datasets import external_proposals as ext
from datasets.imdb import imdb, load_box_list


def shapes_image(width=160, height=120):
    """A grey image with a red square [20, 30, 59, 69] and a blue disc (centre (110, 60), radius 25)."""
    im = np.full((height, width, 3), 128, np.uint8)
    im[30:70, 20:60] = (0, 0, 255)
    cv2.circle(im, (110, 60), 25, (255, 0, 0), -1)
    return im


def test_xywh_to_xyxy_is_pixel_inclusive():
    np.testing.assert_array_equal(ext.xywh_to_xyxy([[3, 4, 10, 1]]), [[3, 4, 12, 4]])


def test_clean_boxes_drops_duplicates_and_small_boxes_keeping_the_order():
    boxes = [[5, 5, 20, 20], [0, 0, 9, 9], [5, 5, 20, 20], [0, 0, 0, 30], [1, 1, 30, 30]]
    out = ext.clean_boxes(boxes, min_size=2, max_boxes=10)
    np.testing.assert_array_equal(out, [[5, 5, 20, 20], [0, 0, 9, 9], [1, 1, 30, 30]])
    np.testing.assert_array_equal(ext.clean_boxes(boxes, 2, 2), [[5, 5, 20, 20], [0, 0, 9, 9]])
    scored = ext.clean_boxes(boxes, 2, 10, scores=[0.9, 0.8, 0.7, 0.6, 0.5])
    np.testing.assert_array_equal(scored[:, 4], np.float32([0.9, 0.8, 0.5]))


def test_selective_search_is_seeded_finds_the_square_and_stays_in_the_image():
    im = shapes_image()
    a = ext.selective_search(im, seed=3)
    b = ext.selective_search(im, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape[1] == 4 and len(a) > 0
    assert a[:, :2].min() >= 0 and a[:, 2].max() <= 159 and a[:, 3].max() <= 119
    # the square's exact box is among the proposals (SS starts from the segments)
    assert any(np.array_equal(box, [20, 30, 59, 69]) for box in a)


def test_edge_boxes_scores_descend_and_one_box_fits_the_square():
    boxes = ext.edge_boxes(shapes_image())
    assert boxes.shape[1] == 5 and len(boxes) > 0
    assert np.all(np.diff(boxes[:, 4]) <= 0)
    square = np.array([20, 30, 59, 69], np.float64)
    inter_w = np.minimum(boxes[:, 2], square[2]) - np.maximum(boxes[:, 0], square[0]) + 1
    inter_h = np.minimum(boxes[:, 3], square[3]) - np.maximum(boxes[:, 1], square[1]) + 1
    inter = np.clip(inter_w, 0, None) * np.clip(inter_h, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    assert (inter / (areas + 1600 - inter)).max() > 0.6  # EB steps boxes by alpha = 0.65


def test_sobel_edges_are_thin_and_flat_images_have_none():
    edges, orientation = ext.sobel_edges(np.full((40, 40, 3), 77, np.uint8))
    assert not edges.any() and edges.dtype == np.float32 and orientation.shape == (40, 40)
    im = np.zeros((40, 40, 3), np.uint8)
    im[:, 20:] = 255  # a vertical step edge between columns 19 and 20
    edges, orientation = ext.sobel_edges(im)
    assert edges.max() == pytest.approx(1.0)
    row = edges[20]
    assert set(np.nonzero(row > 0.5)[0]) <= {19, 20} and (row > 0.5).sum() == 1  # one pixel wide
    assert orientation[20, np.argmax(row)] == pytest.approx(0.0, abs=1e-3)  # gradient along x


def test_dense_windows_tile_the_scaled_image():
    anchors = np.array([[-8, -8, 23, 23], [0, 0, 15, 15]], np.float64)
    windows = ext.dense_windows(width=32, height=16, scale=1.0, anchors=anchors, feat_stride=16)
    # 2 x 1 cells x 2 anchors, the big ones clipped into the 32 x 16 image
    np.testing.assert_array_equal(windows, [[0, 0, 23, 15], [0, 0, 15, 15], [8, 0, 31, 15], [16, 0, 31, 15]])


def test_load_released_mat_converts_matlab_boxes(tmp_path):
    path = str(tmp_path / 'voc_2007_test.mat')
    images = np.empty((2, 1), dtype=object)
    images[0, 0], images[1, 0] = '000001', '000004'
    boxes = np.empty((1, 2), dtype=object)
    boxes[0, 0] = np.array([[1, 1, 10, 20], [5, 6, 7, 8]], np.float64)  # [y1 x1 y2 x2], 1-based
    boxes[0, 1] = np.zeros((0, 4))
    scipy.io.savemat(path, {'images': images, 'boxes': boxes})
    out = ext.load_released_mat(path, ['000001', '000004'])
    np.testing.assert_array_equal(out[0], [[0, 0, 19, 9], [5, 4, 7, 6]])
    assert out[1].shape == (0, 4)
    with pytest.raises(ValueError, match='image ids do not match'):
        ext.load_released_mat(path, ['000001', '000005'])


def test_missing_released_mat_names_the_file(tmp_path):
    path = str(tmp_path / 'selective_search_data' / 'voc_2007_trainval.mat')
    with pytest.raises(FileNotFoundError, match='voc_2007_trainval.mat.*selective_search_data'):
        ext.load_released_mat(path, ['000005'])


class FolderImdb(imdb):
    """Images on disk, no annotations needed for proposals."""

    def __init__(self, paths):
        super().__init__('folder', ('__background__', 'x'))
        self._paths = paths
        self._image_index = [osp.splitext(osp.basename(p))[0] for p in paths]

    def image_path_at(self, i):
        return self._paths[i]


def test_imdb_proposals_are_cached_by_image_content(tmp_path, monkeypatch):
    paths = []
    for k in range(3):
        path = str(tmp_path / f'im{k}.png')
        cv2.imwrite(path, np.roll(shapes_image(), 10 * k, axis=1))
        paths.append(path)
    cache = str(tmp_path / 'cache')
    path, boxes = ext.imdb_proposals(FolderImdb(paths), 'edge_boxes', cache, workers=2)
    assert len(boxes) == 3 and all(b.shape[1] == 5 for b in boxes)
    assert [len(b) for b in load_box_list(path, ['im0', 'im1', 'im2'])] == [len(b) for b in boxes]
    assert ext.proposal_summary(path)['images'] == 3

    def no_pool(*args):
        raise AssertionError('recomputed although cached')
    monkeypatch.setattr(ext.mp, 'get_context', no_pool)
    assert ext.imdb_proposals(FolderImdb(paths), 'edge_boxes', cache, workers=1)[0] == path
    # an edited image changes the key: the proposals are computed again
    cv2.imwrite(paths[1], shapes_image())
    with pytest.raises(AssertionError, match='recomputed'):
        ext.imdb_proposals(FolderImdb(paths), 'edge_boxes', cache, workers=1)
