#!/usr/bin/env python3
"""The GPU device check: our CUDA paths on real hardware, in one call (see docs/device-check.md).

    bench/device_check.sh            (the wrapper: repository root, time limit, output folder)
    python3 bench/device_check.py --out DIR [--bundle build/device/frcnn-device.tar.xz] [--limit SECONDS]

Items, each reported PASS / FAIL / SKIP on a summary line and in DIR/results.json (log DIR/device_check.log):
  bundle      unpack the device bundle, check it against its manifest, find CUDA's libraries, ldd
  gpu_info    nvidia-smi, CUDA driver and runtime versions, `caffe device_query`
  gtest_gpu   the GPU instances of the bundle's gtests (ours: ROIPooling, SmoothL1Loss; Caffe's selection)
  gtest_cpu   their CPU instances (only when there is no GPU: it shows the bundle runs on this machine)
  nms         lib/ built with this Python (GPU NMS with nvcc), GPU vs CPU keeps on random and degenerate
              boxes, times at 6000 and 12000 boxes
  table4      `caffe time` of the ZF / VGG-16 conv (+RPN head) and region-wise (300 RoIs) nets, the
              proposal step (lib/rpn with GPU NMS), and the VGG-16 end-to-end train net's forward-backward
Without a GPU every step runs up to its first GPU call and reports SKIP with the reason; the parts that run
on a CPU still run (so a machine without a GPU still proves the bundle loads and its nets are valid).
Only the standard library is needed here; the NMS / proposal workers also need numpy, Cython, setuptools.
"""

import argparse
import ctypes
import glob
import importlib.util
import json
import os
import os.path as osp
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_BUNDLE = osp.join(REPO, 'build', 'device', 'frcnn-device.tar.xz')
# The paper's Table 4 (ms per image on a K40; "proposal" is the RPN: its head and the proposal step).
PAPER_TABLE4_MS = {'zf': {'conv': 31, 'proposal': 3, 'region': 25, 'total': 59},
                   'vgg16': {'conv': 141, 'proposal': 10, 'region': 47, 'total': 198}}
NMS_TIMED_SIZES = (6000, 12000)
# Our layers' suites: their GPU instances must be among those run.
OUR_SUITES = ('ROIPoolingLayerTest', 'SmoothL1LossLayerTest')
GTEST_SHARDS = 4
# Seconds for the whole check by default: the device tool allows 8 minutes per call (bench/device_check.sh).
DEFAULT_LIMIT = 450
STATUS = ('PASS', 'FAIL', 'SKIP')
# The items after `bundle` (which always runs), in order; --only picks some of them for a re-run.
ITEMS = ('gpu_info', 'nms', 'table4', 'gtest_gpu')


# ------------------------------------------------------------------------------------------------------------
# logging and subprocesses
# ------------------------------------------------------------------------------------------------------------

class Log:
    """Everything goes to the log file; ``say`` also prints (the caller's terminal sees a digest)."""

    def __init__(self, path):
        self.file = open(path, 'w', buffering=1)

    def write(self, text):
        self.file.write(text if text.endswith('\n') else text + '\n')

    def say(self, text):
        print(text, flush=True)
        self.write(text)


class Deadline:
    """The whole check's wall-clock budget; each step's timeout is cut to what is left.

    Step caps are written for the default budget (DEFAULT_LIMIT) and scale with a larger one, so a slow or
    shared CPU machine can run the whole check with a longer --limit.
    """

    def __init__(self, seconds, reserve=15):
        self.end = time.monotonic() + seconds
        self.reserve = reserve
        self.scale = max(1.0, seconds / DEFAULT_LIMIT)

    def left(self):
        return self.end - time.monotonic() - self.reserve

    def cap(self, seconds):
        """``seconds`` (scaled) or what is left, whichever is less (at least 1)."""
        return max(1, min(int(seconds * self.scale), int(self.left())))


def run(log, cmd, timeout, env=None, cwd=None):
    """Run ``cmd``; log its command line and output. Returns ``(rc, output)``, rc 124 on timeout."""
    log.write(f'$ {" ".join(cmd)}   (timeout {timeout} s, cwd {cwd or os.getcwd()})')
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors='replace',
                           timeout=timeout, env=env, cwd=cwd)
        rc, out = p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors='replace') if isinstance(e.stdout, bytes) else (e.stdout or '')
        rc = 124
    except OSError as e:
        rc, out = 127, f'cannot run {cmd[0]}: {e}\n'
    log.write(out)
    log.write(f'-> rc {rc} in {time.monotonic() - start:.1f} s')
    return rc, out


def item(status, detail, **data):
    """A result entry."""
    assert status in STATUS
    return {'status': status, 'detail': detail, **data}


# ------------------------------------------------------------------------------------------------------------
# bundle, CUDA libraries, GPU presence
# ------------------------------------------------------------------------------------------------------------

