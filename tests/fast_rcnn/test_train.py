"""fast_rcnn.train: unnormalised saved bbox_pred, bit-for-bit resume, clean stop on a non-finite loss.

A Fast R-CNN stage of the TINY net trains for a few iterations on synth_mini_trainval (small scale) with
synthetic proposals (jittered ground truth and random boxes), as alt-opt stage 2 would.
"""

import glob
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest

caffe = pytest.importorskip('caffe')

from datasets.factory import get_imdb  # noqa: E402
from datasets.imdb import save_box_list  # noqa: E402
from fast_rcnn import train as frtrain  # noqa: E402
from fast_rcnn.bbox_transform import bbox_transform_inv  # noqa: E402
from fast_rcnn.config import cfg  # noqa: E402
from fast_rcnn.models import adapt_prototxt, adapt_solver  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TINY_DIR = osp.join(ROOT, 'models', 'synth', 'TINY', 'faster_rcnn_alt_opt')
IMDB = 'synth_mini_trainval'
MAX_ITERS = 6
SNAPSHOT_ITERS = 3


def _configure():
    """Fast R-CNN training on small images, CPU."""
    cfg.GPU_ID = -1
    cfg.RNG_SEED = 3
    cfg.PIXEL_MEANS = np.array([[[102.9801, 115.9465, 122.7717]]])
    cfg.TRAIN.HAS_RPN = False
    cfg.TRAIN.PROPOSAL_METHOD = 'rpn'
    cfg.TRAIN.IMS_PER_BATCH = 2
    cfg.TRAIN.BATCH_SIZE = 32
    cfg.TRAIN.BG_THRESH_LO = 0.0
    cfg.TRAIN.SCALES = (160,)
    cfg.TRAIN.MAX_SIZE = 270
    cfg.TRAIN.USE_FLIPPED = False
    cfg.TRAIN.BBOX_REG = True
    cfg.TRAIN.BBOX_NORMALIZE_TARGETS = True
    cfg.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED = False
    cfg.TRAIN.SNAPSHOT_ITERS = SNAPSHOT_ITERS
    cfg.TRAIN.SNAPSHOT_INFIX = ''
    caffe.set_mode_cpu()


def _proposals_file(path):
    """Synthetic proposals for IMDB: each gt jittered 4 times plus 20 random boxes per image."""
    imdb = get_imdb(IMDB)
    rng = np.random.default_rng(0)
    box_list = []
    for entry in imdb.gt_roidb():
        width, height = entry['width'], entry['height']
        gt = entry['boxes'].astype(np.float64)
        jittered = np.repeat(gt, 4, axis=0) + rng.normal(0, 4, size=(4 * len(gt), 4))
        x1 = rng.uniform(0, width - 20, 20)
        y1 = rng.uniform(0, height - 20, 20)
        random = np.stack([x1, y1, x1 + rng.uniform(10, width / 2, 20),
                           y1 + rng.uniform(10, height / 2, 20)], 1)
        boxes = np.vstack([jittered, random])
        boxes = np.clip(boxes, 0, [width - 1, height - 1, width - 1, height - 1])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        box_list.append(np.round(boxes).astype(np.float32))
    save_box_list(path, imdb.image_index, box_list)
    return path


def _roidb(rpn_file):
    """A fresh training roidb (training normalises its targets in place, so every run needs its own)."""
    imdb = get_imdb(IMDB)
    imdb.set_proposal_method('rpn')
    imdb.config['rpn_file'] = rpn_file
    return frtrain.get_training_roidb(imdb)


@pytest.fixture(scope='module')
def setup(tmp_path_factory, module_cfg):
    """Solver, proposals and initial model in a temporary directory; run A trains MAX_ITERS iterations."""
    _configure()
    work = tmp_path_factory.mktemp('train')
    net = adapt_prototxt(osp.join(TINY_DIR, 'stage1_fast_rcnn_train.pt'), str(work / 'train.pt'),
                         get_imdb(IMDB).num_classes)
    solver = adapt_solver(osp.join(TINY_DIR, 'stage1_fast_rcnn_solver.pt'), str(work / 'solver.pt'), net)
    init = str(work / 'init.caffemodel')
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'make_init_model.py'),
                    '--def', osp.join(TINY_DIR, 'faster_rcnn_test.pt'), '--out', init], check=True)
    rpn_file = _proposals_file(str(work / 'proposals.npz'))
    out_a = str(work / 'a')
    paths = frtrain.train_net(solver, _roidb(rpn_file), out_a, pretrained_model=init, max_iters=MAX_ITERS)
    return {'work': work, 'solver': solver, 'init': init, 'rpn_file': rpn_file, 'out_a': out_a,
            'paths': paths}


