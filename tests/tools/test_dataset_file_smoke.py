"""Smoke runs of a dataset file through the experiment scripts: ``faster_rcnn_end2end.sh cpu TINY <file.yml>``
(20 iterations) and ``faster_rcnn_alt_opt.sh`` (10 per stage) on a generated 9-image dataset (split rule:
6 trainval, 3 test) from the seeded random TINY model (as synth_mini does), checked up front by the
training tool; and the training tool stopping on a dataset with errors."""

import glob
import json
import os.path as osp
import re
import sys

import pytest

pytest.importorskip('caffe')

import voc_exports  # noqa: E402 (tests/datasets, on the path via tests/conftest.py)

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def train_on_clean_dataset(script, iters, tmp_path, exp_dir, run_in_repo, monkeypatch):
    """``experiments/scripts/<script> cpu TINY <a clean 9-image dataset file>`` with ``ITERS=iters`` from the
    seeded random TINY model; asserts it succeeded and returns its CompletedProcess and output folder."""
    yml = voc_exports.write_clean_dataset(tmp_path / 'clean', 9)
    monkeypatch.setenv('ITERS', iters)
    monkeypatch.setenv('INIT_MODEL', 'output/init/TINY.caffemodel')
    proc = run_in_repo([f'experiments/scripts/{script}', 'cpu', 'TINY', str(yml),
                        '--set', 'EXP_DIR', exp_dir], timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc, osp.join(ROOT, 'output', exp_dir)


def test_end2end_script_trains_and_tests_a_dataset_file(tmp_path, exp_dir, run_in_repo, monkeypatch):
    proc, out_dir = train_on_clean_dataset('faster_rcnn_end2end.sh', '20', tmp_path, exp_dir, run_in_repo,
                                           monkeypatch)
    assert 'Dataset clean checked: no errors' in proc.stdout
    (final,) = glob.glob(osp.join(out_dir, 'clean_trainval', 'tiny_faster_rcnn_iter_20.caffemodel'))
    test_dir = osp.join(out_dir, 'clean_test', osp.splitext(osp.basename(final))[0])
    with open(osp.join(test_dir, 'clean_test_eval.json'), encoding='utf-8') as f:
        result = json.load(f)
    assert result['num_images'] == 3 and sorted(result['ap']) == ['apple', 'pear']
    assert 0.0 <= result['mAP'] <= 1.0
    assert float(re.search(r'^mAP = ([0-9.]+)$', proc.stdout, re.M).group(1)) == pytest.approx(
        result['mAP'], abs=1e-4)


def test_alt_opt_script_trains_and_tests_a_dataset_file(tmp_path, exp_dir, run_in_repo, monkeypatch):
    _, out_dir = train_on_clean_dataset('faster_rcnn_alt_opt.sh', '10 10 10 10', tmp_path, exp_dir,
                                        run_in_repo, monkeypatch)
    assert osp.isfile(osp.join(out_dir, 'clean_trainval', 'TINY_faster_rcnn_final.caffemodel'))
    with open(osp.join(out_dir, 'clean_test', 'TINY_faster_rcnn_final', 'clean_test_eval.json'),
              encoding='utf-8') as f:
        assert json.load(f)['num_images'] == 3


def test_training_stops_before_any_work_on_a_dataset_with_errors(tmp_path, run_in_repo):
    yml = voc_exports.write_broken_dataset(tmp_path / 'broken')
    proc = run_in_repo([sys.executable, 'tools/train_net.py', '--cpu', '--solver',
                        'models/synth/TINY/faster_rcnn_end2end/solver.prototxt', '--imdb', f'{yml}:trainval'],
                       timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0] == (f'error: dataset broken ({yml}) has 7 errors that would stop training '
                        f'(tools/check_dataset.py {yml} prints them all):')
    assert lines[1] == (f'  {tmp_path}/broken/ImageSets/Main/trainval.txt:7: id: image id \'b1\' repeats '
                        'line 1 (duplicate id)')
    assert len(lines) == 8 and 'Called with args' not in proc.stdout