def load_bundle_tools():
    """caffe-fast-rcnn/device/bundle.py as a module (its verify() needs only the standard library)."""
    path = osp.join(REPO, 'caffe-fast-rcnn', 'device', 'bundle.py')
    spec = importlib.util.spec_from_file_location('frcnn_bundle', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unpack(archive, work):
    """Extract ``archive`` into ``work``; returns the bundle root (``work/frcnn-device``)."""
    root = osp.join(work, 'frcnn-device')
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(work, exist_ok=True)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        if any(n.startswith('/') or '..' in n.split('/') for n in names):
            raise ValueError(f'{archive}: member paths leave the archive folder')
        # the 'data' filter (Python >= 3.12, some 3.11) refuses links and modes that leave the folder
        if hasattr(tarfile, 'data_filter'):
            tar.extractall(work, filter='data')
        else:
            tar.extractall(work)
    if not osp.isdir(root):
        raise ValueError(f'{archive}: no frcnn-device/ folder inside')
    return root


def glibc_version():
    """This machine's glibc version as a tuple of ints (() when not glibc)."""
    try:
        text = os.confstr('CS_GNU_LIBC_VERSION') or ''
    except (ValueError, OSError):
        text = ''
    m = re.search(r'(\d+(?:\.\d+)+)', text)
    return tuple(int(x) for x in m.group(1).split('.')) if m else ()


def cuda_lib_candidates(python_paths=None):
    """Folders that may hold CUDA's runtime libraries, most specific first.

    $FRCNN_CUDA_LIBS (colon-separated), then PyTorch's nvidia-* wheels and torch/lib in this Python's
    package folders, then the CUDA toolkit's own lib folders.
    """
    dirs = [d for d in os.environ.get('FRCNN_CUDA_LIBS', '').split(':') if d]
    for p in python_paths if python_paths is not None else sys.path:
        if p and osp.isdir(p):
            dirs += sorted(glob.glob(osp.join(p, 'nvidia', '*', 'lib')))
            dirs += sorted(glob.glob(osp.join(p, 'nvidia', '*', 'lib64')))
            dirs += [osp.join(p, 'torch', 'lib')]
    for home in (os.environ.get('CUDA_HOME'), '/usr/local/cuda'):
        if home:
            dirs += [osp.join(home, 'lib64'), osp.join(home, 'targets', 'x86_64-linux', 'lib')]
    seen, out = set(), []
    for d in dirs:
        if osp.isdir(d) and osp.realpath(d) not in seen:
            seen.add(osp.realpath(d))
            out.append(d)
    return out


def find_libs(names, dirs):
    """``{name: folder}`` for each of ``names`` found in ``dirs`` (first folder wins)."""
    found = {}
    for name in names:
        for d in dirs:
            if osp.exists(osp.join(d, name)):
                found[name] = d
                break
    return found


def driver_lib():
    """Path of the NVIDIA driver's libcuda.so.1, or None."""
    for d in ('/usr/local/nvidia/lib64', '/usr/local/nvidia/lib', '/usr/lib/x86_64-linux-gnu', '/usr/lib64'):
        if osp.exists(osp.join(d, 'libcuda.so.1')):
            return osp.join(d, 'libcuda.so.1')
    # root's PATH may lack /sbin, where Debian and Ubuntu keep ldconfig
    ldconfig = shutil.which('ldconfig') or '/sbin/ldconfig'
    try:
        out = subprocess.run([ldconfig, '-p'], capture_output=True, text=True).stdout
    except OSError:
        return None
    m = re.search(r'libcuda\.so\.1 .*=> (\S+)', out)
    return m.group(1) if m else None


def cuda_version(lib_path, symbol):
    """``'13.0'``-style version from ``cudaRuntimeGetVersion`` / ``cuDriverGetVersion`` of ``lib_path``."""
    lib = ctypes.CDLL(lib_path)
    value = ctypes.c_int(0)
    rc = getattr(lib, symbol)(ctypes.byref(value))
    if rc != 0:
        raise RuntimeError(f'{symbol} returned {rc}')
    return f'{value.value // 1000}.{value.value % 1000 // 10}'


def gpu_presence(log):
    """``(True, listing)`` when nvidia-smi lists a GPU, else ``(False, reason)``."""
    if not shutil.which('nvidia-smi'):
        return False, 'no GPU: nvidia-smi not found'
    rc, out = run(log, ['nvidia-smi', '-L'], 30)
    if rc != 0 or 'GPU 0' not in out:
        return False, f'no GPU: nvidia-smi -L exit {rc}: {out.strip()[:200]}'
    return True, out.strip()


# ------------------------------------------------------------------------------------------------------------
# gtest selection (same rules as caffe-fast-rcnn/run-gtests.sh)
# ------------------------------------------------------------------------------------------------------------

def parse_listing(listing):
    """``[(instance, [tests])]`` from ``--gtest_list_tests`` output ('Suite/2.' lines, '  Test' lines)."""
    instances = []
    for line in listing.splitlines():
        m = re.match(r'^([A-Za-z0-9_/]+)\.\s*(#.*)?$', line)
        if m:
            instances.append((m.group(1), []))
            continue
        m = re.match(r'^  ([A-Za-z0-9_/]+)', line)
        if m and instances:
            instances[-1][1].append(m.group(1))
    return instances


def split_gpu_cpu(instances, gpu_fixtures):
    """Which instances are GPU ones: ``{instance: True (GPU) / False (CPU)}``.

    A suite typed over TestDtypesAndDevices has 4 instances in a CUDA build, /2 and /3 being GPUDevice<float>
    and GPUDevice<double> (build-bundle.sh checks the header's order); fixtures deriving from GPUDeviceTest
    are GPU-only; and anything named *GPU*.
    """
    count = {}
    for name, _ in instances:
        base = name.split('/')[0]
        count[base] = count.get(base, 0) + 1
    gpu = {}
    for name, _ in instances:
        base, _, idx = name.partition('/')
        gpu[name] = (base in gpu_fixtures or 'GPU' in name
                     or (count[base] == 4 and idx.isdigit() and int(idx) >= 2))
    return gpu


def gtest_filter(instances, gpu, want_gpu):
    """``(filter, n_tests)``: a positive --gtest_filter selecting the wanted kind's instances and tests."""
    patterns, n = [], 0
    for name, tests in instances:
        if gpu[name] != want_gpu:
            continue
        selected = tests if want_gpu or 'GPU' in name else [t for t in tests if 'GPU' not in t]
        if len(selected) == len(tests):
            patterns.append(f'{name}.*')
        else:
            patterns += [f'{name}.{t}' for t in selected]
        n += len(selected)
    return ':'.join(patterns), n


def parse_gtest_output(text):
    """``{'ran': int|None, 'passed': int|None, 'failed': [names]}`` of one gtest run's output."""
    ran = re.search(r'^\[==========\] (\d+) tests? from .* ran\.', text, re.M)
    passed = re.search(r'^\[  PASSED  \] (\d+) tests?\.', text, re.M)
    failed = sorted(set(re.findall(r'^\[  FAILED  \] ([A-Za-z0-9_/]+\.[A-Za-z0-9_/]+)', text, re.M)))
    return {'ran': int(ran.group(1)) if ran else None, 'passed': int(passed.group(1)) if passed else None,
            'failed': failed}


def run_gtests(log, deadline, bundle, env, want_gpu, cap, execute=True):
    """Run the GPU (or CPU) instances of the bundle's test binary in GTEST_SHARDS parallel shards.

    Returns ``(item, plan)``; with ``execute`` false only lists and selects (item None unless that fails).
    """
    kind = 'GPU' if want_gpu else 'CPU'
    binary = osp.join(bundle, 'bin', 'test.testbin')
    rc, listing = run(log, [binary, '--gtest_list_tests'], deadline.cap(60), env=env, cwd=bundle)
    if rc != 0:
        return item('FAIL', f'{binary} --gtest_list_tests exit {rc}'), None
    with open(osp.join(bundle, 'gtest_gpu_fixtures.txt')) as f:
        fixtures = set(f.read().split())
    instances = parse_listing(listing)
    gpu = split_gpu_cpu(instances, fixtures)
    filt, n = gtest_filter(instances, gpu, want_gpu)
    missing = [s for s in OUR_SUITES if not any(name.startswith(s) and gpu[name] == want_gpu
                                                 for name, _ in instances)]
    if n == 0 or missing:
        return item('FAIL', f'no {kind} instances of {missing or "any suite"} in the listing'), None
    plan = {'selected': n, 'instances': sum(1 for v in gpu.values() if v == want_gpu)}
    if not execute:
        return None, plan
    timeout = deadline.cap(cap)
    log.say(f'    {kind} gtests: {n} tests in {plan["instances"]} suite instances, {GTEST_SHARDS} shards')
    procs, start = [], time.monotonic()
    for shard in range(GTEST_SHARDS):
        shard_env = dict(env, GTEST_TOTAL_SHARDS=str(GTEST_SHARDS), GTEST_SHARD_INDEX=str(shard))
        out = open(osp.join(bundle, f'gtest_{kind.lower()}_{shard}.log'), 'w+')
        proc = subprocess.Popen([binary, f'--gtest_filter={filt}'], stdout=out, stderr=subprocess.STDOUT,
                                env=shard_env, cwd=bundle)
        procs.append((proc, out))
    ran = passed = 0
    failed, rcs = [], []
    for p, out in procs:
        try:
            rcs.append(p.wait(timeout=max(1.0, timeout - (time.monotonic() - start))))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rcs.append(124)
        out.seek(0)
        text = out.read()
        out.close()
        log.write(f'--- gtest shard ({kind}) rc {rcs[-1]} ---\n{text}')
        r = parse_gtest_output(text)
        ran += r['ran'] or 0
        passed += r['passed'] or 0
        failed += r['failed']
    seconds = round(time.monotonic() - start, 1)
    data = dict(plan, ran=ran, passed=passed, failed=failed, seconds=seconds, shard_rcs=rcs)
    ok = all(rc == 0 for rc in rcs) and ran == n and passed == n and not failed
    detail = f'{passed}/{n} {kind} tests passed in {seconds} s'
    if not ok:
        detail += f' (ran {ran}, shard exits {rcs}, failed: {", ".join(failed[:8]) or "-"})'
    return item('PASS' if ok else 'FAIL', detail, **data), plan


# ------------------------------------------------------------------------------------------------------------
# caffe time
# ------------------------------------------------------------------------------------------------------------

def parse_caffe_time(text):
    """Averages (ms) from `caffe time` output: ``{'forward', 'backward', 'forward_backward', 'layers'}``."""
    def avg(label):
        m = re.search(rf'Average {label}: ([0-9.eE+-]+) ms', text)
        return float(m.group(1)) if m else None
    layers = {}
    for name, direction, ms in re.findall(r'\]\s+(\S+)\s+(forward|backward): ([0-9.eE+-]+) ms', text):
        layers.setdefault(name, {})[direction] = float(ms)
    return {'forward': avg('Forward pass'), 'backward': avg('Backward pass'),
            'forward_backward': avg('Forward-Backward'), 'layers': layers}


def caffe_time(log, deadline, bundle, env, net, phase, iterations, gpu, cap):
    """`caffe time` of ``net`` (a file in the bundle's nets/); returns ``(rc, parsed)``."""
    cmd = [osp.join(bundle, 'bin', 'caffe'), 'time', f'-model={osp.join(bundle, "nets", net)}',
           f'-phase={phase}', f'-iterations={iterations}']
    if gpu:
        cmd.append('-gpu=0')
    rc, out = run(log, cmd, deadline.cap(cap), env=dict(env, GLOG_logtostderr='1'), cwd=bundle)
    return rc, parse_caffe_time(out)


# ------------------------------------------------------------------------------------------------------------
# workers run in a child Python that sees the freshly built lib/ (NMS, proposals)
# ------------------------------------------------------------------------------------------------------------

def random_dets(rng, n, height=600, width=1000):
    """n x 5 float32 proposal-like boxes: clustered around objects, clipped to the image, random scores."""
    import numpy as np
    centres = np.column_stack([rng.uniform(0, width, 20), rng.uniform(0, height, 20)])
    sizes = np.exp(rng.uniform(np.log(16), np.log(400), (20, 2)))
    pick = rng.integers(0, 20, n)
    c = centres[pick] + rng.normal(0, 1, (n, 2)) * sizes[pick] * 0.2
    s = sizes[pick] * rng.uniform(0.7, 1.4, (n, 2))
    boxes = np.column_stack([c - s / 2, c + s / 2])
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height - 1)
    return np.column_stack([boxes, rng.uniform(0.01, 1, n)]).astype(np.float32)


