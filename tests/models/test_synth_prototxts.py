"""The committed TINY nets under models/synth are exactly what their generator writes."""

import glob
import importlib.util
import os.path as osp

import pytest

pytest.importorskip('caffe')  # the TINY generator edits the nets as protobuf messages

SYNTH_DIR = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', 'models', 'synth'))


def test_committed_tiny_nets_match_the_generator():
    spec = importlib.util.spec_from_file_location('synth_make_prototxts',
                                                  osp.join(SYNTH_DIR, 'make_prototxts.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.all_files()
    on_disk = {osp.relpath(p, SYNTH_DIR) for p in glob.glob(osp.join(SYNTH_DIR, '*', '*', '*'))}
    assert on_disk == set(expected)
    for rel, text in expected.items():
        with open(osp.join(SYNTH_DIR, rel), encoding='utf-8') as f:
            assert f.read() == text, f'{rel} is stale: rerun models/synth/make_prototxts.py'
