"""datasets.dataset_check and tools/check_dataset.py on the generated exports of voc_exports.py."""

import os.path as osp
import subprocess
import sys

import pytest
import voc_exports  # tests/datasets, on the path via tests/conftest.py

from datasets.dataset_check import cached_check, check_dataset, format_report
from datasets.dataset_file import load_dataset_file
from fast_rcnn.config import cfg

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(cfg, 'DATA_DIR', str(tmp_path / 'data'))
    return tmp_path / 'data'


def problems(report, base):
    """``(severity, file relative to base, field, message)`` of every problem."""
    return [(p['severity'], osp.relpath(p['file'], base), p['field'], p['message']) for p in report.problems]


def test_quirks_pass_with_warnings_and_statistics(tmp_path, data_dir):
    yml = voc_exports.write_quirks_dataset(tmp_path / 'q')
    spec = load_dataset_file(str(yml))
    report = check_dataset(spec, str(data_dir))
    assert report.errors == [] and report.classes == ('apple', 'pear')
    assert problems(report, tmp_path / 'q') == [
        ('warning', 'Annotations/a01.xml', "object 1 ('pear')",
         'box passes the border by at most 1 px; clipped'),
        ('warning', 'JPEGImages/photo_5.jpg', 'image',
         "no image named after id 'a05': found through the XML's <filename>"),
        ('warning', 'Annotations/a02.xml', '<size>', 'missing; read from the image: 40 x 30')]
    assert report.splits == {
        'trainval': {'images': 4, 'without_objects': 1, 'negatives': 1, 'objects': {'apple': 1, 'pear': 3},
                     'difficult': 0, 'truncated': 0},
        'test': {'images': 2, 'without_objects': 0, 'negatives': 0, 'objects': {'apple': 2, 'pear': 0},
                 'difficult': 1, 'truncated': 1}}
    text = format_report(report, spec, 32, (60, 100), str(tmp_path / 'hist.png'))
    lines = text.splitlines()
    assert lines[4:7] == ['split       images no objects  objects difficult truncated',
                          'trainval         4          1        4         0         0',
                          'test             2          0        2         1         1']
    # box sides (sqrt of area): 11, 22.4, 23.9, 8 (trainval), 17.9, 10 (test, the PNG); scaled to 60/100:
    # x 2 for 40 x 30 images, x 2.5 for the 32 x 24 PNG -> 22, 44.7, 47.7, 16, 35.9, 25: 3 of 6 below 32
    assert ('box size (sqrt of area, px): min 8, median 14, max 24; 50.0% below the smallest anchor '
            '(32 px at the training scale 60/100)') in lines
    assert lines[-1] == 'OK: nothing would stop training'
    assert osp.getsize(tmp_path / 'hist.png') > 1000


def test_every_error_is_reported_with_file_and_field(tmp_path, data_dir):
    yml = voc_exports.write_broken_dataset(tmp_path / 'b')
    report = check_dataset(load_dataset_file(str(yml)), str(data_dir))
    short = [(s, f, field, m.split(' (')[0].split(';')[0])
             for s, f, field, m in problems(report, tmp_path / 'b')]
    assert short == [
        ('error', 'ImageSets/Main/trainval.txt:7', 'id', "image id 'b1' repeats line 1"),
        ('error', 'Annotations/b2.xml', "object 0 ('Apple')", "unknown class name 'Apple'"),
        ('error', 'Annotations/b3.xml', "object 0 ('pear')", 'box outside the image'),
        ('error', 'Annotations/b4.xml', "object 0 ('pear')", 'inverted box'),
        ('error', 'Annotations/b5.xml', '<size>',
         f'says 50 x 30 but the image {tmp_path}/b/JPEGImages/b5.jpg is 40 x 30'),
        ('error', 'JPEGImages/b6.jpg', 'image', 'unreadable image'),
        ('error', 'Annotations/b7.xml', 'annotation', "id 'b7' of split trainval has no annotation"),
        ('warning', 'Annotations/b8.xml', "object 0 ('pear')", 'box passes the border by at most 1 px')]
    assert "it differs from class 'apple' only in case" in report.problems[1]['message']


def test_an_id_in_two_splits_and_a_missing_split_file(tmp_path, data_dir):
    yml = voc_exports.write_broken_dataset(tmp_path / 'b')
    (tmp_path / 'b/ImageSets/Main/test.txt').write_text('b9\nb8\n')
    yml.write_text(yml.read_text() + 'splits: [trainval, test, val]\n')
    found = problems(check_dataset(load_dataset_file(str(yml)), str(data_dir)), tmp_path / 'b')
    assert ('warning', 'broken.yml', 'splits', "id 'b8' is in split trainval and split test") in found
    assert ('error', 'ImageSets/Main/val.txt', 'splits', 'split file of val not found') in found