def degenerate_cases():
    """``[(name, dets, thresh)]``: inputs where a careless kernel or sort would differ from the CPU."""
    import numpy as np
    one = np.array([[10, 10, 50, 50, 0.9]], np.float32)
    cases = [('empty', np.zeros((0, 5), np.float32), 0.7), ('one box', one, 0.7),
             ('identical boxes and scores', np.repeat(one, 200, axis=0), 0.7),
             ('identical boxes, distinct scores',
              np.column_stack([np.repeat(one[:, :4], 200, 0), np.linspace(0.1, 0.9, 200)]).astype(np.float32),
              0.7),
             ('zero-size boxes (x2 == x1)', np.array([[5, 5, 5, 5, 0.5]] * 70 + [[5, 5, 6, 6, 0.6]] * 3,
                                                     np.float32), 0.3),
             ('equal scores everywhere', np.column_stack([random_dets(np.random.default_rng(7), 500)[:, :4],
                                                          np.full(500, 0.5)]).astype(np.float32), 0.7)]
    # IoU exactly at the threshold: boxes of width 10 shifted so inter/union = 1/3 in exact arithmetic.
    shifted = np.array([[0, 0, 9, 9, 0.9], [5, 0, 14, 9, 0.8]], np.float32)
    cases.append(('IoU exactly 1/3 at thresh 1/3', shifted, 1 / 3))
    cases.append(('IoU exactly 1/3 at thresh 0.333', shifted, 0.333))
    for n in (63, 64, 65, 127, 128, 129):  # around the kernel's 64-box blocks
        cases.append((f'{n} random boxes', random_dets(np.random.default_rng(n), n), 0.7))
    cases.append(('12000 boxes at one spot', np.column_stack([
        np.tile([100, 100, 200, 200], (12000, 1)) + np.random.default_rng(3).integers(0, 3, (12000, 4)),
        np.random.default_rng(4).uniform(0, 1, 12000)]).astype(np.float32), 0.7))
    return cases


