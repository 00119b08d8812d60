"""datasets.coco: the COCO-format loader on a generated fixture, the released names, and the COCO view of
the embedded dataset against its VOC view."""

import json
import os.path as osp

import cv2
import numpy as np
import pytest

from datasets.coco import coco, coco_from_files
from datasets.dataset_file import DATASETS_DIR, DatasetFileError, build_imdb, load_dataset_file
from datasets.factory import get_imdb, list_imdbs
from datasets.pascal_voc import BadAnnotationError, DatasetNotFoundError

# Non-contiguous category ids, listed out of order: classes follow the ids (3 -> 1, 7 -> 2, 42 -> 3).
CATEGORIES = [{'id': 42, 'name': 'kite'}, {'id': 3, 'name': 'car'}, {'id': 7, 'name': 'train'}]
IMAGES = [{'id': 11, 'file_name': 'a.jpg', 'width': 64, 'height': 48},
          {'id': 5, 'file_name': 'b.jpg', 'width': 32, 'height': 40},
          # no annotation refers to this one
          {'id': 900, 'file_name': 'c.jpg', 'width': 20, 'height': 20}]
ANNOTATIONS = [
    {'id': 1, 'image_id': 11, 'category_id': 7, 'bbox': [10, 5, 20, 30], 'area': 500.0, 'iscrowd': 0},
    # crowd: kept out of the training roidb
    {'id': 2, 'image_id': 11, 'category_id': 3, 'bbox': [0, 0, 64, 48], 'area': 2000.0, 'iscrowd': 1},
    # reaches past the right and bottom borders: clipped to x2 = 63, y2 = 47
    {'id': 3, 'image_id': 11, 'category_id': 42, 'bbox': [50.5, 40, 30, 30], 'area': 90.0, 'iscrowd': 0},
    # zero area: dropped, as released
    {'id': 4, 'image_id': 5, 'category_id': 3, 'bbox': [1, 1, 4, 4], 'area': 0, 'iscrowd': 0},
    # a box narrower than one pixel: x2 = x1 (max(0, w - 1))
    {'id': 5, 'image_id': 5, 'category_id': 3, 'bbox': [4, 6, 0.5, 10], 'area': 5.0, 'iscrowd': 0},
]


def write_fixture(root, annotations=ANNOTATIONS, images=IMAGES, categories=CATEGORIES):
    """The JSON and the JPEGs (sizes as listed) under ``root``; returns (json path, image folder)."""
    image_dir = root / 'images'
    image_dir.mkdir(exist_ok=True)
    for img in images:
        cv2.imwrite(str(image_dir / img['file_name']), np.zeros((img['height'], img['width'], 3), np.uint8))
    path = root / 'instances.json'
    path.write_text(json.dumps({'images': images, 'annotations': annotations, 'categories': categories}))
    return path, image_dir


def test_fixture_roidb(tmp_path):
    path, image_dir = write_fixture(tmp_path)
    imdb = coco_from_files('fixture', path, image_dir)
    assert imdb.classes == ('__background__', 'car', 'train', 'kite')
    assert imdb.category_ids == [None, 3, 7, 42]
    assert imdb.image_index == ['11', '5', '900'] and imdb.coco_image_ids == [11, 5, 900]
    a, b, c = imdb.roidb
    np.testing.assert_array_equal(a['boxes'], np.array([[10, 5, 29, 34], [50.5, 40, 63, 47]], np.float32))
    np.testing.assert_array_equal(a['gt_classes'], [2, 3])
    np.testing.assert_array_equal(a['seg_areas'], np.array([500, 90], np.float32))
    np.testing.assert_array_equal(a['gt_overlaps'], [[0, 0, 1, 0], [0, 0, 0, 1]])
    assert (a['width'], a['height'], a['image'], a['flipped']) == (64, 48, str(image_dir / 'a.jpg'), False)
    np.testing.assert_array_equal(b['boxes'], np.array([[4, 6, 4, 15]], np.float32))
    np.testing.assert_array_equal(b['gt_classes'], [1])
    assert c['boxes'].shape == (0, 4) and c['gt_classes'].shape == (0,) and c['gt_overlaps'].shape == (0, 4)
    assert c['boxes'].dtype == np.float32 and c['gt_classes'].dtype == np.int32


def test_flipped_images_keep_their_paths(tmp_path):
    imdb = coco_from_files('fixture', *write_fixture(tmp_path))
    imdb.append_flipped_images()
    assert [imdb.image_path_at(i) for i in range(3, 6)] == [imdb.image_path_at(i) for i in range(3)]
    np.testing.assert_array_equal(imdb.roidb[3]['boxes'], [[34, 5, 53, 34], [0, 40, 12.5, 47]])