def test_only_the_splits_asked_for_are_checked(tmp_path, data_dir):
    yml = voc_exports.write_broken_dataset(tmp_path / 'b')
    yml.write_text(yml.read_text() + 'splits: [trainval, test, val]\n')  # val.txt does not exist
    report = check_dataset(load_dataset_file(str(yml)), str(data_dir), ['test'])
    assert report.problems == [] and list(report.splits) == ['test']
    errors, _ = cached_check(load_dataset_file(str(yml)), str(data_dir), str(data_dir / 'cache'), ['test'])
    assert errors == []


def test_cached_check_is_reused_until_the_content_changes(tmp_path, data_dir):
    yml = voc_exports.write_broken_dataset(tmp_path / 'b')
    spec = load_dataset_file(str(yml))
    cache = str(data_dir / 'cache')
    errors, cached = cached_check(spec, str(data_dir), cache)
    assert (len(errors), cached) == (7, False)
    assert cached_check(spec, str(data_dir), cache) == (errors, True)
    (tmp_path / 'b/ImageSets/Main/trainval.txt').write_text('b1\nb8\n')
    assert cached_check(spec, str(data_dir), cache) == ([], False)


@pytest.mark.parametrize('which, status, last', [
    ('quirks', 0, 'OK: nothing would stop training'),
    ('broken', 1, 'FAILED: fix the errors above before training')])
def test_the_tool_prints_the_report_and_exits_by_it(tmp_path, which, status, last):
    pytest.importorskip('caffe')
    write = voc_exports.write_quirks_dataset if which == 'quirks' else voc_exports.write_broken_dataset
    yml = write(tmp_path / which)
    proc = subprocess.run([sys.executable, 'tools/check_dataset.py', str(yml), '--histogram',
                           str(tmp_path / 'h.png')], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == status, proc.stderr
    assert proc.stdout.splitlines()[0] == f'dataset {which} ({yml}): format voc, root {tmp_path / which}, ' \
                                          'metric voc07'
    assert proc.stdout.splitlines()[-1] == last


def test_the_tool_refuses_a_bad_dataset_file(tmp_path):
    pytest.importorskip('caffe')
    (tmp_path / 'x.yml').write_text('root: x\nmetric: map\n')
    proc = subprocess.run([sys.executable, 'tools/check_dataset.py', str(tmp_path / 'x.yml')], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == (f"error: dataset file {tmp_path}/x.yml: key metric: 'map' is not one of voc07, "
                           "area\n")


def test_the_tool_compares_boxes_with_the_anchors_of_a_net(tmp_path):
    pytest.importorskip('caffe')
    yml = voc_exports.write_quirks_dataset(tmp_path / 'q')
    net = 'models/synth/TINY/faster_rcnn_end2end/train.prototxt'
    proc = subprocess.run([sys.executable, 'tools/check_dataset.py', str(yml), '--histogram',
                           str(tmp_path / 'h.png'), '--def', net, '--cfg', 'experiments/cfgs/synth.yml'],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # TINY's anchors (scales 2, 4, 8, 16): the smallest area's square root is 31 px; at 400/670 the 40 x 30
    # images are scaled by 13.3 and the 32 x 24 PNG by 16.7, so even the 8 px box is above it
    assert ('box size (sqrt of area, px): min 8, median 14, max 24; 0.0% below the smallest anchor (31 px at '
            'the training scale 400/670)') in proc.stdout.splitlines()


def test_a_format_without_checks_is_a_warning(tmp_path, data_dir):
    (tmp_path / 'c.yml').write_text('root: x\nformat: coco\nsplits: {train: a.json}\nimages: {train: img}\n')
    report = check_dataset(load_dataset_file(str(tmp_path / 'c.yml')), str(data_dir))
    assert problems(report, tmp_path) == [
        ('warning', 'c.yml', 'format',
         "no checks for format 'coco' (checks exist for: voc; register one in "
         'datasets.dataset_check.CHECKERS)')]


def test_two_image_files_for_one_id_are_reported(tmp_path, data_dir):
    yml = voc_exports.write_clean_dataset(tmp_path / 'c', 9)
    spec = load_dataset_file(str(yml))
    images = tmp_path / 'c' / 'JPEGImages'
    first = sorted(images.iterdir())[0]
    spec['image_ext'] = ('.jpg', '.png')
    (images / f'{first.stem}.png').write_bytes(first.read_bytes())
    report = check_dataset(spec, str(data_dir))
    assert report.errors == []
    assert problems(report, tmp_path / 'c') == [
        ('warning', f'JPEGImages/{first.name}', 'image',
         f"id '{first.stem}' has 2 image files ({first.name}, {first.stem}.png); {first.name} is used "
         '(the first of image_ext)')]