def nms_worker(use_gpu, repeats):
    """Compare GPU and CPU NMS (or, without a GPU, CPU NMS and a numpy reference), time both. Prints JSON."""
    import numpy as np
    from nms.cpu_nms import cpu_nms
    from nms.gpu_nms import gpu_nms  # the built extension must import, GPU or not
    from nms.py_cpu_nms import py_cpu_nms
    other = (lambda d, t: gpu_nms(d, t, device_id=0)) if use_gpu else py_cpu_nms
    rng = np.random.default_rng(0)
    cases = degenerate_cases()
    for seed in range(12):
        n = int(rng.choice([2, 17, 300, 1000, 3000, 6000]))
        cases.append((f'random n={n} seed={seed}', random_dets(np.random.default_rng(seed), n),
                      float(rng.choice([0.3, 0.5, 0.7]))))
    mismatches, kept = [], {}
    for name, dets, thresh in cases:
        a, b = cpu_nms(dets, thresh), other(dets, thresh)
        kept[name] = int(len(a))
        if not np.array_equal(a, b):
            mismatches.append(name)
    timings = {}
    for n in NMS_TIMED_SIZES:
        dets = random_dets(np.random.default_rng(n), n)
        row = {}
        for label, fn in (('cpu_ms', cpu_nms), ('gpu_ms', gpu_nms if use_gpu else None)):
            if fn is None:
                continue
            fn(dets, 0.7)  # warm-up: the first GPU call creates the context
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn(dets, 0.7)
                times.append((time.perf_counter() - t0) * 1000)
            row[label] = round(statistics.median(times), 3)
        row['kept'] = int(len(cpu_nms(dets, 0.7)))
        timings[str(n)] = row
    print(json.dumps({'compared_with': 'gpu_nms' if use_gpu else 'numpy reference', 'cases': len(cases),
                      'mismatches': mismatches, 'kept': kept, 'timings': timings}))