def _state(out_dir, iteration, ext):
    """The training-state file of ``iteration`` under ``out_dir``."""
    (path,) = glob.glob(osp.join(out_dir, frtrain.TRAIN_STATE_DIR, f'*_iter_{iteration}{ext}'))
    return path


def _params(prototxt, model):
    """{layer: [arrays]} of a caffemodel loaded into ``prototxt``."""
    net = caffe.Net(prototxt, caffe.TEST, weights=model)
    return {name: [b.data.copy() for b in blobs] for name, blobs in net.params.items()}


def test_snapshots_and_artefacts(setup):
    out_a = setup['out_a']
    assert [osp.basename(p) for p in setup['paths']] == ['tiny_fast_rcnn_iter_3.caffemodel',
                                                         'tiny_fast_rcnn_iter_6.caffemodel']
    for iteration in (3, 6):
        for ext in ('.caffemodel', '.solverstate', '.json'):
            assert osp.isfile(_state(out_a, iteration, ext))
    assert osp.isfile(osp.join(out_a, 'tiny_fast_rcnn_loss.png'))
    with open(_state(out_a, 6, '.json'), encoding='utf-8') as f:
        sidecar = json.load(f)
    assert [entry[0] for entry in sidecar['loss_history']] == list(range(MAX_ITERS))
    assert set(sidecar['loss_history'][0][2]) == {'cls_loss', 'bbox_loss'}


def test_saved_bbox_pred_is_unnormalised(setup):
    train_pt = str(setup['work'] / 'train.pt')
    saved = _params(train_pt, setup['paths'][-1])
    state = _params(train_pt, _state(setup['out_a'], MAX_ITERS, '.caffemodel'))
    with open(_state(setup['out_a'], MAX_ITERS, '.json'), encoding='utf-8') as f:
        sidecar = json.load(f)
    means, stds = np.array(sidecar['bbox_means']), np.array(sidecar['bbox_stds'])
    num_classes = get_imdb(IMDB).num_classes
    assert means.shape == stds.shape == (num_classes, 4)
    # Real statistics of the proposals, not the identity (else the test could not fail).
    assert np.all(np.abs(stds[1:] - 1) > 0.05) and np.any(np.abs(means[1:]) > 1e-3)
    # Everything but bbox_pred is saved as trained.
    for name in saved:
        if name != 'bbox_pred':
            for a, b in zip(saved[name], state[name]):
                np.testing.assert_array_equal(a, b)
    # Test-time decoding of the saved model equals training-time decoding with the means/stds.
    w_norm, b_norm = state['bbox_pred']
    w_saved, b_saved = saved['bbox_pred']
    features = np.abs(np.random.default_rng(0).normal(0, 1, size=(5, w_norm.shape[1])))
    deltas_train = (features @ w_norm.T.astype(np.float64) + b_norm) * stds.ravel() + means.ravel()
    deltas_test = features @ w_saved.T.astype(np.float64) + b_saved
    np.testing.assert_allclose(deltas_test, deltas_train, rtol=1e-5, atol=1e-6)
    rois = np.array([[10, 20, 60, 90], [0, 0, 30, 15], [5, 5, 200, 150], [40, 40, 41, 41], [3, 7, 90, 60]],
                    dtype=np.float64)
    np.testing.assert_allclose(bbox_transform_inv(rois, deltas_test), bbox_transform_inv(rois, deltas_train),
                               rtol=1e-5, atol=1e-4)
    assert not np.allclose(w_saved, w_norm)


