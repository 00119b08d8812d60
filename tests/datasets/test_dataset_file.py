"""datasets.dataset_file and the factory: dataset files, their registration, split rule, class inference,
the format registry, and loading the exporter quirks of tests/datasets/voc_exports.py."""

import os.path as osp
import warnings

import numpy as np
import pytest
import voc_exports  # tests/datasets, on the path via tests/conftest.py

from datasets import dataset_file
from datasets.dataset_file import DatasetFileError, load_dataset_file, rule_split
from datasets.factory import UnknownImdbError, canonical_imdb_name, get_imdb, list_imdbs, resolve_imdb_name
from datasets.pascal_voc import VOC_CLASSES, BadAnnotationError, DatasetNotFoundError
from fast_rcnn.config import cfg



@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    """A fresh ``cfg.DATA_DIR`` (the caches go there)."""
    monkeypatch.setattr(cfg, 'DATA_DIR', str(tmp_path / 'data'))
    return tmp_path / 'data'


def load_roidb(name):
    """``(imdb, roidb)`` of ``name``, warnings recorded (returned third) instead of shown."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        imdb = get_imdb(name)
        roidb = imdb.roidb
    return imdb, roidb, [str(w.message) for w in caught]


def test_builtin_files_keep_the_names_and_classes():
    assert list_imdbs() == ['coco_2014_minival', 'coco_2014_train', 'coco_2014_val',
                            'coco_2014_valminusminival', 'coco_2015_test', 'coco_2015_test-dev',
                            'synth_coco_test', 'synth_coco_trainval',
                            'synth_mini_test', 'synth_mini_trainval', 'synth_test', 'synth_trainval',
                            'voc_2007_test', 'voc_2007_train', 'voc_2007_trainval', 'voc_2007_val',
                            'voc_2012_test', 'voc_2012_train', 'voc_2012_trainval', 'voc_2012_val']
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[1] == 'aeroplane' and VOC_CLASSES[-1] == 'tvmonitor'
    voc_2012 = load_dataset_file(osp.join(dataset_file.DATASETS_DIR, 'voc_2012.yml'))
    assert ('__background__',) + voc_2012['classes'] == VOC_CLASSES and voc_2012['metric'] == 'area'


def test_a_file_in_the_datasets_folder_is_listed_and_resolved(tmp_path):
    (tmp_path / 'fruit.yml').write_text('root: /somewhere\nclasses: [apple]\nsplits: [train, val]\n')
    assert list_imdbs(str(tmp_path)) == ['fruit_train', 'fruit_val']
    spec, split = resolve_imdb_name('fruit_val', str(tmp_path))
    assert (spec['name'], spec['root'], spec['classes'], split) == ('fruit', '/somewhere', ('apple',), 'val')
    spec, split = resolve_imdb_name(f'{tmp_path}/fruit.yml:train', str(tmp_path))
    assert (spec['name'], split) == ('fruit', 'train')
    with pytest.raises(UnknownImdbError, match=r"unknown imdb 'fruit_test'; known: fruit_train, fruit_val "):
        resolve_imdb_name('fruit_test', str(tmp_path))
    assert canonical_imdb_name(f'voc_2007_trainval+{tmp_path}/fruit.yml:val') == 'voc_2007_trainval+fruit_val'


@pytest.mark.parametrize('text, message', [
    ('classes: [a]\n', 'key root: the dataset folder is required'),
    ('root: x\ncolour: red\n', "unknown key 'colour'; known: root, format, classes"),
    ('root: x\nmetric: map\n', "key metric: 'map' is not one of voc07, area"),
    ('root: x\ncoordinates: 2-based\n', "key coordinates: '2-based' is not one of 1-based, 0-based, auto"),
    ('root: x\nclasses: [a, a]\n', 'key classes: names must be unique'),
    ('root: x\nsplit: {test: 0.2}\nsplits: [test]\n',
     r'key split: give split files \(splits\) or a split rule'),
    ('root: x\nsplit: {test: 0.7, val: 0.4}\n', r'key split: fractions must lie in \(0, 1\) and sum below 1'),
    ('root: x\nimage_ext: jpg\n', 'key image_ext: expected an extension or a list of them, each starting'),
    ('root: x\nmax_images: {train: 4}\n', 'key max_images: expected split: positive count, splits being '
                                          'trainval, test'),
    ('root: x\nclasses: nosuch\n', 'key classes: names dataset file .*nosuch.yml, which does not exist'),
    ('root: [x\n', 'invalid YAML'),
])
def test_bad_dataset_files_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / 'bad.yml'
    path.write_text(text)
    with pytest.raises(DatasetFileError, match=f'dataset file {path}: .*{message}'):
        load_dataset_file(str(path))


def test_unknown_format_lists_the_known_ones_and_a_format_can_register(tmp_path, monkeypatch):
    path = tmp_path / 'c.yml'
    path.write_text('root: x\nformat: kitti\n')
    with pytest.raises(DatasetFileError, match=r"key format: unknown format 'kitti'; known: coco, voc$"):
        get_imdb(f'{path}:test')
    calls = []
    monkeypatch.setitem(dataset_file.FORMATS, 'kitti', lambda spec, split, **kw: calls.append((split, kw)))
    get_imdb(f'{path}:test')
    assert calls[0][0] == 'test' and sorted(calls[0][1]) == ['cache_dir', 'data_dir', 'use_difficult']


def test_split_rule_is_a_fixed_hash_order():
    ids = list('abcdefghij')
    assert rule_split(ids, {'test': 0.3, 'val': 0.2}, 1) == {
        'trainval': ['b', 'c', 'e', 'f', 'h'], 'test': ['d', 'g', 'i'], 'val': ['a', 'j']}
    assert rule_split(ids, {'test': 0.3}, 2) == {'trainval': ['a', 'b', 'd', 'f', 'g', 'i', 'j'],
                                                 'test': ['c', 'e', 'h']}
    # another image joins: nobody changes split
    assert rule_split(ids + ['k'], {'test': 0.3}, 2)['test'] == ['c', 'e', 'h']


def test_quirks_load_by_rule(tmp_path):
    yml = voc_exports.write_quirks_dataset(tmp_path / 'q')
    imdb, roidb, messages = load_roidb(f'{yml}:trainval')
    assert imdb.name == 'quirks_trainval' and imdb.classes == ('__background__', 'apple', 'pear')
    assert imdb.image_index == ['a01', 'a03', 'a05', 'neg1']
    assert [osp.basename(r['image']) for r in roidb] == ['a01.jpg', 'a03.jpeg', 'photo_5.jpg', 'neg1.jpg']
    # 0-based: written coordinates kept; the pear reaching width 40 / height 30 is clipped to 39 / 29
    np.testing.assert_array_equal(roidb[0]['boxes'], [[0, 0, 10, 10], [20, 5, 39, 29]])
    np.testing.assert_array_equal(roidb[0]['gt_classes'], [1, 2])
    np.testing.assert_array_equal(roidb[1]['boxes'], [[1, 2, 30, 20]])  # no <difficult>/<truncated>/<pose>
    np.testing.assert_array_equal(roidb[2]['boxes'], [[2, 2, 9, 9]])
    assert roidb[3]['boxes'].shape == (0, 4) and (roidb[3]['width'], roidb[3]['height']) == (40, 30)
    assert messages == [f'quirks_trainval: 1 boxes passed the image border by at most 1 px and were clipped '
                        f'(first: {tmp_path}/q/Annotations/a01.xml)']
    test, test_roidb, _ = load_roidb(f'{yml}:test')
    assert test.image_index == ['a02', 'a04']
    # no <size>: read from the image header; float coordinates kept as floats
    assert (test_roidb[0]['width'], test_roidb[0]['height']) == (40, 30)
    np.testing.assert_array_equal(test_roidb[0]['boxes'], [[5.0, 6.5, 20.5, 25.0]])
    assert test_roidb[1]['boxes'].shape == (0, 4)  # its only object is difficult
    assert (test_roidb[1]['width'], test_roidb[1]['height']) == (32, 24)  # the PNG's header


def test_class_inference_prints_and_appends_a_suggestion_once(tmp_path, capsys):
    yml = voc_exports.write_quirks_dataset(tmp_path / 'q')
    original = yml.read_text()
    get_imdb(f'{yml}:trainval')
    out = capsys.readouterr().out
    assert out == (f'quirks: no classes in {yml}; found 2 in the annotations: apple, pear (suggestion '
                   'appended to the file)\n'
                   f'quirks: coordinates auto: 0-based (1 of 6 boxes have xmin or ymin below 1 (first: '
                   f'{tmp_path}/q/Annotations/a01.xml))\n')
    suggestion = ('# classes found in the annotations (uncomment to fix their order):\n'
                  '# classes: [apple, pear]\n')
    assert yml.read_text() == original + suggestion
    get_imdb(f'{yml}:test')
    assert yml.read_text() == original + suggestion


def test_class_names_differing_only_in_case_are_never_merged(tmp_path):
    yml = voc_exports.write_quirks_dataset(tmp_path / 'q')
    ann = tmp_path / 'q' / 'Annotations' / 'a03.xml'
    ann.write_text(ann.read_text().replace('<name>pear</name>', '<name>Pear </name>'))
    with pytest.raises(DatasetFileError, match=r"class names differ only in case or surrounding spaces: "
                                               r"'Pear ' in .*a03.xml, 'pear' in .*"):
        get_imdb(f'{yml}:test')
    with open(yml, 'a') as f:
        f.write('classes: [apple, pear]\n')
    with pytest.raises(BadAnnotationError,
                       match=r"a03.xml: object 0 \('Pear '\): unknown class name 'Pear ' "
                             r"\(known: apple, pear\); it differs from class 'pear' only in case or "
                             r"surrounding spaces: correct the annotation, or list"):
        load_roidb(f'{yml}:trainval')


def test_coordinates_auto_finds_1_based_and_explicit_bases_apply(tmp_path, capsys):
    yml = voc_exports.write_clean_dataset(tmp_path / 'c', 3)
    with open(yml, 'a') as f:
        f.write('coordinates: auto\n')
    imdb, roidb, _ = load_roidb(f'{yml}:trainval')
    assert ('clean: coordinates auto: 1-based (none of 5 boxes has xmin or ymin below 1)'
            in capsys.readouterr().out)
    yml.write_text(yml.read_text().replace('coordinates: auto', 'coordinates: 0-based'))
    _, shifted, _ = load_roidb(f'{yml}:trainval')
    np.testing.assert_array_equal(shifted[0]['boxes'], roidb[0]['boxes'] + 1)


def test_split_files_with_extensions_and_missing_annotations(tmp_path):
    yml = voc_exports.write_clean_dataset(tmp_path / 'c', 3)
    split_dir = tmp_path / 'c' / 'lists'
    split_dir.mkdir()
    (split_dir / 'train.txt').write_text('img000.jpg\nimg001.xml\nimg002\n')
    (split_dir / 'val.txt').write_text('img000\nnoxml\n')
    (tmp_path / 'c' / 'JPEGImages' / 'noxml.jpg').write_bytes(
        (tmp_path / 'c' / 'JPEGImages' / 'img000.jpg').read_bytes())
    yml.write_text(f'root: {tmp_path / "c"}\nclasses: [apple, pear]\n'
                   'splits: {train: lists/train.txt, val: lists/val.txt}\n')
    assert get_imdb(f'{yml}:train').image_index == ['img000', 'img001', 'img002']
    with pytest.raises(DatasetNotFoundError, match=r'clean_val: annotation file not found: .*noxml.xml'):
        get_imdb(f'{yml}:val').roidb
    with open(yml, 'a') as f:
        f.write('negatives: true\n')
    _, roidb, _ = load_roidb(f'{yml}:val')
    assert roidb[1]['boxes'].shape == (0, 4) and roidb[1]['width'] == 160


def test_a_0_based_dataset_evaluates_with_the_boxes_it_trained_on(tmp_path):
    yml = voc_exports.write_quirks_dataset(tmp_path / 'q', 'classes: [apple, pear]\n')
    imdb, roidb, _ = load_roidb(f'{yml}:trainval')
    all_boxes = [[np.zeros((0, 5), np.float32) for _ in roidb] for _ in imdb.classes]
    for i, entry in enumerate(roidb):  # every gt box detected exactly (0-based roidb boxes)
        for box, cls in zip(entry['boxes'], entry['gt_classes']):
            all_boxes[cls][i] = np.vstack([all_boxes[cls][i], np.append(box, 0.9)[None]]).astype(np.float32)
    assert imdb.evaluate_detections(all_boxes, str(tmp_path / 'eval')) == 1.0
