"""datasets.imdb: flipping, proposal roidbs, merging, proposal files, recall, proposal-method handling."""

import copy

import numpy as np
import pytest

from datasets.imdb import (flip_roidb_entry, imdb, load_box_list, merge_roidbs, save_box_list)

CLASSES = ('__background__', 'a', 'b')


def gt_entry(image, width, height, boxes, classes):
    """A ground-truth roidb entry in the architecture.md format."""
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    classes = np.array(classes, dtype=np.int32)
    overlaps = np.zeros((len(classes), len(CLASSES)), dtype=np.float32)
    overlaps[np.arange(len(classes)), classes] = 1
    return {'image': image, 'width': width, 'height': height, 'boxes': boxes, 'gt_classes': classes,
            'gt_overlaps': overlaps, 'flipped': False,
            'seg_areas': ((boxes[:, 2] - boxes[:, 0] + 1)
                          * (boxes[:, 3] - boxes[:, 1] + 1)).astype(np.float32)}


class ListImdb(imdb):
    """An imdb over fixed in-memory ground truth (for testing the base class)."""

    def __init__(self, entries):
        super().__init__('toy', CLASSES)
        self._entries = entries
        self._image_index = [e['image'].rsplit('/', 1)[-1].split('.')[0] for e in entries]

    def image_path_at(self, i):
        return f'/toy/{self._image_index[i]}.jpg'

    def gt_roidb(self):
        return copy.deepcopy(self._entries)

    def image_size_at(self, i):
        return self._entries[i]['width'], self._entries[i]['height']


def toy():
    """Two images: im1 40 x 30 with a [0,0,9,9] and b [20,20,29,29]; im2 50 x 20 without objects."""
    return ListImdb([gt_entry('/toy/im1.jpg', 40, 30, [[0, 0, 9, 9], [20, 20, 29, 29]], [1, 2]),
                     gt_entry('/toy/im2.jpg', 50, 20, [], [])])


def test_flip_boxes_touching_both_borders():
    d = ListImdb([gt_entry('/toy/e.jpg', 30, 20, [[0, 4, 9, 19], [9, 4, 29, 19], [0, 0, 29, 5]], [1, 2, 1])])
    d.append_flipped_images()
    assert d.image_index == ['e', 'e'] and d.num_images == 2
    flipped = d.roidb[1]
    assert flipped['flipped'] and not d.roidb[0]['flipped']
    # x1' = W - x2 - 1, x2' = W - x1 - 1 with W = 30: x = 0 <-> x = 29
    np.testing.assert_array_equal(flipped['boxes'], [[20, 4, 29, 19], [0, 4, 20, 19], [0, 0, 29, 5]])
    np.testing.assert_array_equal(d.roidb[0]['boxes'], [[0, 4, 9, 19], [9, 4, 29, 19], [0, 0, 29, 5]])
    assert flipped['boxes'].dtype == np.float32
    np.testing.assert_array_equal(flipped['gt_classes'], [1, 2, 1])


@pytest.mark.parametrize('box', [[5, 0, 30, 5], [-1, 0, 3, 5], [7, 0, 6, 5]])
def test_flip_refuses_invalid_boxes_naming_the_image(box):
    entry = gt_entry('/toy/bad.jpg', 30, 20, [box], [1])
    with pytest.raises(ValueError, match=r'cannot flip /toy/bad.jpg \(width 30\): box 0'):
        flip_roidb_entry(entry)


def test_set_proposal_method_checks_name_and_order():
    d = toy()
    with pytest.raises(ValueError, match="unknown proposal method 'ss'; known: gt, rpn, selective_search, "
                                         "edge_boxes, dense"):
        d.set_proposal_method('ss')
    d.append_flipped_images()
    with pytest.raises(RuntimeError, match='before append_flipped_images'):
        d.set_proposal_method('gt')


def test_create_roidb_from_box_list_stores_best_iou_in_its_class_column():
    d = toy()
    proposals = [np.array([[0, 0, 9, 9, 0.9],       # = gt a: IoU 1
                           [0, 0, 9, 19, 0.8],      # 100 / 200 with gt a
                           [20, 20, 29, 24, 0.7],   # 50 / 100 with gt b
                           [30, 0, 39, 5, 0.1]],    # touches nothing
                          dtype=np.float32),
                 np.zeros((0, 5), dtype=np.float32)]
    roidb = d.create_roidb_from_box_list(proposals, d.gt_roidb())
    entry = roidb[0]
    np.testing.assert_array_equal(entry['boxes'], proposals[0][:, :4])
    assert entry['gt_overlaps'].dtype == np.float32
    np.testing.assert_array_equal(entry['gt_overlaps'], [[0, 1, 0], [0, 0.5, 0], [0, 0, 0.5], [0, 0, 0]])
    np.testing.assert_array_equal(entry['gt_classes'], [0, 0, 0, 0])
    assert (entry['width'], entry['height'], entry['image'], entry['flipped']) == \
        (40, 30, '/toy/im1.jpg', False)
    assert roidb[1]['boxes'].shape == (0, 4) and roidb[1]['gt_overlaps'].shape == (0, 3)


