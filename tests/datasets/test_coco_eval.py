"""datasets.coco_eval: box conversions, COCO results, and pycocotools' numbers on hand-built detections."""

import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from datasets import coco_eval
from datasets.coco import coco_from_files
from datasets.factory import get_imdb

# One 100 x 100 object (COCO 'large': area 10000 > 96^2) per image, two images, two classes.
GT = {
    'images': [{'id': 1, 'file_name': 'a.jpg', 'width': 200, 'height': 200},
               {'id': 2, 'file_name': 'b.jpg', 'width': 200, 'height': 200}],
    'categories': [{'id': 1, 'name': 'car'}, {'id': 5, 'name': 'dog'}],
    'annotations': [
        {'id': 1, 'image_id': 1, 'category_id': 1, 'bbox': [10, 20, 100, 100], 'area': 10000, 'iscrowd': 0},
        {'id': 2, 'image_id': 2, 'category_id': 5, 'bbox': [50, 50, 100, 100], 'area': 10000, 'iscrowd': 0},
    ],
}
EMPTY = np.zeros((0, 5), np.float32)


def _all_boxes(per_class):
    """all_boxes for 3 classes x 2 images from ``{(class, image): N x 5 list}``."""
    return [[]] + [[np.array(per_class.get((k, i), EMPTY), np.float32).reshape(-1, 5) for i in range(2)]
                   for k in (1, 2)]


def _summary(per_class):
    """coco_eval's summary of the hand-built detections against GT (image ids 1, 2; category ids 1, 5)."""
    results = coco_eval.coco_results(_all_boxes(per_class), [1, 2], [None, 1, 5])
    return coco_eval.evaluate(coco_eval.ground_truth_index(json.loads(json.dumps(GT))), results)


# The gt boxes as 0-based pixel-inclusive [x1, y1, x2, y2] detections.
PERFECT = {(1, 0): [[10, 20, 109, 119, 0.9]], (2, 1): [[50, 50, 149, 149, 0.8]]}


def test_box_conversions_go_there_and_back():
    assert coco_eval.coco_box_to_roidb([10, 20, 100, 100], 200, 200) == [10, 20, 109, 119]
    np.testing.assert_array_equal(coco_eval.roidb_box_to_coco([[10, 20, 109, 119]]), [[10, 20, 100, 100]])
    # clipped into the image; a sub-pixel width gives x2 = x1
    assert coco_eval.coco_box_to_roidb([150, -5, 100, 0.5], 200, 120) == [150, 0, 199, 0]


def test_perfect_detections_score_one():
    summary = _summary(PERFECT)
    assert list(summary) == list(coco_eval.SUMMARY_NAMES)
    # no small or medium gt: pycocotools reports -1 for those
    # (AP is a mean over 101 recall points and 10 thresholds: 1 up to rounding)
    assert list(summary.values()) == pytest.approx([1, 1, 1, -1, -1, 1, 1, 1, 1, -1, -1, 1], abs=1e-12)


def test_a_shifted_box_drops_at_the_high_iou_thresholds():
    # The car shifted 10 px right: IoU = 90 * 100 / (2 * 10000 - 90 * 100) = 0.818, a match at IoU
    # .50 ... .80 (7 of the 10 thresholds), a miss at .85, .90, .95. Per class: car AP 0.7, dog AP 1.
    shifted = {(1, 0): [[20, 20, 119, 119, 0.9]], (2, 1): PERFECT[2, 1]}
    summary = _summary(shifted)
    # AP and AR: (0.7 + 1) / 2; at IoU .50 and .75 both classes match
    expected = [0.85, 1, 1, -1, -1, 0.85, 0.85, 0.85, 0.85, -1, -1, 0.85]
    assert list(summary.values()) == pytest.approx(expected, abs=1e-12)
    # 11 px: IoU 89 / 111 = 0.802, still a match at .80; 12 px: 88 / 112 = 0.786, not any more
    assert _summary({**shifted, (1, 0): [[21, 20, 120, 119, 0.9]]})['AP'] == pytest.approx(0.85, abs=1e-12)
    assert _summary({**shifted, (1, 0): [[22, 20, 121, 119, 0.9]]})['AP'] == pytest.approx(0.8, abs=1e-12)