@pytest.mark.parametrize('change, message', [
    (lambda d: d['annotations'][0].pop('bbox'), "annotations[0]: missing field 'bbox'"),
    (lambda d: d['annotations'][0].update(bbox=[1, 2, 3]), 'annotations[0]: bbox must be 4 finite numbers'),
    (lambda d: d['annotations'][0].update(image_id=12), 'annotations[0]: image_id 12 is not in images'),
    (lambda d: d['annotations'][1].update(category_id=4),
     'annotations[1]: category_id 4 is not in categories'),
    (lambda d: d['annotations'][2].update(iscrowd=2), 'annotations[2]: iscrowd must be 0 or 1'),
    (lambda d: d['images'][1].update(width='32'), "images[1]: field 'width' has the wrong type"),
    (lambda d: d['images'][2].update(id=11), 'images[2]: image id 11 repeats'),
    (lambda d: d['categories'][2].update(id=42), 'categories[2]: category id 42 repeats'),
    (lambda d: d.pop('categories'), "top level: missing field 'categories'"),
])
def test_bad_input_names_file_and_field(tmp_path, change, message):
    path, image_dir = write_fixture(tmp_path)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(BadAnnotationError) as err:
        coco_from_files('fixture', path, image_dir)
    assert str(err.value).startswith(f'{path}: {message}')


def test_not_json(tmp_path):
    path = tmp_path / 'instances.json'
    path.write_text('{"images": [')
    (tmp_path / 'images').mkdir()
    with pytest.raises(BadAnnotationError, match='instances.json: not valid JSON'):
        coco_from_files('fixture', path, tmp_path / 'images')


def test_image_size_mismatch_names_both(tmp_path):
    path, image_dir = write_fixture(tmp_path)
    cv2.imwrite(str(image_dir / 'b.jpg'), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match=r'b.jpg is 10 x 10 pixels but .*instances.json says 32 x 40'):
        coco_from_files('fixture', path, image_dir).roidb


def _released(year, split, data_dir):
    spec = load_dataset_file(osp.join(DATASETS_DIR, f'coco_{year}.yml'))
    return build_imdb(spec, split, data_dir=str(data_dir), cache_dir=str(data_dir), use_difficult=False)


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        _released(2014, 'minival', tmp_path)
    text = str(err.value)
    assert text.startswith(f'coco_2014_minival: annotation file not found: '
                           f'{tmp_path}/coco/annotations/instances_minival2014.json\n')
    assert 'instances_minival2014.json' in text.split('\n', 1)[1] and 'val2014' in text
    (tmp_path / 'coco' / 'annotations').mkdir(parents=True)
    (tmp_path / 'coco' / 'annotations' / 'image_info_test-dev2015.json').write_text('{}')
    with pytest.raises(DatasetNotFoundError, match=r'image folder not found: .*/coco/images/test2015'):
        _released(2015, 'test-dev', tmp_path)


def test_a_coco_dataset_file_reads_any_coco_json(tmp_path):
    path, image_dir = write_fixture(tmp_path)
    spec_path = tmp_path / 'mine.yml'
    spec_path.write_text(f'root: {tmp_path}\nformat: coco\nsplits: {{train: {path.name}}}\n'
                         f'images: {{train: {image_dir.name}}}\n')
    imdb = build_imdb(load_dataset_file(str(spec_path)), 'train', data_dir='/nowhere',
                      cache_dir=str(tmp_path), use_difficult=False)
    direct = coco_from_files('mine_train', path, image_dir)
    assert imdb.name == 'mine_train' and imdb.classes == direct.classes
    for ours, theirs in zip(imdb.roidb, direct.roidb):
        np.testing.assert_array_equal(ours['boxes'], theirs['boxes'])
        np.testing.assert_array_equal(ours['gt_classes'], theirs['gt_classes'])
    # classes come from the JSON; every split needs its image folder
    spec_path.write_text(f'root: {tmp_path}\nformat: coco\nclasses: [a]\nsplits: {{train: {path.name}}}\n'
                         f'images: {{train: {image_dir.name}}}\n')
    with pytest.raises(DatasetFileError, match='key classes: a format coco dataset takes its classes'):
        load_dataset_file(str(spec_path))
    spec_path.write_text(f'root: {tmp_path}\nformat: coco\nsplits: {{train: a.json, val: b.json}}\n'
                         'images: {train: img}\n')
    with pytest.raises(DatasetFileError, match='key images: format coco: expected a mapping split'):
        load_dataset_file(str(spec_path))


