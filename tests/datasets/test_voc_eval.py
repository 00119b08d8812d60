"""datasets.voc_eval: devkit AP rules on hand-computed cases, for the VOC07 11-point and the area metric.

Annotations and detection files are written in 1-based devkit coordinates. Boxes used below:
gt G = [1, 1, 10, 10] (area 100 with the +1), H = [21, 21, 40, 40].
"""

import json
import os

import numpy as np
import pytest

from datasets.voc_eval import VOC07_THRESHOLDS, voc_ap, voc_eval

G = (1, 1, 10, 10)
H = (21, 21, 40, 40)
FAR = (100, 100, 110, 110)


def write_xml(path, objects):
    """Minimal devkit XML; ``objects``: (name, (xmin, ymin, xmax, ymax) 1-based, difficult)."""
    body = ''.join(
        f'<object><name>{name}</name><difficult>{int(diff)}</difficult><bndbox><xmin>{b[0]}</xmin>'
        f'<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>'
        for name, b, diff in objects)
    path.write_text(f'<annotation><size><width>200</width><height>200</height></size>{body}</annotation>')


def evaluate(tmp_path, gts, dets, classname='dog', use_07_metric=True):
    """Write ``gts`` ({image id: objects}) and ``dets`` ([(id, score, box)]) and run voc_eval."""
    (tmp_path / 'ann').mkdir(exist_ok=True)
    for image_id, objects in gts.items():
        write_xml(tmp_path / 'ann' / f'{image_id}.xml', objects)
    (tmp_path / 'set.txt').write_text(''.join(f'{i}\n' for i in gts))
    (tmp_path / f'det_{classname}.txt').write_text(
        ''.join(f'{i} {s} {b[0]} {b[1]} {b[2]} {b[3]}\n' for i, s, b in dets))
    return voc_eval(str(tmp_path / 'det_{}.txt'), str(tmp_path / 'ann' / '{}.xml'), str(tmp_path / 'set.txt'),
                    classname, str(tmp_path / 'cache'), use_07_metric=use_07_metric)


TWO_DOGS = {'a': [('dog', G, False)], 'b': [('dog', H, False)]}


@pytest.mark.parametrize('use_07_metric', [True, False])
def test_perfect_detections_give_ap_1(tmp_path, use_07_metric):
    rec, prec, ap = evaluate(tmp_path, TWO_DOGS, [('a', 0.9, G), ('b', 0.8, H)], use_07_metric=use_07_metric)
    np.testing.assert_array_equal(rec, [0.5, 1.0])
    np.testing.assert_array_equal(prec, [1.0, 1.0])
    assert ap == 1.0