def proposal_worker(use_gpu, feature_h, feature_w, repeats):
    """Time the proposal step (lib/rpn) on RPN outputs of one 600x1000 image; CPU and, with a GPU, GPU NMS."""
    import numpy as np
    from fast_rcnn.config import cfg
    from rpn.generate_anchors import generate_anchors, shifted_anchors
    from rpn.proposal import generate_proposals
    anchors = generate_anchors()
    a = anchors.shape[0]
    rng = np.random.default_rng(0)
    # The proposal layer's bottoms: object probabilities (1, 2A, H, W) and deltas (1, 4A, H, W).
    prob = rng.uniform(0, 1, (1, 2 * a, feature_h, feature_w)).astype(np.float32)
    deltas = (rng.normal(0, 0.2, (1, 4 * a, feature_h, feature_w))).astype(np.float32)
    settings = cfg.TEST

    def step(gpu_id):
        # the same reshapes ProposalLayer.forward does, then the shared pipeline
        scores = prob[:, a:, :, :].transpose(0, 2, 3, 1).reshape(-1)
        bbox_deltas = deltas.transpose(0, 2, 3, 1).reshape(-1, 4)
        all_anchors = shifted_anchors(anchors, feature_h, feature_w, 16)
        return generate_proposals(all_anchors, bbox_deltas, scores, 600, 1000,
                                  min_size=settings.RPN_MIN_SIZE, pre_nms_top_n=settings.RPN_PRE_NMS_TOP_N,
                                  post_nms_top_n=settings.RPN_POST_NMS_TOP_N,
                                  nms_thresh=settings.RPN_NMS_THRESH, nms_gpu_id=gpu_id)

    result = {'anchors': int(a * feature_h * feature_w), 'pre_nms_top_n': settings.RPN_PRE_NMS_TOP_N,
              'post_nms_top_n': settings.RPN_POST_NMS_TOP_N}
    outputs = {}
    for label, gpu_id in (('cpu_nms_ms', -1), ('gpu_nms_ms', 0)):
        if gpu_id >= 0 and not use_gpu:
            continue
        outputs[label] = step(gpu_id)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step(gpu_id)
            times.append((time.perf_counter() - t0) * 1000)
        result[label] = round(statistics.median(times), 3)
        result['proposals'] = int(len(outputs[label][0]))
    if len(outputs) == 2:
        (b1, s1), (b2, s2) = outputs.values()
        result['gpu_equals_cpu'] = bool(np.array_equal(b1, b2) and np.array_equal(s1, s2))
    print(json.dumps(result))


def run_worker(log, deadline, python, env, args, cap):
    """Run this file as a worker in ``python``; returns ``(parsed JSON or None, error text)``."""
    rc, out = run(log, [python, osp.abspath(__file__), *args], deadline.cap(cap), env=env)
    lines = [line for line in out.splitlines() if line.startswith('{')]
    if rc != 0 or not lines:
        return None, f'worker {args[0]} exit {rc}: {out.strip().splitlines()[-1] if out.strip() else ""}'
    return json.loads(lines[-1]), ''


# ------------------------------------------------------------------------------------------------------------
# the check
# ------------------------------------------------------------------------------------------------------------

