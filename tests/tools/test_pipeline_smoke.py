"""Smoke tests of the experiment scripts on synth_mini (a few iterations per stage, CPU), and of the tools'
up-front checks for missing inputs."""

import glob
import json
import os.path as osp
import re
import sys

import pytest

pytest.importorskip('caffe')

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def _check_result(proc, exp_dir, train_imdb, test_imdb, model_glob):
    """Common assertions: the script succeeded, the final model exists, the evaluation gives a finite mAP."""
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out_dir = osp.join(ROOT, 'output', exp_dir)
    (final,) = glob.glob(osp.join(out_dir, train_imdb, model_glob))
    test_dir = osp.join(out_dir, test_imdb, osp.splitext(osp.basename(final))[0])
    assert osp.isfile(osp.join(test_dir, 'detections.npz'))
    with open(osp.join(test_dir, f'{test_imdb}_eval.json'), encoding='utf-8') as f:
        result = json.load(f)
    assert 0.0 <= result['mAP'] <= 1.0
    printed = float(re.search(r'^mAP = ([0-9.]+)$', proc.stdout, re.M).group(1))
    assert printed == pytest.approx(result['mAP'], abs=1e-4)
    assert re.search(r'^Wall time of test_net: [0-9.]+ s$', proc.stdout, re.M)
    assert re.search(r'^Total wall time: [0-9.]+ s$', proc.stdout, re.M)
    return out_dir


def test_alt_opt_pipeline_on_synth_mini(exp_dir, run_in_repo):
    proc = run_in_repo(['experiments/scripts/faster_rcnn_alt_opt.sh', 'cpu', 'TINY', 'synth_mini',
                 '--set', 'EXP_DIR', exp_dir])
    out_dir = _check_result(proc, exp_dir, 'synth_mini_trainval', 'synth_mini_test',
                            'TINY_faster_rcnn_final.caffemodel')
    train_dir = osp.join(out_dir, 'synth_mini_trainval')
    # Every stage left its final model and both proposal files exist.
    for name in ('tiny_rpn_stage1_iter_20', 'tiny_fast_rcnn_stage1_iter_20', 'tiny_rpn_stage2_iter_20',
                 'tiny_fast_rcnn_stage2_iter_20'):
        assert osp.isfile(osp.join(train_dir, name + '.caffemodel')), name
    for name in ('tiny_rpn_stage1_iter_20_proposals.npz', 'tiny_rpn_stage2_iter_20_proposals.npz'):
        assert osp.isfile(osp.join(train_dir, name)), name
    with open(osp.join(train_dir, 'TINY_alt_opt_times.json'), encoding='utf-8') as f:
        times = json.load(f)
    assert len(times['stage_seconds']) == 7 and times['max_iters'] == [20, 20, 20, 20]
    assert all(t > 0 for t in times['stage_seconds'].values())


def test_end2end_pipeline_on_synth_mini(exp_dir, run_in_repo):
    proc = run_in_repo(['experiments/scripts/faster_rcnn_end2end.sh', 'cpu', 'TINY', 'synth_mini',
                 '--set', 'EXP_DIR', exp_dir])
    out_dir = _check_result(proc, exp_dir, 'synth_mini_trainval', 'synth_mini_test',
                            'tiny_faster_rcnn_iter_40.caffemodel')
    assert osp.isfile(osp.join(out_dir, 'synth_mini_trainval', 'tiny_faster_rcnn_loss.png'))


def test_missing_imagenet_model_stops_at_once(tmp_path, run_in_repo):
    missing = osp.join(ROOT, 'data', 'imagenet_models', 'NO_SUCH_NET.v2.caffemodel')
    proc = run_in_repo([sys.executable, 'tools/train_faster_rcnn_alt_opt.py', '--cpu', '--net_name', 'ZF',
                 '--weights', missing, '--imdb', 'voc_2007_trainval'], timeout=120)
    assert proc.returncode == 1
    assert f'missing ImageNet model {missing}' in proc.stderr
    assert 'imagenet_models/' in proc.stderr and 'Stage 1' not in proc.stdout


def test_missing_dataset_stops_at_once(tmp_path, run_in_repo):
    from caffe.proto import caffe_pb2
    model = caffe_pb2.NetParameter()
    layer = model.layer.add()
    layer.name = 'conv1'
    layer.blobs.add().shape.dim.extend([2])
    layer.blobs[0].data.extend([0.0, 0.0])
    weights = tmp_path / 'some.caffemodel'  # a valid caffemodel: the dataset is what is missing
    weights.write_bytes(model.SerializeToString())
    proc = run_in_repo([sys.executable, 'tools/train_net.py', '--cpu', '--solver',
                 'models/synth/TINY/faster_rcnn_end2end/solver.prototxt', '--weights', str(weights),
                 '--imdb', 'voc_2007_trainval', '--set', 'DATA_DIR', str(tmp_path)], timeout=120)
    assert proc.returncode == 1
    assert 'voc_2007_trainval' in proc.stderr and 'image set file not found' in proc.stderr