def test_merge_roidbs_stacks_gt_then_proposals():
    d = toy()
    gt = d.gt_roidb()
    props = d.create_roidb_from_box_list([np.array([[0, 0, 9, 19]], np.float32), np.zeros((0, 4))], gt)
    merged = merge_roidbs(gt, props)
    np.testing.assert_array_equal(merged[0]['boxes'], [[0, 0, 9, 9], [20, 20, 29, 29], [0, 0, 9, 19]])
    np.testing.assert_array_equal(merged[0]['gt_classes'], [1, 2, 0])
    np.testing.assert_array_equal(merged[0]['gt_overlaps'], [[0, 1, 0], [0, 0, 1], [0, 0.5, 0]])
    np.testing.assert_array_equal(merged[0]['seg_areas'], [100, 100, 0])
    assert merged[1]['boxes'].shape == (0, 4)


def test_box_list_round_trip_with_scores_and_empty_images(tmp_path):
    path = str(tmp_path / 'props.npz')
    boxes = [np.array([[1, 2, 3, 4, 0.5], [5, 6, 7, 8, 0.25]], np.float32), np.zeros((0, 5), np.float32),
             np.array([[0, 0, 9, 9, 1.0]], np.float32)]
    save_box_list(path, ['x', 'y', 'z'], boxes)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ['boxes', 'image_index', 'offsets']
        np.testing.assert_array_equal(data['offsets'], [0, 2, 2, 3])
        assert data['boxes'].dtype == np.float32 and data['offsets'].dtype == np.int64
    loaded = load_box_list(path, ['x', 'y', 'z'])
    assert [b.shape for b in loaded] == [(2, 5), (0, 5), (1, 5)]
    for got, want in zip(loaded, boxes):
        np.testing.assert_array_equal(got, want)


def test_box_list_id_mismatch_names_file_and_position(tmp_path):
    path = str(tmp_path / 'props.npz')
    save_box_list(path, ['x', 'y'], [np.zeros((1, 4)), np.zeros((1, 4))])
    with pytest.raises(ValueError, match=r"props.npz: image ids do not match the imdb "
                                         r"\(2 in file, 2 expected\); first difference at position 1: "
                                         r"file has 'y', imdb has 'w'"):
        load_box_list(path, ['x', 'w'])
    with pytest.raises(ValueError, match=r"\(2 in file, 3 expected\); first difference at position 2: "
                                         r"file has '<end>', imdb has 'z'"):
        load_box_list(path, ['x', 'y', 'z'])


def test_save_box_list_rejects_mixed_widths(tmp_path):
    with pytest.raises(ValueError, match='M x 4 or M x 5'):
        save_box_list(str(tmp_path / 'p.npz'), ['x', 'y'], [np.zeros((1, 4)), np.zeros((1, 5))])


def test_rpn_roidb_merges_gt_and_the_proposal_file(tmp_path):
    d = toy()
    path = str(tmp_path / 'rpn.npz')
    save_box_list(path, d.image_index, [np.array([[0, 0, 9, 19, 0.9]]), np.array([[1, 1, 5, 5, 0.3]])])
    d.config['rpn_file'] = path
    d.set_proposal_method('rpn')
    np.testing.assert_array_equal(d.roidb[0]['gt_classes'], [1, 2, 0])
    np.testing.assert_array_equal(d.roidb[0]['gt_overlaps'][2], [0, 0.5, 0])
    np.testing.assert_array_equal(d.roidb[1]['boxes'], [[1, 1, 5, 5]])


def test_rpn_roidb_without_file_says_what_is_missing():
    d = toy()
    d.set_proposal_method('rpn')
    with pytest.raises(KeyError, match=r'config\["rpn_file"\]'):
        d.roidb


def recall_imdb():
    """One 40 x 40 image: gt1 [0,0,9,9] (area 100, class a), gt2 [0,0,9,11] (area 120, class b)."""
    return ListImdb([gt_entry('/toy/r.jpg', 40, 40, [[0, 0, 9, 9], [0, 0, 9, 11]], [1, 2])])


# X = [0,0,9,10]: IoU 100/110 with gt1, 110/120 with gt2; Y = [0,0,9,7]: IoU 0.8 with gt1, 80/120 with gt2.
X, Y = [0, 0, 9, 10], [0, 0, 9, 7]