def check_bundle(log, args, work):
    """Unpack, verify, locate CUDA's libraries, ldd. Returns ``(item, bundle root, env)``."""
    if not osp.isfile(args.bundle):
        missing = item('FAIL', f'{args.bundle} not found: run `make device-bundle`, carry build/device')
        return missing, None, None
    t0 = time.monotonic()
    try:
        bundle = unpack(args.bundle, work)
    except (OSError, ValueError, tarfile.TarError) as e:
        return item('FAIL', f'cannot unpack {args.bundle}: {e}'), None, None
    tools = load_bundle_tools()
    problems = tools.verify(bundle)
    with open(osp.join(bundle, tools.MANIFEST)) as f:
        manifest = json.load(f)
    data = {'archive_mb': round(osp.getsize(args.bundle) / 2**20, 1), 'key': manifest.get('key'),
            'arch': manifest.get('arch'), 'unpack_s': round(time.monotonic() - t0, 1)}
    need = tuple(int(x) for x in manifest['glibc_required'].split('.')) if manifest['glibc_required'] else ()
    have = glibc_version()
    data['glibc'] = {'required': manifest['glibc_required'], 'here': '.'.join(map(str, have))}
    if have < need:
        problems.append(f'glibc {data["glibc"]["here"]} is older than the bundle needs ({need})')
    wanted = [n for n in manifest['external_libs'] if n in tools.CUDA_LIBS and n != 'libcuda.so.1']
    # the driver adds these at run time (cuBLAS loads cuBLASLt), so look for them even if not NEEDED
    for extra in ('libcublasLt.so.13',):
        if extra not in wanted:
            wanted.append(extra)
    found = find_libs(wanted, cuda_lib_candidates())
    data['cuda_libs'] = {n: found.get(n) for n in wanted}
    missing = [n for n in wanted if n not in found]
    if missing:
        problems.append(f'CUDA libraries not found: {missing} (looked in this Python\'s nvidia/*/lib, '
                        f'torch/lib, $CUDA_HOME, /usr/local/cuda; set FRCNN_CUDA_LIBS)')
    lib_dirs = list(dict.fromkeys(found.values()))
    driver = driver_lib()
    if driver:
        lib_dirs.append(osp.dirname(driver))
    search = ':'.join(lib_dirs + [os.environ.get('LD_LIBRARY_PATH', '')]).strip(':')
    env = dict(os.environ, LD_LIBRARY_PATH=search)
    not_found = []
    for rel in ('bin/caffe', 'bin/test.testbin'):
        rc, out = run(log, ['ldd', osp.join(bundle, rel)], 30, env=env)
        not_found += [f'{rel}: {m}' for m in re.findall(r'^\s*(\S+) => not found', out, re.M)]
        if rc != 0:
            not_found.append(f'{rel}: ldd exit {rc}')
    if not_found:
        problems.append(f'ldd: {not_found}')
    data['ld_library_path'] = env['LD_LIBRARY_PATH']
    if problems:
        return item('FAIL', '; '.join(problems[:6]), problems=problems, **data), None, None
    detail = (f'{data["archive_mb"]} MiB archive, {len(manifest["files"])} files verified, '
              f'CUDA libs from {", ".join(lib_dirs) or "-"}')
    return item('PASS', detail, **data), bundle, env


def check_gpu_info(log, deadline, bundle, env, gpu, gpu_reason):
    """nvidia-smi, driver / runtime versions, `caffe device_query`."""
    data = {}
    try:
        cudart = find_libs(['libcudart.so.13'], env['LD_LIBRARY_PATH'].split(':'))['libcudart.so.13']
        data['cuda_runtime'] = cuda_version(osp.join(cudart, 'libcudart.so.13'), 'cudaRuntimeGetVersion')
    except (KeyError, OSError, RuntimeError, AttributeError) as e:
        data['cuda_runtime'] = f'unknown ({e})'
    driver = driver_lib()
    if driver:
        try:
            data['cuda_driver_api'] = cuda_version(driver, 'cuDriverGetVersion')
        except (OSError, RuntimeError, AttributeError) as e:
            data['cuda_driver_api'] = f'unknown ({e})'
    else:
        data['cuda_driver_api'] = 'no libcuda.so.1 (no NVIDIA driver)'
    if not gpu:
        return item('SKIP', f'{gpu_reason}; CUDA runtime {data["cuda_runtime"]}, driver API '
                            f'{data["cuda_driver_api"]}', **data)
    run(log, ['nvidia-smi'], 30)
    query = '--query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm'
    rc, out = run(log, ['nvidia-smi', query, '--format=csv,noheader'], 30)
    data['nvidia_smi'] = out.strip()
    rc_q, out_q = run(log, [osp.join(bundle, 'bin', 'caffe'), 'device_query', '-gpu=0'], deadline.cap(60),
                      env=dict(env, GLOG_logtostderr='1'), cwd=bundle)
    m = re.search(r'Name:\s+(.*)', out_q)
    data['caffe_device'] = m.group(1).strip() if m else None
    ok = rc == 0 and rc_q == 0 and data['caffe_device']
    detail = (f'{data["nvidia_smi"]}; runtime {data["cuda_runtime"]}, driver API {data["cuda_driver_api"]}; '
              f'caffe device_query exit {rc_q}')
    return item('PASS' if ok else 'FAIL', detail, **data)


