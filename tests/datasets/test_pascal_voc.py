"""datasets.pascal_voc: the VOC-format loader on a small fixture written here in 1-based devkit coordinates.

Fixture (classes cat, dog), VOC2007 'test':
  000001  20 x 10: dog [1,1,20,10] (touches every border), cat [5,2,8,4] difficult
  000002  30 x 20: dog [10,5,30,20] (touches the right border), cat [2,2,6,6]
"""

import json
import os
import struct

import cv2
import numpy as np
import pytest

import datasets.pascal_voc as pascal_voc_module
from datasets.factory import get_imdb
from datasets.pascal_voc import (BadAnnotationError, DatasetNotFoundError, annotation_xml, parse_annotation,
                                 pascal_voc, write_comp4_file)
from fast_rcnn.config import cfg
from utils.image import BadImageError

CLASSES = ('__background__', 'cat', 'dog')
SIZES = {'000001': (20, 10), '000002': (30, 20)}
OBJECTS = {
    '000001': [('dog', (1, 1, 20, 10), 0), ('cat', (5, 2, 8, 4), 1)],
    '000002': [('dog', (10, 5, 30, 20), 0), ('cat', (2, 2, 6, 6), 0)],
}


def xml_text(width, height, objects):
    """Devkit-style XML; ``objects``: (name, (xmin, ymin, xmax, ymax) as written, difficult)."""
    body = ''.join(
        f'<object><name>{n}</name><pose>Left</pose><truncated>0</truncated><difficult>{d}</difficult>'
        f'<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>'
        for n, b, d in objects)
    return (f'<annotation><folder>VOC2007</folder><size><width>{width}</width><height>{height}</height>'
            f'<depth>3</depth></size>{body}</annotation>')


