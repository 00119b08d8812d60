"""The tools under faults and bad input: bad weights, a second run into one output directory, config
errors, stop signals (training, alternating optimisation, initial model) and Caffe's start-up log."""

import os
import os.path as osp
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip('caffe')
from caffe.proto import caffe_pb2  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
E2E = 'models/synth/TINY/faster_rcnn_end2end'
CFGS = ['--cfg', 'experiments/cfgs/faster_rcnn_end2end.yml', '--cfg', 'experiments/cfgs/synth.yml']
# Smaller images than the synth config: every iteration a fraction of a second on the CPU.
SMALL = ['TRAIN.SCALES', '(200,)', 'TRAIN.MAX_SIZE', '340', 'TEST.SCALES', '(200,)', 'TEST.MAX_SIZE', '340']


def _env():
    return dict(os.environ, GLOG_minloglevel='2', PYTHONUNBUFFERED='1')


def _run(args, timeout=300):
    """Run a command in the repository root; the CompletedProcess with text output."""
    return subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def _popen(args):
    return subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, bufsize=1)


def _wait_for_line(proc, pattern, timeout=240):
    """Read ``proc``'s stdout until a line matches ``pattern``; return the lines read."""
    lines, deadline = [], time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    proc.kill()
    raise AssertionError(f'no line matching {pattern!r}; output:\n{"".join(lines)[-3000:]}\n'
                         f'{proc.stderr.read()[-3000:]}')


@pytest.fixture
def exp_dir():
    """A throw-away EXP_DIR name under output/ (removed afterwards)."""
    names = []

    def make(tag):
        names.append(f'pytest_faults_{os.getpid()}_{tag}')
        return names[-1]

    yield make
    for name in names:
        shutil.rmtree(osp.join(ROOT, 'output', name), ignore_errors=True)


@pytest.fixture(scope='module')
def init_model(tmp_path_factory):
    """A seeded random initial model of TINY (shared convs and fc6/fc7, no RPN or head)."""
    path = str(tmp_path_factory.mktemp('init') / 'TINY.caffemodel')
    proc = _run([sys.executable, 'tools/make_init_model.py', '--def',
                 'models/synth/TINY/faster_rcnn_alt_opt/faster_rcnn_test.pt', '--out', path])
    assert proc.returncode == 0, proc.stderr
    return path


def _test_net(model, exp):
    return _run([sys.executable, 'tools/test_net.py', '--cpu', '--def', f'{E2E}/test.prototxt',
                 '--net', model, '--imdb', 'synth_mini_test', *CFGS, '--set', 'EXP_DIR', exp, *SMALL])


def _assert_refused(proc, *fragments):
    """Exit status 1, one ``error:`` line holding every fragment, no traceback, no Caffe abort, no mAP."""
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert 'Traceback' not in proc.stderr and 'Check failed' not in proc.stderr
    assert 'mAP' not in proc.stdout


def _model_bytes(path):
    with open(path, 'rb') as f:
        return f.read()