def test_released_names_are_registered():
    names = set(list_imdbs())
    assert {'coco_2014_train', 'coco_2014_val', 'coco_2014_minival', 'coco_2014_valminusminival',
            'coco_2015_test', 'coco_2015_test-dev', 'synth_coco_trainval', 'synth_coco_test'} <= names


def test_unannotated_set_writes_server_results(tmp_path):
    path, image_dir = write_fixture(tmp_path)
    data = json.loads(path.read_text())
    del data['annotations']
    path.write_text(json.dumps(data))
    imdb = coco('test-dev', path, image_dir)
    assert not imdb.has_annotations and all(len(entry['boxes']) == 0 for entry in imdb.roidb)
    dets = np.array([[1, 2, 10, 20, 0.9]], np.float32)
    empty = np.zeros((0, 5), np.float32)
    all_boxes = [[]] + [[dets if (k, i) == (2, 1) else empty for i in range(3)] for k in range(1, 4)]
    assert imdb.evaluate_detections(all_boxes, str(tmp_path / 'out')) is None
    results = json.loads((tmp_path / 'out' / 'detections_test-dev_results.json').read_text())
    assert results == [{'image_id': 5, 'category_id': 7, 'bbox': [1.0, 2.0, 10.0, 19.0], 'score': 0.9}]


ROIDB_KEYS = ('image', 'width', 'height', 'boxes', 'gt_classes', 'gt_overlaps', 'flipped', 'seg_areas')


@pytest.mark.parametrize('image_set', ['trainval', 'test'])
def test_coco_and_voc_views_of_synth_give_identical_roidbs(image_set):
    voc = get_imdb(f'synth_{image_set}')
    view = get_imdb(f'synth_coco_{image_set}')
    assert view.classes == voc.classes
    assert view.image_index == [str(int(index)) for index in voc.image_index]
    assert len(view.roidb) == len(voc.roidb) == voc.num_images
    for ours, theirs in zip(view.roidb, voc.roidb):
        assert set(ours) == set(theirs) == set(ROIDB_KEYS)
        for key in ROIDB_KEYS:
            if isinstance(theirs[key], np.ndarray):
                assert ours[key].dtype == theirs[key].dtype, key
                np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f'{theirs["image"]} {key}')
            else:
                assert ours[key] == theirs[key], key


@pytest.fixture(scope='module')
def gen():
    """data/scripts/make_synth_dataset.py, imported from its path (it imports its helper synth_shapes)."""
    import importlib.util
    import sys
    from pathlib import Path
    scripts = Path(__file__).resolve().parents[2] / 'data' / 'scripts'
    sys.path.insert(0, str(scripts))
    try:
        spec = importlib.util.spec_from_file_location('make_synth_dataset', scripts / 'make_synth_dataset.py')
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(scripts))


def _hashes(root):
    """{relative path: sha256} of every file under ``root``."""
    import hashlib
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


def test_synth_coco_json_leaves_the_voc_files_alone(gen, tmp_path):
    gen.generate(str(tmp_path), seed=7, num_trainval=4, num_test=2)
    before = _hashes(tmp_path)
    written = gen.write_coco_views(str(tmp_path))
    assert written == [str(tmp_path / 'annotations' / f'instances_{s}.json') for s in ('trainval', 'test')]
    after = _hashes(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith('annotations/')} == before
    assert gen.write_coco_views(str(tmp_path)) == []  # up to date: nothing rewritten
    assert _hashes(tmp_path) == after
    data = json.loads((tmp_path / 'annotations' / 'instances_test.json').read_text())
    assert [img['id'] for img in data['images']] == [5, 6]
    assert [c['id'] for c in data['categories']] == [1, 2, 3, 4, 5, 6]
    view = coco_from_files('t', tmp_path / 'annotations' / 'instances_test.json', tmp_path / 'JPEGImages')
    voc_boxes = [gen.parse_annotation(str(tmp_path / 'Annotations' / f'{i:06d}.xml'),
                                      {n: k for k, n in enumerate(view.classes) if k > 0}) for i in (5, 6)]
    for entry, voc in zip(view.roidb, voc_boxes):
        keep = ~voc['difficult']
        np.testing.assert_array_equal(entry['boxes'], voc['boxes'][keep])
        np.testing.assert_array_equal(entry['gt_classes'], voc['gt_classes'][keep])