@pytest.mark.parametrize('use_07_metric, expected', [(True, 28 / 33), (False, 5 / 6)])
def test_one_false_positive_between_two_hits(tmp_path, use_07_metric, expected):
    # TP, FP, TP: rec 0.5, 0.5, 1; prec 1, 1/2, 2/3.
    # VOC07: t = 0..0.5 -> 1, t = 0.6..1 -> 2/3: (6 + 5 * 2/3) / 11 = 28/33. Area: 0.5 * 1 + 0.5 * 2/3 = 5/6.
    rec, prec, ap = evaluate(tmp_path, TWO_DOGS, [('a', 0.9, G), ('b', 0.8, FAR), ('b', 0.7, H)],
                             use_07_metric=use_07_metric)
    np.testing.assert_array_equal(rec, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(prec, [1.0, 0.5, 2 / 3], rtol=0, atol=1e-15)
    assert ap == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize('use_07_metric, expected', [(True, 28 / 33), (False, 5 / 6)])
def test_duplicate_detection_is_a_false_positive(tmp_path, use_07_metric, expected):
    # The second detection of G (IoU 90/100 > 0.5) finds G taken: FP, exactly like the FAR box above.
    rec, prec, ap = evaluate(tmp_path, TWO_DOGS, [('a', 0.9, G), ('a', 0.8, (1, 1, 10, 9)), ('b', 0.7, H)],
                             use_07_metric=use_07_metric)
    np.testing.assert_array_equal(rec, [0.5, 0.5, 1.0])
    assert ap == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize('use_07_metric, expected', [(True, 7 / 11), (False, 2 / 3)])
def test_missed_object_caps_recall(tmp_path, use_07_metric, expected):
    # 3 gts, 2 hits: rec 1/3, 2/3 at precision 1. VOC07: t = 0..0.6 reached -> 7/11. Area: 2/3.
    gts = dict(TWO_DOGS, c=[('dog', G, False)])
    rec, _, ap = evaluate(tmp_path, gts, [('a', 0.9, G), ('b', 0.8, H)], use_07_metric=use_07_metric)
    np.testing.assert_allclose(rec, [1 / 3, 2 / 3], rtol=0, atol=1e-15)
    assert ap == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize('use_07_metric', [True, False])
def test_detection_of_difficult_object_is_ignored(tmp_path, use_07_metric):
    # The difficult gt is no positive (npos = 1) and its detection is neither TP nor FP.
    gts = {'a': [('dog', G, True)], 'b': [('dog', H, False)]}
    rec, prec, ap = evaluate(tmp_path, gts, [('a', 0.9, G), ('b', 0.8, H)], use_07_metric=use_07_metric)
    np.testing.assert_array_equal(rec, [0.0, 1.0])
    np.testing.assert_array_equal(prec, [0.0, 1.0])
    assert ap == 1.0


@pytest.mark.parametrize('use_07_metric', [True, False])
def test_best_gt_difficult_means_no_fallback_to_second_best(tmp_path, use_07_metric):
    # Best gt (IoU 1) is difficult; the non-difficult one (IoU 100/120) is not tried: nothing matched.
    gts = {'a': [('dog', G, True), ('dog', (1, 1, 10, 12), False)]}
    rec, prec, ap = evaluate(tmp_path, gts, [('a', 0.9, G)], use_07_metric=use_07_metric)
    np.testing.assert_array_equal(rec, [0.0])
    assert ap == 0.0


@pytest.mark.parametrize('use_07_metric, expected', [(True, 6 / 11), (False, 0.5)])
def test_taken_best_gt_means_false_positive_not_second_best(tmp_path, use_07_metric, expected):
    # Both detections' best gt is G; the second finds it taken -> FP although the other gt has IoU 0.83.
    gts = {'a': [('dog', G, False), ('dog', (1, 1, 10, 12), False)]}
    rec, prec, ap = evaluate(tmp_path, gts, [('a', 0.9, G), ('a', 0.8, G)], use_07_metric=use_07_metric)
    np.testing.assert_array_equal(rec, [0.5, 0.5])
    np.testing.assert_array_equal(prec, [1.0, 0.5])
    assert ap == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize('box, hit', [((1, 1, 10, 19), True), ((1, 1, 10, 20), False)])
def test_iou_uses_plus_one_areas_and_strict_threshold(tmp_path, box, hit):
    # [1,1,10,19]: IoU 100/190 > 0.5 (without the +1 it would be 81/162 = 0.5: a miss).
    # [1,1,10,20]: IoU 100/200 = 0.5 exactly, not > 0.5: a miss.
    _, _, ap = evaluate(tmp_path, {'a': [('dog', G, False)]}, [('a', 0.9, box)])
    assert ap == (1.0 if hit else 0.0)


@pytest.mark.parametrize('use_07_metric', [True, False])
def test_no_detections_give_ap_0(tmp_path, use_07_metric):
    rec, prec, ap = evaluate(tmp_path, TWO_DOGS, [], use_07_metric=use_07_metric)
    assert rec.shape == (0,) and prec.shape == (0,)
    assert ap == 0.0


@pytest.mark.parametrize('use_07_metric', [True, False])
def test_class_without_gt_gives_ap_0(tmp_path, use_07_metric):
    rec, prec, ap = evaluate(tmp_path, TWO_DOGS, [('a', 0.9, G)], classname='cat',
                             use_07_metric=use_07_metric)
    np.testing.assert_array_equal(rec, [0.0])
    np.testing.assert_array_equal(prec, [0.0])
    assert ap == 0.0


def test_detections_sorted_by_score_not_file_order(tmp_path):
    # Written FP-first but the TP scores higher: TP, FP -> rec .5 .5 / prec 1 .5 after sorting.
    rec, prec, _ = evaluate(tmp_path, TWO_DOGS, [('b', 0.3, FAR), ('a', 0.9, G)])
    np.testing.assert_array_equal(prec, [1.0, 0.5])


def test_unknown_image_id_in_detections_names_file_and_line(tmp_path):
    with pytest.raises(ValueError, match=r"det_dog.txt:2: image id 'zzz' is not in the image set"):
        evaluate(tmp_path, TWO_DOGS, [('a', 0.9, G), ('zzz', 0.8, G)])


def test_annotation_cache_is_json_and_follows_edits(tmp_path):
    _, _, ap = evaluate(tmp_path, TWO_DOGS, [('a', 0.9, G), ('b', 0.8, H)])
    assert ap == 1.0
    caches = os.listdir(tmp_path / 'cache')
    assert len(caches) == 1 and caches[0].endswith('.json')
    with open(tmp_path / 'cache' / caches[0]) as f:
        assert json.load(f)['a'] == [{'name': 'dog', 'difficult': 0, 'bbox': [1.0, 1.0, 10.0, 10.0]}]
    # moving gt b away: the detection of H becomes a miss, so the cache must not be reused
    _, _, ap = evaluate(tmp_path, {'a': [('dog', G, False)], 'b': [('dog', FAR, False)]},
                        [('a', 0.9, G), ('b', 0.8, H)])
    assert ap == pytest.approx(6 / 11, abs=1e-12)
    assert len(os.listdir(tmp_path / 'cache')) == 2


def test_voc07_thresholds_are_matlabs_colon():
    # MATLAB 0:0.1:1: k*0.1 up to the middle, 0.5 exactly, then 1-(10-k)*0.1.
    expected = [0.0, 0.1, 0.2, 3 * 0.1, 4 * 0.1, 0.5, 1 - 4 * 0.1, 1 - 3 * 0.1, 1 - 2 * 0.1, 1 - 0.1, 1.0]
    assert VOC07_THRESHOLDS.tolist() == expected
    assert VOC07_THRESHOLDS[3] == np.nextafter(0.3, 1)  # one ulp above 0.3
    assert VOC07_THRESHOLDS[6] == 0.6 and VOC07_THRESHOLDS[7] == 0.7  # the nearest doubles


def test_recall_of_exactly_three_tenths_misses_the_devkit_threshold():
    # rec 3/10 < 3*0.1: thresholds 0, 0.1, 0.2 are reached, 0.3 is not -> 3/11.
    assert voc_ap(np.array([1, 2, 3]) / 10, [1.0, 1.0, 1.0], use_07_metric=True) == 3 / 11


@pytest.mark.parametrize('tenths, reached', [(6, 7), (7, 8)])
def test_recall_of_exactly_six_or_seven_tenths_reaches_its_threshold(tenths, reached):
    # 6/10 reaches t = 0 .. 0.6 (7 thresholds), 7/10 reaches t = 0 .. 0.7 (8 thresholds).
    assert voc_ap(np.array([tenths]) / 10, [0.5], use_07_metric=True) == pytest.approx(reached * 0.5 / 11)


def test_voc07_ap_through_voc_eval_with_three_of_ten_found(tmp_path):
    # 10 dogs in 10 images, 3 found with perfect boxes: recall exactly 0.3 -> AP 3/11 (devkit), not 4/11.
    gts = {f'i{k}': [('dog', G, False)] for k in range(10)}
    _, _, ap = evaluate(tmp_path, gts, [(f'i{k}', 0.9 - k / 100, G) for k in range(3)])
    assert ap == pytest.approx(3 / 11, abs=1e-12)


def test_area_metric_uses_the_precision_envelope():
    # rec .25 .25 .5 .75; prec 1 .5 .6 .5 -> envelope 1, .6, .6, .5: .25 * 1 + .25 * .6 + .25 * .5 = .525
    assert voc_ap([0.25, 0.25, 0.5, 0.75], [1.0, 0.5, 0.6, 0.5], use_07_metric=False) == pytest.approx(0.525)
    # VOC07 on the same curve: t = 0..0.2 -> 1, 0.3..0.5 -> .6, 0.6..0.7 -> .5, 0.8..1 -> 0
    assert voc_ap([0.25, 0.25, 0.5, 0.75], [1.0, 0.5, 0.6, 0.5], use_07_metric=True) == \
        pytest.approx((3 * 1 + 3 * 0.6 + 2 * 0.5) / 11)


def test_a_corrupt_annotation_cache_is_rebuilt_with_a_warning(tmp_path):
    assert evaluate(tmp_path, TWO_DOGS, [('a', 0.9, G), ('b', 0.8, H)])[2] == 1.0
    (cache,) = os.listdir(tmp_path / 'cache')
    (tmp_path / 'cache' / cache).write_text('{"a": [{"name": "do')  # torn by a kill (old writer)
    with pytest.warns(UserWarning, match=f'{cache}: corrupt annotation cache .*rebuilding it'):
        assert evaluate(tmp_path, TWO_DOGS, [('a', 0.9, G), ('b', 0.8, H)])[2] == 1.0
    with open(tmp_path / 'cache' / cache) as f:
        assert set(json.load(f)) == {'a', 'b'}
    assert os.listdir(tmp_path / 'cache') == [cache]  # no temporary file left