def test_test_net_refuses_bad_weights_naming_the_file(init_model, tmp_path, exp_dir):
    exp = exp_dir('weights')
    empty = tmp_path / 'empty.caffemodel'
    empty.write_bytes(b'')
    _assert_refused(_test_net(str(empty), exp), f'{empty}: the file is empty')
    data = _model_bytes(init_model)
    cut = tmp_path / 'cut.caffemodel'
    cut.write_bytes(data[:len(data) // 2])
    _assert_refused(_test_net(str(cut), exp), str(cut))
    foreign = caffe_pb2.NetParameter()
    layer = foreign.layer.add()
    layer.name = 'conv1_1'
    layer.blobs.add().shape.dim.extend([4])
    layer.blobs[0].data.extend([0.0] * 4)
    other = tmp_path / 'other.caffemodel'
    other.write_bytes(foreign.SerializeToString())
    _assert_refused(_test_net(str(other), exp), f'{other} shares no parameter layer with the net')
    # The initial model holds no RPN / detection head: at test time that is an error, not random layers.
    _assert_refused(_test_net(init_model, exp), f'{init_model} lacks layers', 'cls_score', 'bbox_pred')
    model = caffe_pb2.NetParameter()
    model.ParseFromString(data)
    first = next(layer for layer in model.layer if layer.blobs)
    first.blobs[0].shape.dim[0] += 1
    first.blobs[0].data.extend([0.0] * int(np.prod(first.blobs[0].shape.dim[1:])))
    reshaped = tmp_path / 'reshaped.caffemodel'
    reshaped.write_bytes(model.SerializeToString())
    _assert_refused(_test_net(str(reshaped), exp), f"layer '{first.name}' shape mismatch")


def test_train_net_refuses_an_empty_initial_model(tmp_path, exp_dir):
    empty = tmp_path / 'empty.caffemodel'
    empty.write_bytes(b'')
    proc = _run([sys.executable, 'tools/train_net.py', '--cpu', '--solver', f'{E2E}/solver.prototxt',
                 '--weights', str(empty), '--imdb', 'synth_mini_trainval', *CFGS, '--set', 'EXP_DIR',
                 exp_dir('empty')])
    _assert_refused(proc, f'{empty}: the file is empty')
    assert 'Solving' not in proc.stdout


def test_a_second_run_into_an_output_dir_stops_at_once(init_model, exp_dir):
    from utils.fileio import DirectoryLock
    exp = exp_dir('lock')
    out_dir = osp.join(ROOT, 'output', exp, 'synth_mini_trainval')
    with DirectoryLock(out_dir):
        proc = _run([sys.executable, 'tools/train_net.py', '--cpu', '--solver', f'{E2E}/solver.prototxt',
                     '--weights', init_model, '--imdb', 'synth_mini_trainval', '--iters', '2', *CFGS,
                     '--set', 'EXP_DIR', exp])
    _assert_refused(proc, f'{out_dir} is in use by another run (pid {os.getpid()}')
    assert not osp.exists(osp.join(out_dir, 'train_state'))


@pytest.mark.parametrize('args, message', [
    (['--set', 'NO_SUCH_KEY', '1'], 'error: --set: unknown config key: NO_SUCH_KEY'),
    (['--set', 'TRAIN.USE_FLIPPED', '3'], 'error: --set: config key TRAIN.USE_FLIPPED: expected a bool'),
    (['--set', 'EXP_DIR'], 'error: --set: --set takes KEY VALUE pairs'),
    (['--cfg', 'BAD_YAML'], 'invalid YAML at line 3, column 1: expected'),
    (['--cfg', 'NO_FILE'], 'No such file or directory'),
])
def test_config_errors_are_one_line(tmp_path, args, message):
    bad = tmp_path / 'bad.yml'
    bad.write_text('TRAIN:\n  SCALES: [400\n')
    names = {'BAD_YAML': str(bad), 'NO_FILE': str(tmp_path / 'none.yml')}
    args = [names.get(a, a) for a in args]
    proc = _run([sys.executable, 'tools/train_net.py', '--cpu', '--solver', 'unused.prototxt', *args],
                timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.count('\n') == 1 and message in proc.stderr, proc.stderr


def test_no_caffe_error_lines_on_the_cpu():
    code = 'import caffe; caffe.set_mode_cpu(); caffe.set_random_seed(1); print("ok")'
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, GLOG_minloglevel='0', GLOG_logtostderr='1'))
    assert proc.returncode == 0 and proc.stdout == 'ok\n'
    assert not re.search(r'^E\d{4} ', proc.stderr, re.M), proc.stderr
    assert 'Cublas' not in proc.stderr and 'Curand' not in proc.stderr


def test_an_interrupted_make_init_model_leaves_no_model(tmp_path):
    out = tmp_path / 'models' / 'TINY_pretrained.caffemodel'
    proc = _popen([sys.executable, 'tools/make_init_model.py', '--def',
                   'models/synth/TINY/faster_rcnn_alt_opt/faster_rcnn_test.pt', '--out', str(out),
                   '--pretrain-imdb', 'synth_mini_trainval', '--pretrain-iters', '100000', '--batch', '4'])
    _wait_for_line(proc, r'^Pre-training on ')
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    assert not out.exists()
    assert not out.parent.exists() or os.listdir(out.parent) == []  # no temporary file either


def _solver_with_display_1(tmp_path):
    """The TINY end-to-end solver printing every iteration (the test waits for one)."""
    text = open(osp.join(ROOT, E2E, 'solver.prototxt'), encoding='utf-8').read()
    path = tmp_path / 'solver.prototxt'
    path.write_text(re.sub(r'^display: \d+', 'display: 1', text, flags=re.M))
    return str(path)


def _train_args(solver, init_model, exp, iters):
    return [sys.executable, 'tools/train_net.py', '--cpu', '--solver', solver, '--weights', init_model,
            '--imdb', 'synth_mini_trainval', '--iters', str(iters), *CFGS,
            '--set', 'EXP_DIR', exp, 'TRAIN.SNAPSHOT_ITERS', '0', *SMALL]


def test_sigterm_during_training_snapshots_and_resume_continues_bit_for_bit(init_model, tmp_path, exp_dir):
    iters = 12
    solver = _solver_with_display_1(tmp_path)
    exp_a, exp_b = exp_dir('uninterrupted'), exp_dir('interrupted')
    proc_a = _run(_train_args(solver, init_model, exp_a, iters))
    assert proc_a.returncode == 0, proc_a.stderr[-3000:]

    proc_b = _popen(_train_args(solver, init_model, exp_b, iters))
    _wait_for_line(proc_b, r'^Iteration 2, ')
    proc_b.send_signal(signal.SIGTERM)
    out_b, err_b = proc_b.communicate(timeout=240)
    assert proc_b.returncode == 128 + signal.SIGTERM, out_b[-2000:] + err_b[-2000:]
    stopped = re.search(r'^SIGTERM received: training stopped after iteration (\d+); snapshot (\S+)$', err_b,
                        re.M)
    assert stopped, err_b
    stop_iter, solverstate = int(stopped.group(1)), stopped.group(2)
    assert 3 <= stop_iter < iters and osp.isfile(solverstate)
    resume = re.search(r'^To resume: (.*)$', err_b, re.M).group(1)
    words = shlex.split(resume)
    assert words[-2:] == ['--resume', solverstate]

    proc_c = subprocess.run(words, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc_c.returncode == 0, proc_c.stderr[-3000:]
    assert f'Resuming from {solverstate}' in proc_c.stdout
    train_a = osp.join(ROOT, 'output', exp_a, 'synth_mini_trainval')
    train_b = osp.join(ROOT, 'output', exp_b, 'synth_mini_trainval')
    name = f'tiny_faster_rcnn_iter_{iters}.caffemodel'
    for sub in ('', 'train_state'):
        model_a, model_b = caffe_pb2.NetParameter(), caffe_pb2.NetParameter()
        model_a.ParseFromString(_model_bytes(osp.join(train_a, sub, name)))
        model_b.ParseFromString(_model_bytes(osp.join(train_b, sub, name)))
        blobs_a = [(layer.name, list(b.data)) for layer in model_a.layer for b in layer.blobs]
        blobs_b = [(layer.name, list(b.data)) for layer in model_b.layer for b in layer.blobs]
        assert len(blobs_a) > 10 and blobs_a == blobs_b  # identical weights, bit for bit
    import json
    with open(osp.join(train_a, 'train_state', f'tiny_faster_rcnn_iter_{iters}.json'), encoding='utf-8') as f:
        history_a = json.load(f)['loss_history']
    with open(osp.join(train_b, 'train_state', f'tiny_faster_rcnn_iter_{iters}.json'), encoding='utf-8') as f:
        history_b = json.load(f)['loss_history']
    assert history_a == history_b and len(history_a) == iters


def test_sigterm_to_the_alt_opt_driver_stops_its_stage(init_model, exp_dir):
    exp = exp_dir('alt_opt')
    proc = _popen([sys.executable, 'tools/train_faster_rcnn_alt_opt.py', '--cpu', '--net_name', 'TINY',
                   '--weights', init_model, '--imdb', 'synth_mini_trainval',
                   '--iters', '5000', '5000', '5000', '5000',
                   '--cfg', 'experiments/cfgs/faster_rcnn_alt_opt.yml', '--cfg', 'experiments/cfgs/synth.yml',
                   '--set', 'EXP_DIR', exp, *SMALL])
    _wait_for_line(proc, r'^\[stage1_rpn\] roidb: ')
    _wait_for_line(proc, r'^Solving\.\.\.')  # the stage's training loop (and its handlers) starts
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, out[-2000:] + err[-2000:]
    assert re.search(r'^error: \[Step 1: stage-1 RPN, init from the initial model\] SIGTERM received: '
                     r'stopped in this stage \(SIGTERM received: training stopped after iteration \d+; '
                     r'snapshot .*\.solverstate\)', err, re.M), err
    assert 'generate proposals' not in out
    state_dir = osp.join(ROOT, 'output', exp, 'synth_mini_trainval', 'train_state')
    sidecars = [f for f in os.listdir(state_dir)
                if f.startswith('tiny_rpn_stage1_iter_') and f.endswith('.json')]
    assert len(sidecars) == 1  # the stage's snapshot, complete
    assert not [f for f in os.listdir(state_dir) if f.startswith('.snapshot-')]  # scratch removed


def test_device_choice_without_a_gpu(init_model, exp_dir):
    from fast_rcnn.device import usable_gpu_count
    if usable_gpu_count() > 0:
        pytest.skip('this machine has a usable GPU')
    exp = exp_dir('device')
    args = [sys.executable, 'tools/test_net.py', '--def', f'{E2E}/test.prototxt', '--net', init_model,
            '--imdb', 'synth_mini_test', *CFGS, '--set', 'EXP_DIR', exp]
    asked = _run(args[:2] + ['--gpu', '0'] + args[2:], timeout=120)
    _assert_refused(asked, '--gpu 0: no usable CUDA devices on this machine', 'pass --cpu')
    default = _run(args, timeout=120)  # no device option: the CPU, with one warning
    assert default.stderr.count('warning: no usable GPU: running on the CPU') == 1, default.stderr
    assert 'Check failed' not in default.stderr and 'cudaError' not in default.stderr
    _assert_refused(default, f'{init_model} lacks layers')  # then it goes on as on the CPU


def test_a_second_make_waits_for_the_first():
    env = {k: v for k, v in os.environ.items() if k not in ('MAKEFLAGS', 'MFLAGS', 'MAKELEVEL')}
    holder = subprocess.Popen(['flock', osp.join(ROOT, '.make.lock'), 'sleep', '4'])
    try:
        time.sleep(0.5)
        start = time.time()
        proc = subprocess.run(['make', '--no-print-directory', 'paths'], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        waited = time.time() - start
    finally:
        holder.wait()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'another make is writing in' in proc.stdout and waited >= 3, (waited, proc.stdout)


def test_a_bad_dataset_stops_the_tool_with_one_line(init_model, tmp_path):
    import cv2
    root = tmp_path / 'VOCdevkit2007' / 'VOC2007'
    for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
        (root / sub).mkdir(parents=True)
    cv2.imwrite(str(root / 'JPEGImages' / '000001.jpg'), np.zeros((20, 30, 3), np.uint8))
    (root / 'Annotations' / '000001.xml').write_text(
        '<annotation><size><width>20</width><height>30</height><depth>3</depth></size></annotation>')
    image_set = root / 'ImageSets' / 'Main' / 'test.txt'
    args = [sys.executable, 'tools/test_net.py', '--cpu', '--def', f'{E2E}/test.prototxt',
            '--net', init_model, '--imdb', 'voc_2007_test', '--set', 'DATA_DIR', str(tmp_path)]
    image_set.write_text('000001\n')
    _assert_refused(_run(args, timeout=120), '000001.jpg is 30 x 20 pixels but its annotation',
                    'says <size> 20 x 30')
    image_set.write_text('000001\n../000001\n')
    _assert_refused(_run(args, timeout=120), f"{image_set}:2: image id '../000001' contains a path separator")
    image_set.write_text('\n')
    _assert_refused(_run(args, timeout=120), f'{image_set}: the image set is empty')
