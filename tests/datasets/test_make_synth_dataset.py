"""data/scripts/make_synth_dataset.py and synth_shapes.py: determinism, splits, stamps, the annotation rule;
datasets.factory on the generated data: synth_mini subsets and combined 'a+b' imdbs."""

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets.factory import get_imdb
from datasets.pascal_voc import parse_annotation
from datasets.synth import SYNTH_CLASSES
from fast_rcnn.config import cfg

SCRIPTS = Path(__file__).resolve().parents[2] / 'data' / 'scripts'


def load_script(name):
    """Import ``data/scripts/<name>.py`` (the scripts directory is not a package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def gen():
    sys.path.insert(0, str(SCRIPTS))  # make_synth_dataset imports its helper synth_shapes
    try:
        yield load_script('make_synth_dataset')
    finally:
        sys.path.remove(str(SCRIPTS))


def file_hashes(root):
    """{relative path: sha256} of the generated data files (stats hold a timing, so they are left out)."""
    out = {}
    for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
        for name in sorted(os.listdir(root / sub)):
            out[f'{sub}/{name}'] = hashlib.sha256((root / sub / name).read_bytes()).hexdigest()
    return out


def test_same_seed_gives_identical_files_and_other_seed_differs(gen, tmp_path):
    gen.generate(str(tmp_path / 'a'), seed=7, num_trainval=4, num_test=2)
    gen.generate(str(tmp_path / 'b'), seed=7, num_trainval=4, num_test=2)
    gen.generate(str(tmp_path / 'c'), seed=8, num_trainval=4, num_test=2)
    a, b, c = (file_hashes(tmp_path / x) for x in 'abc')
    assert len(a) == 6 + 6 + 2 and a == b
    assert all(a[k] != c[k] for k in a if k.startswith('JPEGImages'))


def test_splits_are_disjoint_and_cover_the_images(gen, tmp_path):
    stats, generated = gen.generate(str(tmp_path), seed=7, num_trainval=4, num_test=2)
    assert generated
    trainval = (tmp_path / 'ImageSets/Main/trainval.txt').read_text().split()
    test = (tmp_path / 'ImageSets/Main/test.txt').read_text().split()
    assert trainval == ['000001', '000002', '000003', '000004'] and test == ['000005', '000006']
    assert sorted(p.stem for p in (tmp_path / 'JPEGImages').iterdir()) == trainval + test
    assert (stats['trainval']['images'], stats['test']['images']) == (4, 2)


def test_stamp_skips_up_to_date_output_and_reruns_cleanly(gen, tmp_path):
    gen.generate(str(tmp_path), seed=7, num_trainval=3, num_test=2)
    before = (tmp_path / 'JPEGImages/000001.jpg').stat().st_mtime_ns
    stats, generated = gen.generate(str(tmp_path), seed=7, num_trainval=3, num_test=2)
    assert not generated and stats['trainval']['images'] == 3
    assert (tmp_path / 'JPEGImages/000001.jpg').stat().st_mtime_ns == before
    assert json.loads((tmp_path / 'synth_stamp.json').read_text()) == {
        'generator_version': gen.GENERATOR_VERSION, 'seed': 7, 'num_trainval': 3, 'num_test': 2}
    # other counts: regenerated, and the stale 5th image is gone
    _, generated = gen.generate(str(tmp_path), seed=7, num_trainval=2, num_test=2)
    assert generated and sorted(p.stem for p in (tmp_path / 'JPEGImages').iterdir()) == \
        ['000001', '000002', '000003', '000004']
    _, generated = gen.generate(str(tmp_path), seed=7, num_trainval=2, num_test=2, force=True)
    assert generated


def test_generated_annotations_load_and_are_valid(gen, tmp_path):
    gen.generate(str(tmp_path), seed=3, num_trainval=8, num_test=2)
    class_to_ind = {c: i for i, c in enumerate(SYNTH_CLASSES) if i > 0}
    for xml in sorted((tmp_path / 'Annotations').iterdir()):
        ann = parse_annotation(str(xml), class_to_ind)  # raises on any box outside the image
        assert 300 <= ann['width'] <= 500 and 300 <= ann['height'] <= 500
        assert len(ann['boxes']) <= 6


def test_annotation_rule_drops_hidden_and_flags_occluded_or_tiny_objects():
    shapes = load_script('synth_shapes')
    idmap = np.zeros((100, 100), np.int32)
    idmap[0:10, 0:10] = 1     # object 0: 100 of 1000 pixels visible (10 %)   -> dropped
    idmap[20:79, 70:80] = 2   # object 1: 590 of 1000 visible (59 %)          -> difficult
    idmap[60:90, 0:13] = 3    # object 2: fully visible, 13 px wide           -> difficult (tiny)
    idmap[60:90, 20:34] = 4   # object 3: fully visible, 14 x 30              -> normal
    idmap[0:30, 40:60] = 5    # object 4: 600 of 1000 visible (60 %)          -> normal
    objects, dropped = shapes.annotate(idmap, ['star', 'ring', 'cross', 'circle', 'triangle'],
                                       [1000, 1000, 390, 420, 1000])
    assert dropped == 1
    assert objects == [
        {'name': 'ring', 'box': [70, 20, 79, 78], 'difficult': True},
        {'name': 'cross', 'box': [0, 60, 12, 89], 'difficult': True},
        {'name': 'circle', 'box': [20, 60, 33, 89], 'difficult': False},
        {'name': 'triangle', 'box': [40, 0, 59, 29], 'difficult': False},
    ]


@pytest.mark.parametrize('shape', ['circle', 'ring', 'triangle', 'rectangle', 'cross', 'star'])
def test_every_shape_fills_its_box_exactly(shape):
    shapes = load_script('synth_shapes')
    mask = shapes.shape_mask(shape, 37, 23, np.random.default_rng(0))
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (0, 36, 0, 22)


@pytest.fixture(scope='module')
def synth_data_dir(gen, tmp_path_factory):
    """A DATA_DIR with a synthetic dataset slightly larger than the mini subsets (42 + 21 images)."""
    data_dir = tmp_path_factory.mktemp('data')
    gen.generate(str(data_dir / 'SYNTHdevkit' / 'SYNTH'), seed=5, num_trainval=42, num_test=21)
    return data_dir


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError,
                       match=r"unknown imdb 'voc_2012_tset'; known: coco_2014_minival, .*voc_2012_val"):
        get_imdb('voc_2007_trainval+voc_2012_tset')


def test_synth_sets_and_mini_subsets(synth_data_dir, monkeypatch):
    monkeypatch.setattr(cfg, 'DATA_DIR', str(synth_data_dir))
    full, mini = get_imdb('synth_trainval'), get_imdb('synth_mini_trainval')
    assert (full.num_images, mini.num_images, get_imdb('synth_mini_test').num_images) == (42, 40, 20)
    assert mini.image_index == full.image_index[:40]
    assert mini.classes == SYNTH_CLASSES and mini.config['use_07_metric'] is True
    assert mini.image_path_at(0) == str(synth_data_dir / 'SYNTHdevkit/SYNTH/JPEGImages/000001.jpg')


def test_combined_imdb_concatenates_and_refuses_evaluation(synth_data_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(cfg, 'DATA_DIR', str(synth_data_dir))
    combined = get_imdb('synth_mini_trainval+synth_mini_test')
    assert combined.name == 'synth_mini_trainval+synth_mini_test' and combined.num_images == 60
    assert combined.image_index[39:41] == ['000040', '000043']
    trainval = get_imdb('synth_mini_trainval')
    np.testing.assert_array_equal(combined.roidb[5]['boxes'], trainval.roidb[5]['boxes'])
    assert combined.roidb[40]['image'].endswith('/JPEGImages/000043.jpg')
    combined.append_flipped_images()
    assert combined.num_images == 120 and combined.image_path_at(100) == combined.image_path_at(40)
    assert combined.roidb[100]['flipped']
    with pytest.raises(RuntimeError, match=r'synth_mini_trainval\+synth_mini_test is a combined training '
                                           r'set and cannot be evaluated; evaluate its parts '
                                           r'\(synth_mini_trainval, synth_mini_test\) separately'):
        combined.evaluate_detections([], str(tmp_path))
    with pytest.raises(ValueError, match='more than once'):
        get_imdb('synth_test+synth_test')