def build_lib(log, deadline, python, work):
    """Copy lib/ and build its extensions with ``python`` (GPU NMS when nvcc is found). Returns (dir, err)."""
    dest = osp.join(work, 'lib')
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(osp.join(REPO, 'lib'), dest, ignore=shutil.ignore_patterns('*.so', 'build', '__pycache__',
                                                                              '*.c', '*.cpp'))
    probe = ('import sysconfig, os, numpy, Cython, setuptools; h = sysconfig.get_paths()["include"]; '
             'print(h if os.path.isfile(os.path.join(h, "Python.h")) else "no Python.h in " + h)')
    rc, out = run(log, [python, '-c', probe], 60)
    if rc != 0 or out.startswith('no Python.h'):
        tail = out.strip().splitlines()[-1] if out.strip() else ''
        return None, f'{python} cannot build lib/ (needs numpy, Cython, setuptools and its headers): {tail}'
    env = dict(os.environ)
    env.pop('CAFFE_VARIANT', None)
    if not shutil.which('nvcc') and osp.isfile('/usr/local/cuda/bin/nvcc'):
        env['PATH'] = '/usr/local/cuda/bin:' + env.get('PATH', '')
    rc, out = run(log, [python, 'setup.py', 'build_ext', '--inplace', '-j', str(min(8, os.cpu_count() or 1))],
                  deadline.cap(240), env=env, cwd=dest)
    if rc != 0:
        tail = out.strip().splitlines()[-1] if out.strip() else ''
        return None, f'building lib/ with {python} failed (exit {rc}): {tail}'
    if 'GPU NMS built' not in out:
        return None, f'lib/ built without GPU NMS: {out.strip().splitlines()[-1]}'
    return dest, ''


def check_nms(log, deadline, python, lib_env, gpu, gpu_reason, err):
    """GPU vs CPU NMS keeps and times (see nms_worker)."""
    if err:
        return item('FAIL', err)
    result, err = run_worker(log, deadline, python, lib_env, ['--nms-worker', str(int(gpu)), '20'], 180)
    if result is None:
        return item('FAIL', err)
    t = result['timings']
    times = ', '.join(f'{n}: cpu {r["cpu_ms"]} ms' + (f' gpu {r["gpu_ms"]} ms' if 'gpu_ms' in r else '')
                      for n, r in t.items())
    ok = not result['mismatches']
    detail = (f'{result["cases"] - len(result["mismatches"])}/{result["cases"]} cases identical '
              f'(cpu_nms vs {result["compared_with"]}); {times}')
    if not ok:
        detail += f'; differ: {result["mismatches"][:6]}'
    if not gpu:
        return item('SKIP' if ok else 'FAIL', f'{gpu_reason}: GPU NMS built and imported, not run; {detail}',
                    **result)
    return item('PASS' if ok else 'FAIL', detail, **result)


def check_table4(log, deadline, bundle, env, python, lib_env, gpu, gpu_reason, lib_err):
    """Table 4 timings (GPU), or without a GPU one CPU iteration of each net (they load and run)."""
    with open(osp.join(bundle, 'nets', 'nets.json')) as f:
        nets = json.load(f)['nets']
    rows, problems = {}, []
    for key, desc in nets.items():
        row = {}
        for part, iters, cap in (('conv', 20, 90), ('region', 20, 90), ('train', 10, 120)):
            if part == 'train' and key != 'vgg16' and gpu:
                continue  # the issue asks for VGG-16's train net; ZF's runs only in the CPU proof (cheap)
            spec = desc[part]
            rc, t = caffe_time(log, deadline, bundle, env, spec['file'], spec['phase'],
                               iters if gpu else 1, gpu, cap)
            if rc != 0 or t['forward'] is None:
                problems.append(f'{key} {part}: caffe time exit {rc}')
                continue
            if part == 'conv':
                rpn = sum(t['layers'].get(n, {}).get('forward', 0) for n in spec['rpn_layers'])
                row['conv_ms'] = round(t['forward'] - rpn, 2)
                row['rpn_head_ms'] = round(rpn, 2)
            elif part == 'region':
                row['region_ms'] = round(t['forward'], 2)
            else:
                row['train_forward_backward_ms'] = round(t['forward_backward'], 2)
        if lib_err:
            problems.append(f'{key} proposal: {lib_err}')
        else:
            h, w = desc['feature_shape'][2:]
            result, err = run_worker(log, deadline, python, lib_env,
                                     ['--proposal-worker', str(int(gpu)), str(h), str(w), '20'], 120)
            if result is None:
                problems.append(f'{key} proposal: {err}')
            else:
                row['proposal'] = result
                if gpu and not result.get('gpu_equals_cpu'):
                    problems.append(f'{key} proposal: GPU-NMS proposals differ from CPU-NMS ones')
                step = result.get('gpu_nms_ms', result['cpu_nms_ms'])
                if 'rpn_head_ms' in row:
                    row['proposal_ms'] = round(row['rpn_head_ms'] + step, 2)
        if all(k in row for k in ('conv_ms', 'proposal_ms', 'region_ms')):
            row['total_ms'] = round(row['conv_ms'] + row['proposal_ms'] + row['region_ms'], 2)
        row['paper_k40_ms'] = PAPER_TABLE4_MS.get(key)
        rows[key] = row
    summary = '; '.join(f'{k}: conv {r.get("conv_ms")} + proposal {r.get("proposal_ms")} + region '
                        f'{r.get("region_ms")} = {r.get("total_ms")} ms' for k, r in rows.items())
    if 'vgg16' in rows:
        summary += f'; vgg16 train fwd-bwd {rows["vgg16"].get("train_forward_backward_ms")} ms'
    if problems:
        return item('FAIL', '; '.join(problems[:6]) + f' | {summary}', nets=rows, problems=problems)
    if not gpu:
        return item('SKIP', f'{gpu_reason}: each net ran 1 CPU iteration (not Table 4): {summary}', nets=rows)
    return item('PASS', summary, nets=rows)


