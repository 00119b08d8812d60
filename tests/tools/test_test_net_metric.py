"""tools/test_net.py --metric coco on synth_mini_test: the VOC07 mAP and pycocotools' 12 numbers, both printed
and saved (a TINY net with seeded random weights: the numbers are small, their plumbing is what is tested)."""

import json
import os.path as osp
import re
import sys

import numpy as np
import pytest

caffe = pytest.importorskip('caffe')

from datasets.coco_eval import SUMMARY_NAMES  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TEST_DEF = osp.join(ROOT, 'models', 'synth', 'TINY', 'faster_rcnn_end2end', 'test.prototxt')


@pytest.fixture
def random_tiny_model(tmp_path, caffe_cpu):
    """The TINY end-to-end test net (adapted to synth's 7 classes) with seeded random weights."""
    from fast_rcnn.models import adapt_prototxt
    proto = adapt_prototxt(TEST_DEF, str(tmp_path / 'test.prototxt'), 7)
    net = caffe.Net(proto, caffe.TEST)
    rng = np.random.default_rng(0)
    for params in net.params.values():
        for blob in params:
            blob.data[...] = rng.normal(0, 0.05, blob.data.shape)
    path = str(tmp_path / 'tiny_random.caffemodel')
    net.save(path)
    return path


def test_metric_coco_reports_voc_and_coco_numbers(random_tiny_model, run_in_repo, exp_dir):
    proc = run_in_repo([sys.executable, 'tools/test_net.py', '--cpu', '--def', TEST_DEF, '--net',
                        random_tiny_model, '--imdb', 'synth_mini_test', '--metric', 'coco',
                        '--cfg', 'experiments/cfgs/faster_rcnn_end2end.yml',
                        '--cfg', 'experiments/cfgs/synth.yml',
                        '--set', 'EXP_DIR', exp_dir])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out_dir = osp.join(ROOT, 'output', exp_dir, 'synth_mini_test', 'tiny_random')
    with open(osp.join(out_dir, 'synth_mini_test_eval.json'), encoding='utf-8') as f:
        voc = json.load(f)
    with open(osp.join(out_dir, 'synth_mini_test_coco_eval.json'), encoding='utf-8') as f:
        coco = json.load(f)
    assert list(coco['summary']) == list(SUMMARY_NAMES)
    printed_map = float(re.search(r'^mAP = ([0-9.]+)$', proc.stdout, re.M).group(1))
    printed_ap = float(re.search(r'^COCO AP@\[\.5:\.95\] = ([0-9.]+)$', proc.stdout, re.M).group(1))
    assert printed_map == pytest.approx(voc['mAP'], abs=1e-4)
    assert printed_ap == pytest.approx(coco['summary']['AP'], abs=1e-4)
    assert osp.isfile(coco['results_file'])
    assert proc.stdout.count(' Average Precision  (AP) @[ IoU=') == 6
