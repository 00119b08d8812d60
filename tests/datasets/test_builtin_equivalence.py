"""The built-in sets, now dataset files, load exactly as the code loaders did before them: the same roidbs
and the same annotation caches (names and contents, key included), compared with the loaders of
``REFERENCE_COMMIT`` (the last commit before dataset files) run from ``git show`` in a subprocess."""

import os
import os.path as osp
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from datasets.factory import get_imdb
from fast_rcnn.config import cfg

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
REFERENCE_COMMIT = 'fc6c78eade8db4fa8a1269abd88965087fbd96cf'
NAMES = ('synth_trainval', 'synth_mini_test', 'voc_2007_test', 'voc_2007_trainval', 'voc_2012_val')
ENTRY_ARRAYS = ('boxes', 'gt_classes', 'gt_overlaps', 'seg_areas')

# Writes every roidb of NAMES to an .npz (argv: DATA_DIR, output file, USE_DIFFICULT 0/1).
DUMP = '''
import sys
import numpy as np
import datasets
from fast_rcnn.config import cfg
assert datasets.__file__.startswith(sys.argv[4]), datasets.__file__
cfg.DATA_DIR = sys.argv[1]
cfg.TRAIN.USE_DIFFICULT = sys.argv[3] == '1'
from datasets.factory import get_imdb
out = {}
for name in %r:
    for i, entry in enumerate(get_imdb(name).roidb):
        for key, value in entry.items():
            out[f'{name}/{i}/{key}'] = np.asarray(value)
np.savez(sys.argv[2], **out)
''' % (NAMES,)


def write_voc(root, split_ids, objects):
    """A VOC<year> folder: ``objects[id]`` = [(name, 1-based box, difficult)], 30 x 20 images."""
    for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    for index, objs in objects.items():
        cv2.imwrite(osp.join(root, 'JPEGImages', f'{index}.jpg'), np.zeros((20, 30, 3), np.uint8))
        body = ''.join(f'<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>'
                       f'<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>'
                       for n, b, d in objs)
        with open(osp.join(root, 'Annotations', f'{index}.xml'), 'w') as f:
            f.write(f'<annotation><size><width>30</width><height>20</height></size>{body}</annotation>')
    for split, ids in split_ids.items():
        with open(osp.join(root, 'ImageSets', 'Main', f'{split}.txt'), 'w') as f:
            f.write(''.join(f'{i}\n' for i in ids))


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    """A DATA_DIR with a small synth set (42 + 21 images) and VOC 2007 / 2012 fixtures."""
    data = tmp_path_factory.mktemp('data')
    subprocess.run([sys.executable, osp.join(ROOT, 'data', 'scripts', 'make_synth_dataset.py'), '--out',
                    str(data / 'SYNTHdevkit' / 'SYNTH'), '--seed', '5', '--num-trainval', '42', '--num-test',
                    '21'], check=True, capture_output=True)
    objects = {'000001': [('dog', (1, 1, 30, 20), 0), ('cat', (5, 2, 8.5, 4), 1)],
               '000002': [('person', (10, 5, 30, 20), 0)], '000003': []}
    write_voc(str(data / 'VOCdevkit2007' / 'VOC2007'), {'test': ['000001', '000002'],
                                                        'trainval': ['000003', '000001']}, objects)
    write_voc(str(data / 'VOCdevkit2012' / 'VOC2012'), {'val': ['000002', '000001']}, objects)
    return data


@pytest.fixture(scope='module')
def reference_lib(tmp_path_factory):
    """The reference commit's ``lib/datasets`` in a folder of its own (put before ``lib`` on the path)."""
    lib = tmp_path_factory.mktemp('reference_lib')
    os.makedirs(lib / 'datasets')
    names = subprocess.run(['git', '-C', ROOT, 'ls-tree', '--name-only', REFERENCE_COMMIT, 'lib/datasets/'],
                           check=True, capture_output=True, text=True).stdout.split()
    for path in names:
        text = subprocess.run(['git', '-C', ROOT, 'show', f'{REFERENCE_COMMIT}:{path}'], check=True,
                              capture_output=True, text=True).stdout
        (lib / 'datasets' / osp.basename(path)).write_text(text)
    return lib


def reference_roidbs(data_dir, reference_lib, use_difficult, out):
    env = dict(os.environ, PYTHONPATH=f'{reference_lib}{os.pathsep}{osp.join(ROOT, "lib")}')
    subprocess.run([sys.executable, '-c', DUMP, str(data_dir), str(out), str(int(use_difficult)),
                    str(reference_lib)], check=True, env=env, capture_output=True, cwd=str(reference_lib))
    with np.load(out, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize('use_difficult', [False, True])
def test_builtin_sets_give_the_reference_roidbs_and_caches(data_dir, reference_lib, tmp_path, monkeypatch,
                                                           use_difficult):
    shutil.rmtree(data_dir / 'cache', ignore_errors=True)
    reference = reference_roidbs(data_dir, reference_lib, use_difficult, tmp_path / 'reference.npz')
    reference_cache = tmp_path / 'reference_cache'
    shutil.move(data_dir / 'cache', reference_cache)
    monkeypatch.setattr(cfg, 'DATA_DIR', str(data_dir))
    monkeypatch.setattr(cfg.TRAIN, 'USE_DIFFICULT', use_difficult)
    ours = {}
    for name in NAMES:
        for i, entry in enumerate(get_imdb(name).roidb):
            for key, value in entry.items():
                ours[f'{name}/{i}/{key}'] = np.asarray(value)
    assert sorted(ours) == sorted(reference)
    assert len(reference) == (42 + 20 + 2 + 2 + 2) * 8
    for key, value in reference.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)
        assert ours[key].dtype == value.dtype, key
    names = sorted(p for p in os.listdir(reference_cache) if p.endswith('.npz'))
    assert names == sorted(p for p in os.listdir(data_dir / 'cache') if p.endswith('.npz'))
    assert 'voc_2007_test_gt_annotations.npz' in names and 'synth_mini_test_gt_annotations.npz' in names
    for name in names:
        with np.load(reference_cache / name) as old, np.load(data_dir / 'cache' / name) as new:
            assert sorted(old.files) == sorted(new.files)
            for key in old.files:
                np.testing.assert_array_equal(new[key], old[key], err_msg=f'{name}:{key}')