def test_evaluate_recall_matches_greedily_one_to_one():
    # gt2 takes X first (110/120 is the best pair); gt1 then takes Y (0.8), not X (0.909).
    result = recall_imdb().evaluate_recall([np.array([X, Y], np.float32)], thresholds=[0.5, 0.85, 0.95])
    np.testing.assert_allclose(result['gt_overlaps'], [0.8, 110 / 120], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result['recalls'], [1.0, 0.5, 0.0])
    assert result['ar'] == pytest.approx(0.5)


def test_evaluate_recall_limit_and_default_thresholds():
    # limit 1 keeps X only: gt2 covered 110/120, gt1 uncovered (0).
    result = recall_imdb().evaluate_recall([np.array([X, Y], np.float32)], limit=1)
    np.testing.assert_allclose(result['gt_overlaps'], [0.0, 110 / 120], rtol=0, atol=1e-12)
    np.testing.assert_allclose(result['thresholds'], np.arange(10) * 0.05 + 0.5, atol=1e-12)
    # 0.9167 reaches 0.5 .. 0.9 (9 thresholds) of 10 -> recall .5 there, 0 at 0.95: ar = 4.5 / 10
    assert result['ar'] == pytest.approx(0.45)


def test_evaluate_recall_area_filter_and_roidb_proposals(tmp_path):
    d = recall_imdb()
    path = str(tmp_path / 'rpn.npz')
    save_box_list(path, d.image_index, [np.array([Y], np.float32)])
    d.config['rpn_file'] = path
    d.set_proposal_method('rpn')
    # 'small' = area <= 32^2: both gts; candidates from the roidb's proposals (Y): gt1 takes it (0.8)
    result = d.evaluate_recall(thresholds=[0.5], area='small')
    np.testing.assert_allclose(result['gt_overlaps'], [0.0, 0.8], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="no gt boxes in area range 'large'"):
        d.evaluate_recall(area='large')
    with pytest.raises(ValueError, match="unknown area 'huge'"):
        d.evaluate_recall(area='huge')


def test_proposals_overshooting_by_less_than_a_pixel_are_clipped_so_flipping_works():
    d = toy()
    # (W * s - 1) / s = W - 1 / s: an up-scaled input gives x2 up to W - 1 + (1 - 1 / s)
    roidb = d.create_roidb_from_box_list([np.array([[-0.4, 0, 39.6, 29.5]], np.float32), np.zeros((0, 4))],
                                         d.gt_roidb())
    np.testing.assert_array_equal(roidb[0]['boxes'], [[0, 0, 39, 29]])
    with pytest.raises(ValueError, match=r'proposal 1 = \[0.0, 0.0, 40.0, 29.0\] of /toy/im1.jpg lies '
                                         r'outside the 40 x 30 image by a pixel or more'):
        d.create_roidb_from_box_list([np.array([[0, 0, 39, 29], [0, 0, 40, 29]], np.float32),
                                      np.zeros((0, 4))], d.gt_roidb())


def test_dense_proposals_are_the_anchor_grid_in_original_pixels():
    from datasets.imdb import set_proposals
    from fast_rcnn.config import cfg
    d = toy()
    # one 16 x 16 anchor, stride 16; shorter side 30 -> 60: scale 2, so the windows are the anchors / 2
    cfg_dense = copy.deepcopy(cfg.PROPOSALS)
    cfg_dense.DENSE_SCALES, cfg_dense.DENSE_RATIOS = (1,), (1,)
    set_proposals(d, 'dense', cfg_dense, (60, 1000))
    entry = d.roidb[0]
    proposals = entry['boxes'][entry['gt_classes'] == 0]
    # im1 is 40 x 30 -> 80 x 60 input -> 5 x 4 cells; windows [8c, 8r, 8c + 7.5, 8r + 7.5]
    assert len(proposals) == 20
    np.testing.assert_array_equal(proposals[:2], [[0, 0, 7.5, 7.5], [8, 0, 15.5, 7.5]])
    np.testing.assert_array_equal(proposals[-1], [32, 24, 39, 29])  # clipped to the image
    # the first window covers 8.5 x 8.5 of gt a's 10 x 10 (pixel-inclusive areas)
    assert entry['gt_overlaps'][len(entry['gt_classes']) - 20, 1] == pytest.approx(8.5 ** 2 / 100)


def test_rpn_method_needs_a_file():
    from datasets.imdb import set_proposals
    from fast_rcnn.config import cfg
    with pytest.raises(ValueError, match='needs a proposals file'):
        set_proposals(toy(), 'rpn', cfg.PROPOSALS, (600, 1000))


def test_a_torn_proposals_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / 'props.npz'
    save_box_list(str(path), ['x', 'y'], [np.zeros((3, 4)), np.zeros((2, 4))])
    assert [p.name for p in tmp_path.iterdir()] == ['props.npz']  # written through a temporary name
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=f'{path}: unreadable proposals file'):
        load_box_list(str(path), ['x', 'y'])