def main_check(args):
    """Run every item; write the log and results.json; exit 0 unless an item failed."""
    chosen = set(args.only.split(',')) if args.only else set(ITEMS)
    if chosen - set(ITEMS):
        raise SystemExit(f'bench/device_check.py: ERROR: unknown --only items {sorted(chosen - set(ITEMS))}')
    os.makedirs(args.out, exist_ok=True)
    log = Log(osp.join(args.out, 'device_check.log'))
    deadline = Deadline(args.limit)
    work = args.work
    results = {'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), 'host': platform.node(),
               'python': f'{sys.executable} {platform.python_version()}', 'items': {}}
    items = results['items']
    log.say(f'==> device check: bundle {args.bundle}, work {work}, output {args.out}, limit {args.limit} s')

    def record(name, entry):
        items[name] = entry
        log.say(f'{entry["status"]} {name}: {entry["detail"]}')
        with open(osp.join(args.out, 'results.json'), 'w') as f:
            json.dump(results, f, indent=1, sort_keys=True)

    entry, bundle, env = check_bundle(log, args, work)
    record('bundle', entry)
    gpu, gpu_reason = gpu_presence(log)
    results['gpu'] = gpu_reason if not gpu else gpu_reason.splitlines()[0]
    no_bundle = item('FAIL', 'not run: the bundle check failed')

    def wanted(name):
        """True when ``name`` is to run; else records it as SKIP (a partial re-run)."""
        if name in chosen:
            return True
        record(name, item('SKIP', 'not selected (--only)'))
        return False

    if wanted('gpu_info'):
        record('gpu_info', check_gpu_info(log, deadline, bundle, env, gpu, gpu_reason)
               if bundle else no_bundle)
    if 'nms' in chosen or 'table4' in chosen:
        # NMS needs only lib/ and this Python, so it runs even when the bundle is missing or broken.
        lib_dir, lib_err = build_lib(log, deadline, args.python, work)
        pylib = [osp.join(bundle, 'pylib')] if bundle else []
        lib_env = dict(env or os.environ, PYTHONPATH=':'.join([lib_dir or ''] + pylib))
    if wanted('nms'):
        record('nms', check_nms(log, deadline, args.python, lib_env, gpu, gpu_reason, lib_err))
    if wanted('table4'):
        record('table4', check_table4(log, deadline, bundle, env, args.python, lib_env, gpu, gpu_reason,
                                      lib_err) if bundle else no_bundle)
    # Last: the gtests are the likeliest to run long, so they get what the quicker items leave.
    if wanted('gtest_gpu'):
        if bundle is None:
            record('gtest_gpu', no_bundle)
        elif gpu:
            record('gtest_gpu', run_gtests(log, deadline, bundle, env, True, 300)[0])
        else:
            entry, plan = run_gtests(log, deadline, bundle, env, True, 0, execute=False)
            record('gtest_gpu', entry or item(
                'SKIP', f'{gpu_reason}: {plan["selected"]} GPU tests in {plan["instances"]} suite instances '
                        f'selected, not run', **plan))
            record('gtest_cpu', run_gtests(log, deadline, bundle, env, False, 240)[0])
    failed = [n for n, e in items.items() if e['status'] == 'FAIL']
    results['failed'] = failed
    results['seconds'] = round(args.limit - deadline.left() - deadline.reserve, 1)
    record('summary', item('FAIL' if failed else 'PASS', f'{len(items)} items, failed: '
                           f'{", ".join(failed) or "none"}; {results["seconds"]} s'))
    return 1 if failed else 0


def main(argv=None):
    """Command-line entry point (the check, or one of its workers)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == '--nms-worker':
        return nms_worker(bool(int(argv[1])), int(argv[2]))
    if argv and argv[0] == '--proposal-worker':
        return proposal_worker(bool(int(argv[1])), int(argv[2]), int(argv[3]), int(argv[4]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=os.environ.get('OUT') or osp.join(REPO, 'output', 'device_check'))
    parser.add_argument('--bundle', default=os.environ.get('DEVICE_BUNDLE', DEFAULT_BUNDLE))
    parser.add_argument('--work', default=os.environ.get('DEVICE_WORK', '/tmp/frcnn-device-check'))
    parser.add_argument('--python', default=sys.executable, help='the Python that builds and runs lib/')
    parser.add_argument('--only', default='', help=f'comma-separated items to run (default all: {ITEMS})')
    parser.add_argument('--limit', type=int, default=DEFAULT_LIMIT,
                        help='wall-clock budget of the whole check (s)')
    return main_check(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