def make_voc(data_dir, year='2007', split='test', objects=OBJECTS):
    """Write the fixture under ``<data_dir>/VOCdevkit<year>/VOC<year>``; returns that path."""
    root = data_dir / f'VOCdevkit{year}' / f'VOC{year}'
    for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, objs in objects.items():
        width, height = SIZES[image_id]
        cv2.imwrite(str(root / 'JPEGImages' / f'{image_id}.jpg'), np.zeros((height, width, 3), np.uint8))
        (root / 'Annotations' / f'{image_id}.xml').write_text(xml_text(width, height, objs))
    (root / 'ImageSets' / 'Main' / f'{split}.txt').write_text(''.join(f'{i}\n' for i in objects))
    return root


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A fresh ``cfg.DATA_DIR`` holding the fixture."""
    monkeypatch.setattr(cfg, 'DATA_DIR', str(tmp_path))
    make_voc(tmp_path)
    return tmp_path


def load(**kwargs):
    return pascal_voc('test', '2007', classes=CLASSES, **kwargs)


def test_loader_reads_1_based_xml_into_0_based_roidb(data_dir):
    d = load()
    assert (d.name, d.num_classes, d.image_index) == ('voc_2007_test', 3, ['000001', '000002'])
    r = d.roidb
    np.testing.assert_array_equal(r[0]['boxes'], [[0, 0, 19, 9]])  # the difficult cat is left out
    np.testing.assert_array_equal(r[0]['gt_classes'], [2])
    np.testing.assert_array_equal(r[1]['boxes'], [[9, 4, 29, 19], [1, 1, 5, 5]])
    np.testing.assert_array_equal(r[1]['gt_classes'], [2, 1])
    np.testing.assert_array_equal(r[1]['gt_overlaps'], [[0, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(r[1]['seg_areas'], [21 * 16, 25])
    assert (r[1]['width'], r[1]['height'], r[1]['flipped']) == (30, 20, False)
    assert r[1]['image'] == str(data_dir / 'VOCdevkit2007/VOC2007/JPEGImages/000002.jpg')
    assert (r[1]['boxes'].dtype, r[1]['gt_classes'].dtype, r[1]['gt_overlaps'].dtype) == \
        (np.float32, np.int32, np.float32)


def test_difficult_objects_kept_with_use_difficult(data_dir):
    r = load(use_difficult=True).roidb
    np.testing.assert_array_equal(r[0]['boxes'], [[0, 0, 19, 9], [4, 1, 7, 3]])
    np.testing.assert_array_equal(r[0]['gt_classes'], [2, 1])


def test_annotations_keep_difficult_flags(data_dir):
    ann = load().annotations()
    np.testing.assert_array_equal(ann['difficult'], [False, True, False, False])
    np.testing.assert_array_equal(ann['offsets'], [0, 2, 4])
    np.testing.assert_array_equal(ann['widths'], [20, 30])


def test_flipping_loaded_boxes_that_touch_x0_and_w_minus_1(data_dir):
    d = load()
    d.append_flipped_images()
    assert d.num_images == 4 and d.image_index[2:] == ['000001', '000002']
    np.testing.assert_array_equal(d.roidb[2]['boxes'], [[0, 0, 19, 9]])
    # W = 30: dog [9, 29] -> [0, 20]; cat [1, 5] -> [24, 28]
    np.testing.assert_array_equal(d.roidb[3]['boxes'], [[0, 4, 20, 19], [24, 1, 28, 5]])
    assert d.roidb[3]['flipped'] and d.image_path_at(3) == d.image_path_at(1)


@pytest.mark.parametrize('objects, message', [
    ([('dog', (10, 5, 30, 20), 0), ('cat', ('abc', 2, 6, 6), 0)],
     r"000002.xml: object 1 \('cat'\): field <bndbox/xmin> is not a number: 'abc'"),
    ([('dog', (10, 5, 30, 20), 0), ('cow', (2, 2, 6, 6), 0)],
     r"000002.xml: object 1 \('cow'\): unknown class name 'cow' \(known: cat, dog\)"),
    ([('dog', (10, 5, 31, 20), 0)],
     r"000002.xml: object 0 \('dog'\): box outside the image \(xmin=10 ymin=5 xmax=31 ymax=20; "
     r"1-based coordinates must lie in 1..30 x 1..20\)"),
    ([('dog', (0, 5, 30, 20), 0)], r"000002.xml: object 0 \('dog'\): box outside the image \(xmin=0 "),
    ([('dog', (7, 5, 6, 20), 0)],
     r"000002.xml: object 0 \('dog'\): inverted box \(xmin=7 ymin=5 xmax=6 ymax=20: xmax < xmin or "
     r"ymax < ymin\)"),
    ([('dog', (7, 9, 9, 8), 0)], r"000002.xml: object 0 \('dog'\): inverted box"),
    ([('dog', (10, 5, 30, 20), 2)],
     r"000002.xml: object 0 \('dog'\): field <difficult> must be 0 or 1, got '2'"),
])
def test_bad_objects_raise_naming_file_object_and_values(tmp_path, monkeypatch, objects, message):
    monkeypatch.setattr(cfg, 'DATA_DIR', str(tmp_path))
    make_voc(tmp_path, objects={'000001': OBJECTS['000001'], '000002': objects})
    with pytest.raises(BadAnnotationError, match=message):
        load().roidb


def test_missing_field_and_broken_xml_name_the_file(data_dir):
    ann_dir = data_dir / 'VOCdevkit2007/VOC2007/Annotations'
    (ann_dir / '000002.xml').write_text(xml_text(30, 20, OBJECTS['000002']).replace('<ymax>20</ymax>', ''))
    with pytest.raises(BadAnnotationError,
                       match=r"000002.xml: object 0 \('dog'\): missing field <bndbox/ymax>"):
        load().roidb
    (ann_dir / '000002.xml').write_text('<annotation><size><height>20</height></size></annotation>')
    with pytest.raises(BadAnnotationError, match=r'000002.xml: image size: missing field <size/width>'):
        load().roidb
    (ann_dir / '000002.xml').write_text('<annotation><size>')
    with pytest.raises(BadAnnotationError, match=r'000002.xml: not valid XML'):
        load().roidb


def test_clip_and_skip_policies_warn_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(cfg, 'DATA_DIR', str(tmp_path))
    make_voc(tmp_path, objects={'000001': OBJECTS['000001'],
                                '000002': [('dog', (0, 5, 33, 20), 0), ('cow', (2, 2, 6, 6), 0),
                                           ('cat', (2, 2, 6, 6), 0)]})
    with pytest.warns(UserWarning) as record:
        clipped = load(on_bad_box='clip').roidb
    assert [str(w.message).split('.xml: ')[1] for w in record] == [
        "object 0 ('dog'): box outside the image (xmin=0 ymin=5 xmax=33 ymax=20; 1-based coordinates "
        "must lie in 1..30 x 1..20); clipped to 1-based [1.0, 5.0, 30.0, 20.0]",
        "object 1 ('cow'): unknown class name 'cow' (known: cat, dog); object skipped"]
    np.testing.assert_array_equal(clipped[1]['boxes'], [[0, 4, 29, 19], [1, 1, 5, 5]])
    with pytest.warns(UserWarning) as again:  # from the cache: still reported
        load(on_bad_box='clip').roidb
    assert [str(w.message) for w in again] == [str(w.message) for w in record]
    with pytest.warns(UserWarning) as record:
        skipped = load(on_bad_box='skip').roidb
    assert [str(w.message).rsplit('; ', 1)[1] for w in record] == ['object skipped', 'object skipped']
    np.testing.assert_array_equal(skipped[1]['boxes'], [[1, 1, 5, 5]])
    with pytest.raises(ValueError, match="on_bad_box must be one of"):
        load(on_bad_box='ignore')


def test_cache_is_npz_reused_and_rebuilt_when_an_annotation_changes(data_dir, monkeypatch):
    np.testing.assert_array_equal(load().roidb[1]['boxes'][0], [9, 4, 29, 19])
    assert os.listdir(data_dir / 'cache') == ['voc_2007_test_gt_annotations.npz']

    def no_parsing(*args):
        raise AssertionError('annotations were parsed although the cache is valid')

    monkeypatch.setattr(pascal_voc_module, 'parse_annotation', no_parsing)
    np.testing.assert_array_equal(load().roidb[1]['boxes'][0], [9, 4, 29, 19])  # served from the cache
    monkeypatch.undo()
    monkeypatch.setattr(cfg, 'DATA_DIR', str(data_dir))

    edited = [('dog', (11, 5, 30, 20), 0), ('cat', (2, 2, 6, 6), 0)]
    (data_dir / 'VOCdevkit2007/VOC2007/Annotations/000002.xml').write_text(xml_text(30, 20, edited))
    np.testing.assert_array_equal(load().roidb[1]['boxes'][0], [10, 4, 29, 19])


@pytest.mark.parametrize('name, path, archive', [
    ('voc_2007_trainval', 'VOCdevkit2007/VOC2007/ImageSets/Main/trainval.txt', 'VOCtrainval_06-Nov-2007.tar'),
    ('voc_2007_test', 'VOCdevkit2007/VOC2007/ImageSets/Main/test.txt', 'VOCtest_06-Nov-2007.tar'),
    ('voc_2012_trainval', 'VOCdevkit2012/VOC2012/ImageSets/Main/trainval.txt', 'VOCtrainval_11-May-2012.tar'),
])
def test_missing_voc_names_the_path_and_the_archive(tmp_path, monkeypatch, name, path, archive):
    monkeypatch.setattr(cfg, 'DATA_DIR', str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as err:
        get_imdb(name)
    text = str(err.value)
    assert f'image set file not found: {tmp_path / path}' in text
    assert archive in text
    devkit = path.split('/')[0]
    assert f'ln -s /path/to/VOCdevkit {tmp_path / devkit}' in text and 'data/README.md' in text


def test_missing_image_names_its_path(data_dir):
    os.remove(data_dir / 'VOCdevkit2007/VOC2007/JPEGImages/000002.jpg')
    with pytest.raises(DatasetNotFoundError, match=r'image not found: .*VOC2007/JPEGImages/000002.jpg'):
        load().image_path_at(1)


def test_metric_defaults_by_year_and_is_overridable(tmp_path, monkeypatch):
    monkeypatch.setattr(cfg, 'DATA_DIR', str(tmp_path))
    make_voc(tmp_path, year='2012', split='val')
    assert pascal_voc('val', '2012', classes=CLASSES).config['use_07_metric'] is False
    assert pascal_voc('val', '2012', classes=CLASSES, use_07_metric=True).config['use_07_metric'] is True
    make_voc(tmp_path)
    assert load().config['use_07_metric'] is True


def detections():
    """all_boxes[class][image] (0-based): dog hits both; cat: a hit on the difficult cat (ignored, 0.95),
    a false positive (0.7), a hit (0.6) -> cat rec 0, 0, 1 / prec 0, 0, 1/2 -> AP 0.5; dog AP 1."""
    empty = np.zeros((0, 5), np.float32)
    cat = [np.array([[4, 1, 7, 3, 0.95], [10, 5, 15, 8, 0.7]], np.float32),
           np.array([[1, 1, 5, 5, 0.6]], np.float32)]
    dog = [np.array([[0, 0, 19, 9, 0.9]], np.float32), np.array([[9, 4, 29, 19, 0.8]], np.float32)]
    return [[empty, empty], cat, dog]


def test_evaluate_detections_writes_results_and_prints_the_table(data_dir, tmp_path, capsys):
    out = tmp_path / 'results'
    mean_ap = load().evaluate_detections(detections(), str(out))
    assert mean_ap == 0.75
    assert capsys.readouterr().out == (
        'AP for voc_2007_test (VOC07 11-point metric, IoU > 0.5):\n'
        '  cat  0.5000\n'
        '  dog  1.0000\n'
        '  mAP  0.7500\n')
    assert (out / 'comp4_det_test_cat.txt').read_text() == (
        '000001 0.950 5.0 2.0 8.0 4.0\n'
        '000001 0.700 11.0 6.0 16.0 9.0\n'
        '000002 0.600 2.0 2.0 6.0 6.0\n')
    summary = json.loads((out / 'voc_2007_test_eval.json').read_text())
    assert summary == {'imdb': 'voc_2007_test', 'metric': 'VOC07 11-point', 'iou_thresh': 0.5,
                       'num_images': 2, 'ap': {'cat': 0.5, 'dog': 1.0}, 'mAP': 0.75}
    with np.load(out / 'cat_pr.npz', allow_pickle=False) as pr:
        np.testing.assert_array_equal(pr['rec'], [0, 0, 1])
        np.testing.assert_array_equal(pr['prec'], [0, 0, 0.5])


def test_evaluate_detections_checks_all_boxes_and_refuses_flipped(data_dir, tmp_path):
    d = load()
    with pytest.raises(ValueError, match=r'all_boxes has 2 classes, expected 3'):
        d.evaluate_detections(detections()[:2], str(tmp_path / 'r'))
    bad = detections()
    bad[1][0] = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r'all_boxes\[1\]\[0\] must be N x 5'):
        d.evaluate_detections(bad, str(tmp_path / 'r'))
    d.append_flipped_images()
    with pytest.raises(RuntimeError, match='flipped'):
        d.evaluate_detections(detections(), str(tmp_path / 'r'))


def test_annotation_xml_writes_1_based_and_parses_back(tmp_path):
    path = tmp_path / 'x.xml'
    objects = [{'name': 'dog', 'box': [0, 4, 29, 19], 'difficult': True}]
    path.write_text(annotation_xml('x.jpg', 30, 20, objects, 'SET'))
    assert '<xmin>1</xmin>' in path.read_text() and '<xmax>30</xmax>' in path.read_text()
    parsed = parse_annotation(str(path), {'cat': 1, 'dog': 2})
    np.testing.assert_array_equal(parsed['boxes'], [[0, 4, 29, 19]])
    assert (parsed['width'], parsed['height'], parsed['difficult'].tolist()) == (30, 20, [True])


def test_write_comp4_file_skips_empty_images(tmp_path):
    path = tmp_path / 'c.txt'
    write_comp4_file(str(path), ['a', 'b'], [[], np.array([[0, 1, 2, 3, 0.12345]])])
    assert path.read_text() == 'b 0.123 1.0 2.0 3.0 4.0\n'


def test_custom_dataset_without_year_needs_its_location_and_name(data_dir):
    with pytest.raises(ValueError, match='without a year needs devkit_path, dataset_dir and name'):
        pascal_voc('test', None, classes=CLASSES)
    d = pascal_voc('test', None, devkit_path=str(data_dir / 'VOCdevkit2007'), dataset_dir='VOC2007',
                   name='mine_test', classes=CLASSES)
    assert (d.name, d.num_images, d.config['use_07_metric']) == ('mine_test', 2, True)


def test_image_set_without_annotations_writes_the_server_submission(tmp_path, monkeypatch, capsys):
    import tarfile
    monkeypatch.setattr(cfg, 'DATA_DIR', str(tmp_path))
    root = make_voc(tmp_path, year='2012', split='test')
    for xml in (root / 'Annotations').iterdir():
        xml.unlink()
    d = get_imdb('voc_2012_test')
    assert not d.has_annotations
    roidb = d.gt_roidb()
    assert [(r['width'], r['height'], len(r['boxes'])) for r in roidb] == [(20, 10, 0), (30, 20, 0)]
    all_boxes = [[np.zeros((0, 5), np.float32)] * 2 for _ in d.classes]
    all_boxes[d.classes.index('dog')][1] = np.array([[9, 4, 29, 19, 0.75]], np.float32)
    out = tmp_path / 'out'
    assert d.evaluate_detections(all_boxes, str(out)) is None
    assert 'evaluation server' in capsys.readouterr().out
    with tarfile.open(out / 'voc_2012_test_comp4_results.tar.gz') as tar:
        names = sorted(tar.getnames())
        dog = tar.extractfile('results/VOC2012/Main/comp4_det_test_dog.txt').read().decode()
    assert 'results/VOC2012/Main/comp4_det_test_aeroplane.txt' in names and len(
        [n for n in names if n.endswith('.txt')]) == 20
    assert dog == '000002 0.750 10.0 5.0 30.0 20.0\n'  # 1-based, as the devkit writes


# ---------------------------------------------------------------------------------------------------------
# Bad input: image ids, image files, caches.
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('lines, line, message', [
    (['000001', '../000002'], 2, "image id '../000002' contains a path separator"),
    (['/etc/passwd'], 1, "image id '/etc/passwd' contains a path separator"),
    (['000001', '', '..'], 3, "image id '..' is a relative directory name"),
    (['000001 1'], 1, "image id '000001 1' contains whitespace"),
    (['000001', '000002', '000001'], 3, "image id '000001' repeats line 1"),
    (['000001', 'a\x07b'], 2, 'contains control characters'),
])
def test_bad_image_ids_name_the_file_and_line(data_dir, lines, line, message):
    image_set = data_dir / 'VOCdevkit2007/VOC2007/ImageSets/Main/test.txt'
    image_set.write_text(''.join(f'{x}\n' for x in lines))
    with pytest.raises(pascal_voc_module.BadImageSetError) as err:
        load()
    assert str(err.value).startswith(f'{image_set}:{line}: ')
    assert message in str(err.value)


def test_an_empty_image_set_is_an_error(data_dir):
    image_set = data_dir / 'VOCdevkit2007/VOC2007/ImageSets/Main/test.txt'
    image_set.write_text('\n  \n')
    with pytest.raises(pascal_voc_module.BadImageSetError, match=f'{image_set}: the image set is empty'):
        load()


def test_image_size_must_match_the_annotation(data_dir):
    # The image on disk is 30 x 20; the annotation now says 20 x 30.
    (data_dir / 'VOCdevkit2007/VOC2007/Annotations/000002.xml').write_text(
        xml_text(20, 30, [('dog', (10, 5, 20, 20), 0)]))
    with pytest.raises(BadImageError, match=r'000002.jpg is 30 x 20 pixels but its annotation .*000002.xml '
                                            r'says <size> 20 x 30'):
        load().roidb


def exif_orientation_segment(orientation):
    """An APP1 EXIF segment holding only the orientation tag (0x0112, SHORT)."""
    tiff = b'MM\x00\x2a' + struct.pack('>I', 8) + struct.pack('>H', 1) \
        + struct.pack('>HHIHH', 0x0112, 3, 1, orientation, 0) + struct.pack('>I', 0)
    payload = b'Exif\x00\x00' + tiff
    return b'\xff\xe1' + struct.pack('>H', len(payload) + 2) + payload


def test_rotated_exif_jpeg_counts_with_its_stored_size(data_dir):
    path = data_dir / 'VOCdevkit2007/VOC2007/JPEGImages/000002.jpg'
    data = path.read_bytes()
    path.write_bytes(data[:2] + exif_orientation_segment(6) + data[2:])
    assert cv2.imread(str(path)).shape[:2] == (30, 20)  # OpenCV's default would turn it
    assert load().roidb[1]['width'] == 30  # stored 30 x 20, as annotated: accepted


def test_a_corrupt_cache_is_rebuilt_with_a_warning(data_dir):
    load().roidb
    cache = data_dir / 'cache' / 'voc_2007_test_gt_annotations.npz'
    data = cache.read_bytes()
    cache.write_bytes(data[:len(data) // 2])
    with pytest.warns(UserWarning, match=f'{cache}: corrupt annotation cache .*rebuilding it'):
        roidb = load().roidb
    np.testing.assert_array_equal(roidb[1]['boxes'][0], [9, 4, 29, 19])
    with np.load(cache) as rebuilt:
        assert 'key' in rebuilt.files


def test_test_annotations_are_checked_before_any_detection(data_dir):
    from fast_rcnn.test import test_net
    objects = dict(OBJECTS, **{'000002': [('dog', (10, 5, 31, 20), 0)]})  # xmax beyond the 30-px width
    make_voc(data_dir, objects=objects)
    # No net at all: the test must stop on the annotation before it would use one.
    with pytest.raises(BadAnnotationError, match='000002.xml: object 0 .*box outside the image'):
        test_net(None, load())