def test_raw_targets_save_bbox_pred_as_trained(setup):
    """TRAIN.BBOX_NORMALIZE_TARGETS false: nothing is folded into the saved bbox_pred."""
    cfg.TRAIN.BBOX_NORMALIZE_TARGETS = False
    try:
        out = str(setup['work'] / 'raw')
        paths = frtrain.train_net(setup['solver'], _roidb(setup['rpn_file']), out,
                                  pretrained_model=setup['init'], max_iters=2)
    finally:
        cfg.TRAIN.BBOX_NORMALIZE_TARGETS = True
    train_pt = str(setup['work'] / 'train.pt')
    saved = _params(train_pt, paths[-1])
    state = _params(train_pt, _state(out, 2, '.caffemodel'))
    for a, b in zip(saved['bbox_pred'], state['bbox_pred']):
        np.testing.assert_array_equal(a, b)
    with open(_state(out, 2, '.json'), encoding='utf-8') as f:
        sidecar = json.load(f)
    assert sidecar['bbox_means'] is None and sidecar['bbox_stds'] is None


def test_unnormalize_bbox_params_exact():
    weights = np.arange(16, dtype=np.float64).reshape(8, 2)
    biases = np.arange(8, dtype=np.float64)
    means = np.array([[0, 0, 0, 0], [0.5, -0.5, 1, 2]])
    stds = np.array([[1, 1, 1, 1], [0.1, 0.1, 0.2, 0.2]])
    w, b = frtrain.unnormalize_bbox_params(weights, biases, means, stds)
    np.testing.assert_allclose(w[4:], [[0.8, 0.9], [1.0, 1.1], [2.4, 2.6], [2.8, 3.0]])
    np.testing.assert_allclose(b, [0, 1, 2, 3, 0.9, 0.0, 2.2, 3.4])
    np.testing.assert_array_equal(w[:4], weights[:4])


def test_resume_continues_bit_for_bit(setup):
    _configure()
    out_b = str(setup['work'] / 'b')
    paths = frtrain.train_net(setup['solver'], _roidb(setup['rpn_file']), out_b, max_iters=MAX_ITERS,
                              resume=_state(setup['out_a'], SNAPSHOT_ITERS, '.solverstate'))
    assert osp.basename(paths[-1]) == f'tiny_fast_rcnn_iter_{MAX_ITERS}.caffemodel'
    with open(_state(setup['out_a'], MAX_ITERS, '.json'), encoding='utf-8') as f:
        history_a = json.load(f)['loss_history']
    with open(_state(out_b, MAX_ITERS, '.json'), encoding='utf-8') as f:
        history_b = json.load(f)['loss_history']
    assert [entry[0] for entry in history_b] == list(range(MAX_ITERS))
    assert history_b == history_a  # identical losses, bit for bit (JSON keeps float64 exactly)
    train_pt = str(setup['work'] / 'train.pt')
    for model_a, model_b in ((setup['paths'][-1], paths[-1]),
                             (_state(setup['out_a'], MAX_ITERS, '.caffemodel'),
                              _state(out_b, MAX_ITERS, '.caffemodel'))):
        params_a, params_b = _params(train_pt, model_a), _params(train_pt, model_b)
        for name in params_a:
            for a, b in zip(params_a[name], params_b[name]):
                np.testing.assert_array_equal(a, b)


def test_non_finite_loss_stops_and_keeps_the_last_good_snapshot(setup):
    _configure()
    out_c = str(setup['work'] / 'c')
    # Injected through cfg: a zero target std makes the regression targets non-finite, so the first
    # resumed iteration's loss is. (NaN images would do too, but stock Caffe's max pooling backward then
    # writes out of bounds.)
    cfg.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED = True
    cfg.TRAIN.BBOX_NORMALIZE_STDS = (0.1, 0.1, 0.2, 0.0)
    last_good = setup['paths'][0]
    with np.errstate(divide='ignore', invalid='ignore'), pytest.raises(
            frtrain.TrainingDivergedError,
            match=rf'loss is (nan|inf) at iteration {SNAPSHOT_ITERS} .*Last good snapshot: {last_good}'):
        frtrain.train_net(setup['solver'], _roidb(setup['rpn_file']), out_c, max_iters=MAX_ITERS,
                          resume=_state(setup['out_a'], SNAPSHOT_ITERS, '.solverstate'))
    assert osp.isfile(last_good)
    assert glob.glob(osp.join(out_c, '*.caffemodel')) == []
    assert glob.glob(osp.join(out_c, frtrain.TRAIN_STATE_DIR, '*.caffemodel')) == []