def test_the_numbers_are_pycocotools_own(tmp_path):
    """The same detections written by hand in COCO's format and evaluated by pycocotools directly."""
    dets = {(1, 0): [[20, 20, 119, 119, 0.9], [0, 0, 49, 49, 0.5]], (2, 1): [[55, 45, 154, 144, 0.7]],
            (2, 0): [[10, 20, 109, 119, 0.6]]}
    ours = _summary(dets)
    (tmp_path / 'gt.json').write_text(json.dumps(GT))
    gt = COCO(str(tmp_path / 'gt.json'))
    hand = [{'image_id': 1, 'category_id': 1, 'bbox': [20, 20, 100, 100], 'score': 0.9},
            {'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 50, 50], 'score': 0.5},
            {'image_id': 2, 'category_id': 5, 'bbox': [55, 45, 100, 100], 'score': 0.7},
            {'image_id': 1, 'category_id': 5, 'bbox': [10, 20, 100, 100], 'score': 0.6}]
    evaluator = COCOeval(gt, gt.loadRes(hand), iouType='bbox')
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert list(ours.values()) == [float(v) for v in evaluator.stats]


def test_no_detections_score_zero():
    assert _summary({})['AP'] == 0.0


def test_detections_on_crowd_regions_are_ignored():
    gt = json.loads(json.dumps(GT))
    gt['annotations'].append({'id': 3, 'image_id': 1, 'category_id': 1, 'bbox': [120, 120, 60, 60],
                              'area': 3600, 'iscrowd': 1})
    dets = {(1, 0): [[125, 125, 174, 174, 0.95], *PERFECT[1, 0]], (2, 1): PERFECT[2, 1]}
    results = coco_eval.coco_results(_all_boxes(dets), [1, 2], [None, 1, 5])
    assert coco_eval.evaluate(coco_eval.ground_truth_index(gt), results)['AP'] == pytest.approx(1, abs=1e-12)


def test_imdb_evaluation_writes_results_and_summary(tmp_path):
    image_dir = tmp_path / 'images'
    image_dir.mkdir()
    for name in ('a.jpg', 'b.jpg'):
        cv2.imwrite(str(image_dir / name), np.zeros((200, 200, 3), np.uint8))
    (tmp_path / 'gt.json').write_text(json.dumps(GT))
    imdb = coco_from_files('two', tmp_path / 'gt.json', image_dir)
    ap = imdb.evaluate_detections(_all_boxes(PERFECT), str(tmp_path / 'out'))
    assert ap == pytest.approx(1, abs=1e-12)
    saved = json.loads((tmp_path / 'out' / 'two_coco_eval.json').read_text())
    assert saved['summary']['AP'] == ap and saved['imdb'] == 'two'
    results = json.loads((tmp_path / 'out' / 'detections_two_results.json').read_text())
    assert results == [{'image_id': 1, 'category_id': 1, 'bbox': [10.0, 20.0, 100.0, 100.0], 'score': 0.9},
                       {'image_id': 2, 'category_id': 5, 'bbox': [50.0, 50.0, 100.0, 100.0], 'score': 0.8}]


def test_voc_view_gives_the_same_numbers_as_the_coco_view(tmp_path):
    """synth_mini_test through the on-the-fly VOC conversion and through its COCO JSON (first 20 images):
    the gt boxes as detections score AP 1 both ways, and a shifted set scores the same both ways."""
    voc = get_imdb('synth_mini_test')
    view = get_imdb('synth_coco_test')
    gt = voc.roidb
    rng = np.random.default_rng(0)
    all_boxes = [[]] + [[EMPTY for _ in gt] for _ in voc.classes[1:]]
    for i, entry in enumerate(gt):
        for box, cls in zip(entry['boxes'], entry['gt_classes']):
            shifted = box + rng.integers(-3, 4, 4)
            all_boxes[cls][i] = np.vstack([all_boxes[cls][i], [*shifted, rng.uniform()]]).astype(np.float32)
    converted = coco_eval.evaluate_imdb(voc, all_boxes, str(tmp_path / 'voc'))
    coco_gt, image_ids, category_ids = coco_eval.coco_view(view)
    subset = {'images': [img for img in coco_gt.dataset['images'] if str(img['id']) in
                         {str(int(index)) for index in voc.image_index}],
              'categories': coco_gt.dataset['categories']}
    subset['annotations'] = [a for a in coco_gt.dataset['annotations']
                             if a['image_id'] in {img['id'] for img in subset['images']}]
    results = coco_eval.coco_results(all_boxes, [int(index) for index in voc.image_index], category_ids)
    direct = coco_eval.evaluate(coco_eval.ground_truth_index(subset), results)
    assert converted == direct
    assert 0.3 < converted['AP'] < 1.0
