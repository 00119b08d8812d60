"""Smoke test of the paper-experiments report on synth_mini: every row's machinery runs (a few iterations per
training), the report holds every table, the rows that cannot run here say why, and a rerun recomputes
nothing."""

import json
import os
import os.path as osp
import shutil

import pytest

pytest.importorskip('caffe')

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
# Rows that cannot be computed on the embedded data, by design.
NOT_RUN_HERE = {'t1_ss_rpn_large_300', 't3_voc2012_test'}


def test_paper_report_on_synth_mini(exp_dir, run_in_repo):
    command = ['experiments/scripts/paper_experiments.sh', 'cpu', 'TINY', 'synth_mini',
               '--set', 'EXP_DIR', exp_dir]
    proc = run_in_repo(command, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    root = osp.join(ROOT, 'output', exp_dir, 'paper')
    if (os.cpu_count() or 1) >= 2:  # the six trainings ran concurrently, each child with its thread share
        assert f'6 trainings, {min(6, os.cpu_count())} at a time with' in proc.stdout
        with open(osp.join(root, 'steps', 'end2end_released_ratio.json'), encoding='utf-8') as f:
            assert json.load(f)['threads'] >= 1
    with open(osp.join(root, 'report.json'), encoding='utf-8') as f:
        report = json.load(f)
    rows = report['rows']
    for row, result in rows.items():
        if row in NOT_RUN_HERE:
            assert result['status'] == 'not run' and result['reason'], row
        else:
            assert result['status'] == 'ok' and 0.0 <= result['map'] <= 1.0, (row, result)
            assert set(result['ap']) == {'circle', 'ring', 'triangle', 'rectangle', 'cross', 'star'}
    assert rows['t1_ss_rpn_100']['regions_per_image'] <= 100
    assert rows['t1_ss_rpn_nonms_6k']['regions_per_image'] > 1000
    assert rows['t5_dense_1scale']['regions_per_image'] > 5000  # the anchor grid of a ~400 x 500 image
    assert rows['joint_end2end_released_ratio']['train_iters'] == 23  # round(80 * 70 / 240)
    assert len(report['claims']) == 13 and {c['verdict'] for c in report['claims']} <= {
        'holds', 'does not hold', 'not measured'}
    assert len(report['anchors']) == 12 and sum(a['count'] for a in report['anchors']) > 0
    text = open(osp.join(root, 'report.md'), encoding='utf-8').read()
    for heading in ('## Table 1', '## Table 2', '## Table 3', '## Table 4', '## Table 5', '## Fig. 2',
                    '## Tables 6 / 7', "## The paper's claims"):
        assert heading in text
    assert osp.getsize(osp.join(root, 'fig2_recall.png')) > 0
    assert any(name.startswith('loss_') for name in os.listdir(root))

    # Resumable: everything is recorded, a rerun only rewrites the report.
    again = run_in_repo(command)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert 'starts (' not in again.stdout
    assert 'Every trained row starts from the initial model output/init/TINY.caffemodel.' in text
    # A record trained from another initial model is never reused.
    other = run_in_repo(['.venv/bin/python', 'tools/paper_experiments.py', '--net', 'TINY',
                         '--dataset', 'synth_mini', '--train-imdb', 'synth_mini_trainval',
                         '--test-imdb', 'synth_mini_test', '--models-dir', 'models/synth',
                         '--weights', 'output/init/other.caffemodel', '--cfg', 'experiments/cfgs/synth.yml',
                         '--set', 'EXP_DIR', exp_dir])
    assert other.returncode != 0 and 'was computed from' in other.stdout + other.stderr
    # --report-only on a folder with no steps: every row says it was not computed, nothing runs
    empty = run_in_repo(command[:4] + ['--report-only', '--set', 'EXP_DIR', exp_dir + '_empty'])
    shutil.rmtree(osp.join(ROOT, 'output', exp_dir + '_empty'), ignore_errors=True)
    assert empty.returncode == 0, empty.stdout[-4000:] + empty.stderr[-4000:]
    assert 'starts (' not in empty.stdout and 'not computed (step ' in empty.stdout