def test_non_finite_weights_are_never_snapshot(setup):
    _configure()
    out_d = str(setup['work'] / 'd')
    sw = frtrain.SolverWrapper(setup['solver'], _roidb(setup['rpn_file']), out_d,
                               pretrained_model=setup['init'])
    sw.solver.net.params['fc6'][0].data[0, 0] = np.inf
    with pytest.raises(frtrain.TrainingDivergedError,
                       match="non-finite weights in layer 'fc6' at iteration 0"):
        sw.snapshot()
    assert glob.glob(osp.join(out_d, '**', '*.caffemodel'), recursive=True) == []


# ---------------------------------------------------------------------------------------------------------
# Faults: torn / missing sidecars, bad solver states and models, stop signals.
# ---------------------------------------------------------------------------------------------------------

def _copy_state(setup, dst):
    """A copy of run A's training state (its solver states name run A's training models, which stay)."""
    import shutil
    shutil.copytree(osp.join(setup['out_a'], frtrain.TRAIN_STATE_DIR), osp.join(dst, frtrain.TRAIN_STATE_DIR))
    return osp.join(dst, frtrain.TRAIN_STATE_DIR)


def _assert_same_params(model_a, model_b, prototxt):
    params_a, params_b = _params(prototxt, model_a), _params(prototxt, model_b)
    assert list(params_a) == list(params_b)
    for name in params_a:
        for a, b in zip(params_a[name], params_b[name]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('damage', ['torn', 'missing', 'other_iteration'])
def test_a_damaged_sidecar_falls_back_to_the_newest_complete_snapshot(setup, capsys, damage):
    _configure()
    out_e = str(setup['work'] / f'e_{damage}')
    state_dir = _copy_state(setup, out_e)
    sidecar = _state(out_e, MAX_ITERS, '.json')
    if damage == 'torn':
        with open(sidecar, 'r+b') as f:
            f.truncate(os.path.getsize(sidecar) // 2)
    elif damage == 'missing':
        os.remove(sidecar)
    else:
        with open(_state(out_e, SNAPSHOT_ITERS, '.json'), 'rb') as src, open(sidecar, 'wb') as dst:
            dst.write(src.read())
    paths = frtrain.train_net(setup['solver'], _roidb(setup['rpn_file']), out_e, max_iters=MAX_ITERS,
                              resume=_state(out_e, MAX_ITERS, '.solverstate'))
    printed = capsys.readouterr().out
    assert f'falling back to the newest complete snapshot {osp.join(state_dir, "")}' in printed
    assert f'(iteration {SNAPSHOT_ITERS})' in printed
    # ... and continued from there to the same result as the uninterrupted run.
    assert osp.basename(paths[-1]) == f'tiny_fast_rcnn_iter_{MAX_ITERS}.caffemodel'
    _assert_same_params(setup['paths'][-1], paths[-1], str(setup['work'] / 'train.pt'))


def test_no_complete_snapshot_left_is_an_error(setup):
    _configure()
    out_f = str(setup['work'] / 'f')
    _copy_state(setup, out_f)
    for iteration in (SNAPSHOT_ITERS, MAX_ITERS):
        os.remove(_state(out_f, iteration, '.json'))
    with pytest.raises(FileNotFoundError, match='is missing, and no complete snapshot is left in'):
        frtrain.train_net(setup['solver'], _roidb(setup['rpn_file']), out_f, max_iters=MAX_ITERS,
                          resume=_state(out_f, MAX_ITERS, '.solverstate'))


def test_a_resume_never_rewrites_the_snapshot_it_resumed_from(setup):
    _configure()
    out_g = str(setup['work'] / 'g')
    _copy_state(setup, out_g)
    files = sorted(glob.glob(osp.join(out_g, frtrain.TRAIN_STATE_DIR, f'*_iter_{MAX_ITERS}.*')))
    before = {path: (os.stat(path).st_mtime_ns, open(path, 'rb').read()) for path in files}
    paths = frtrain.train_net(setup['solver'], _roidb(setup['rpn_file']), out_g, max_iters=MAX_ITERS,
                              resume=_state(out_g, MAX_ITERS, '.solverstate'))
    assert paths == setup['paths']  # nothing trained, nothing written: the resumed-from run's models
    assert {path: (os.stat(path).st_mtime_ns, open(path, 'rb').read()) for path in files} == before
    assert glob.glob(osp.join(out_g, '*.caffemodel')) == []


def test_bad_solver_states_are_refused_before_anything_is_restored(setup):
    from fast_rcnn.weights import WeightsError
    from caffe.proto import caffe_pb2
    _configure()
    out_h = str(setup['work'] / 'h')
    _copy_state(setup, out_h)
    state_path = _state(out_h, MAX_ITERS, '.solverstate')
    with open(state_path, 'rb') as f:
        data = f.read()
    with open(state_path, 'wb') as f:
        f.write(data[:len(data) // 3])
    with pytest.raises(WeightsError, match=f'solver state {state_path}: cannot be parsed'):
        frtrain.train_net(setup['solver'], _roidb(setup['rpn_file']), out_h, max_iters=MAX_ITERS,
                          resume=state_path)
    # A state of another net: one history blob fewer.
    state = caffe_pb2.SolverState()
    state.ParseFromString(data)
    del state.history[-1]
    with open(state_path, 'wb') as f:
        f.write(state.SerializeToString())
    with pytest.raises(WeightsError, match='history blobs, the net\'s SGD solver needs'):
        frtrain.train_net(setup['solver'], _roidb(setup['rpn_file']), out_h, max_iters=MAX_ITERS,
                          resume=state_path)
    empty = str(setup['work'] / 'empty.caffemodel')
    open(empty, 'wb').close()
    with pytest.raises(WeightsError, match=f'pretrained model {empty}: the file is empty'):
        frtrain.train_net(setup['solver'], _roidb(setup['rpn_file']), out_h, max_iters=MAX_ITERS,
                          pretrained_model=empty)
    assert glob.glob(osp.join(out_h, frtrain.TRAIN_STATE_DIR, '.snapshot-*')) == []  # scratch cleaned


def test_an_empty_training_roidb_says_why():
    entry = {'max_overlaps': np.array([0.0, 0.0]), 'gt_classes': np.zeros(2, np.int32)}
    with pytest.raises(frtrain.EmptyRoidbError, match=r'all 2 training roidb entries were filtered out.*'
                                                      r'\[0.1, 0.5\).*no objects: check the annotations'):
        frtrain.filter_roidb([entry, entry], 0.5, 0.5, 0.1)
    with pytest.raises(frtrain.EmptyRoidbError, match='the image set lists no images'):
        frtrain.filter_roidb([], 0.5, 0.5, 0.1)


def test_filter_roidb_keeps_entries_with_a_foreground_or_background_roi():
    fg = {'max_overlaps': np.array([0.6, 0.05])}
    bg = {'max_overlaps': np.array([0.3, 0.05])}
    neither = {'max_overlaps': np.array([0.05, 0.55])}
    assert frtrain.filter_roidb([fg, bg, neither], 0.6, 0.5, 0.1) == [fg, bg]
    # with background down to 0.0, the third entry's 0.05 RoI counts
    assert frtrain.filter_roidb([fg, bg, neither], 0.6, 0.5, 0.0) == [fg, bg, neither]


def test_a_stop_signal_snapshots_and_raises(setup):
    import signal
    _configure()
    out_i = str(setup['work'] / 'i')
    sw = frtrain.SolverWrapper(setup['solver'], _roidb(setup['rpn_file']), out_i,
                               pretrained_model=setup['init'])
    step = sw.solver.step

    def step_then_signal(n):  # the signal arrives during iteration 1
        step(n)
        if sw.solver.iter == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    sw.solver = _SolverProxy(sw.solver, step_then_signal)
    with pytest.raises(frtrain.TrainingInterrupted) as info:
        sw.train_model(MAX_ITERS)
    sw.close()
    assert info.value.signum == signal.SIGTERM and info.value.iteration == 2
    assert info.value.solverstate == _state(out_i, 2, '.solverstate')
    assert frtrain.read_sidecar(_state(out_i, 2, '.json'), 2)[0] is not None
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone again


class _SolverProxy:
    """A solver whose ``step`` is replaced (pycaffe objects take no new attributes)."""

    def __init__(self, solver, step):
        self._solver, self.step = solver, step

    def __getattr__(self, name):
        return getattr(self._solver, name)
