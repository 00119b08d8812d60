"""The GPU device check's parts that can be proven without a GPU (docs/device-check.md).

Always: the library collector and closure check on real ELF files, the gtest GPU/CPU split on the test binary
`make` built (checked by gtest itself), the `caffe time` parser, CUDA-library lookup, and the derived timing
nets against the original test net (same outputs from the same weights). When `make device-bundle` has been
run: the archive in build/device/ matches its manifest, needs nothing outside itself but glibc and CUDA,
and its binaries list their tests here.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault('GLOG_minloglevel', '2')

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = REPO / 'build' / 'device' / 'frcnn-device.tar.xz'


def load(name, path):
    """Import a script that is not on sys.path as a module."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bundle = load('frcnn_bundle', REPO / 'caffe-fast-rcnn' / 'device' / 'bundle.py')
check = load('frcnn_device_check', REPO / 'bench' / 'device_check.py')
nets = load('frcnn_device_nets', REPO / 'bench' / 'device_nets.py')


def build_env():
    """build/caffe.env (written by caffe-fast-rcnn/build.sh) as a dict."""
    path = REPO / 'build' / 'caffe.env'
    assert path.is_file(), f'{path} is missing: run `make`'
    return dict(line.split('=', 1) for line in path.read_text().split())


# ---- collector and closure check ---------------------------------------------------------------------------

def system_binary_with_a_dependency():
    """A system program that needs one non-glibc library: (path, that library's soname)."""
    for prog, lib in (('xz', 'liblzma.so.5'), ('gzip', None), ('tar', 'libacl.so.1')):
        path = shutil.which(prog)
        if path and lib and lib in bundle.ldd(path):
            return Path(path), lib
    pytest.fail('no xz or tar linked to liblzma / libacl on this machine to test the collector with')


def test_closure_check_names_a_missing_library_and_a_wrong_rpath(tmp_path):
    prog, lib = system_binary_with_a_dependency()
    (tmp_path / 'bin').mkdir()
    (tmp_path / 'lib').mkdir()
    shutil.copy(prog, tmp_path / 'bin' / prog.name)
    problems = bundle.closure_problems(tmp_path)
    assert any(f'needs {lib}' in p for p in problems), problems
    assert any('has RPATH None' in p for p in problems), problems
    shutil.copy(bundle.ldd(prog)[lib], tmp_path / 'lib' / lib)
    assert not any('needs' in p for p in bundle.closure_problems(tmp_path))


def test_collect_copies_the_closure_but_not_glibc(tmp_path):
    prog, lib = system_binary_with_a_dependency()
    (tmp_path / 'bin').mkdir()
    shutil.copy(prog, tmp_path / 'bin' / prog.name)
    copied = bundle.collect(tmp_path)
    assert lib in copied
    shipped = {p.name for p in (tmp_path / 'lib').iterdir()}
    assert shipped == set(copied) and not shipped & bundle.GLIBC_LIBS
    assert not any('needs' in p for p in bundle.closure_problems(tmp_path))


def test_verify_reports_changed_missing_and_extra_files(tmp_path):
    prog, _ = system_binary_with_a_dependency()
    (tmp_path / 'bin').mkdir()
    shutil.copy(prog, tmp_path / 'bin' / prog.name)
    bundle.collect(tmp_path)
    (tmp_path / 'notes.txt').write_text('a')
    manifest = bundle.describe(tmp_path)
    assert manifest['glibc_required'] >= '2.'
    (tmp_path / bundle.MANIFEST).write_text(__import__('json').dumps(manifest))
    base = [p for p in bundle.verify(tmp_path) if 'RPATH' not in p]
    assert base == []
    (tmp_path / 'notes.txt').write_text('b')
    (tmp_path / 'extra.txt').write_text('c')
    next(p for p in (tmp_path / 'lib').iterdir()).unlink()
    problems = bundle.verify(tmp_path)
    assert any(p.startswith('notes.txt: differs') for p in problems)
    assert any(p.startswith('extra.txt: not in') for p in problems)
    assert any(p.endswith(': missing') for p in problems)
    assert any('needs' in p for p in problems)


# ---- gtest selection ---------------------------------------------------------------------------------------

def gpu_fixtures(caffe_dir):
    """GPUDeviceTest fixtures in the test sources, as build-bundle.sh writes them for the device."""
    text = ''.join(p.read_text() for p in (Path(caffe_dir) / 'src' / 'src' / 'caffe' / 'test').glob('*.c*')
                   if p.is_file())
    import re
    return set(re.findall(r'class (\w+) *: *public GPUDeviceTest', text))


def test_gtest_split_matches_what_gtest_selects():
    env = build_env()
    binary = env['CAFFE_TEST_BIN']
    listing = subprocess.run([binary, '--gtest_list_tests'], capture_output=True, text=True,
                             check=True).stdout
    instances = check.parse_listing(listing)
    gpu = check.split_gpu_cpu(instances, gpu_fixtures(env['CAFFE_DIR']))
    total = sum(len(t) for _, t in instances)
    gpu_filter, n_gpu = check.gtest_filter(instances, gpu, True)
    cpu_filter, n_cpu = check.gtest_filter(instances, gpu, False)
    if env['CAFFE_VARIANT'] == 'cuda':
        assert gpu['ROIPoolingLayerTest/2'] and gpu['SmoothL1LossLayerTest/3']
        assert not gpu['ROIPoolingLayerTest/0'] and not gpu['SmoothL1LossLayerTest/1']
        assert n_gpu > 0
    # every test is in exactly one selection, except CPU instances' tests named *GPU* (in neither)
    assert n_gpu + n_cpu <= total
    for filt, n in ((gpu_filter, n_gpu), (cpu_filter, n_cpu)):
        if n == 0:
            continue
        listed = subprocess.run([binary, '--gtest_list_tests', f'--gtest_filter={filt}'], capture_output=True,
                                text=True, check=True).stdout
        assert sum(len(t) for _, t in check.parse_listing(listed)) == n


def test_gtest_output_parser():
    text = ('[==========] 12 tests from 3 test cases ran. (40 ms total)\n[  PASSED  ] 10 tests.\n'
            '[  FAILED  ] 2 tests, listed below:\n[  FAILED  ] NetTest/2.TestReshape, where TypeParam = x\n'
            '[  FAILED  ] ROIPoolingLayerTest/3.TestGradient\n')
    r = check.parse_gtest_output(text)
    assert r == {'ran': 12, 'passed': 10,
                 'failed': ['NetTest/2.TestReshape', 'ROIPoolingLayerTest/3.TestGradient']}
    assert check.parse_gtest_output('Segmentation fault') == {'ran': None, 'passed': None, 'failed': []}


# ---- caffe time, CUDA libraries, glibc ---------------------------------------------------------------------

CAFFE_TIME_SAMPLE = """\
I1201 20:40:01.000000  1 caffe.cpp:397] Average time per layer:
I1201 20:40:01.000000  1 caffe.cpp:400]      conv1\tforward: 1.5 ms.
I1201 20:40:01.000000  1 caffe.cpp:403]      conv1\tbackward: 0.25 ms.
I1201 20:40:01.000000  1 caffe.cpp:400] rpn_conv/3x3\tforward: 0.5 ms.
I1201 20:40:01.000000  1 caffe.cpp:403] rpn_conv/3x3\tbackward: 0 ms.
I1201 20:40:01.000000  1 caffe.cpp:408] Average Forward pass: 2.125 ms.
I1201 20:40:01.000000  1 caffe.cpp:410] Average Backward pass: 0.3 ms.
I1201 20:40:01.000000  1 caffe.cpp:412] Average Forward-Backward: 2.5 ms.
"""


def test_caffe_time_parser():
    t = check.parse_caffe_time(CAFFE_TIME_SAMPLE)
    assert (t['forward'], t['backward'], t['forward_backward']) == (2.125, 0.3, 2.5)
    assert t['layers'] == {'conv1': {'forward': 1.5, 'backward': 0.25},
                           'rpn_conv/3x3': {'forward': 0.5, 'backward': 0.0}}
    assert check.parse_caffe_time('F1201 check failed')['forward'] is None


def test_cuda_libraries_are_found_in_wheel_layouts(tmp_path, monkeypatch):
    monkeypatch.delenv('FRCNN_CUDA_LIBS', raising=False)
    monkeypatch.setenv('CUDA_HOME', str(tmp_path / 'no-toolkit'))
    site = tmp_path / 'site-packages'
    for sub, name in (('cu13/lib', 'libcudart.so.13'), ('cu13/lib', 'libcublas.so.13'),
                      ('curand/lib', 'libcurand.so.10')):
        (site / 'nvidia' / sub).mkdir(parents=True, exist_ok=True)
        (site / 'nvidia' / sub / name).write_bytes(b'')
    dirs = check.cuda_lib_candidates([str(site)])
    found = check.find_libs(['libcudart.so.13', 'libcublas.so.13', 'libcurand.so.10', 'libnothere.so'], dirs)
    assert found['libcudart.so.13'].endswith('nvidia/cu13/lib')
    assert found['libcurand.so.10'].endswith('nvidia/curand/lib')
    assert 'libnothere.so' not in found


def test_glibc_version_is_read():
    assert check.glibc_version() >= (2, 17)


# ---- the derived timing nets -------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def zf_nets(tmp_path_factory):
    """The ZF nets derived at a small image size (the same code as for 600x1000), and their description."""
    import caffe  # noqa: F401  (pycaffe from `make`)
    out = tmp_path_factory.mktemp('nets')
    sys.path.insert(0, str(REPO / 'lib'))
    description = nets.derive_all(str(out), nets={'zf': 'ZF'}, image_shape=(1, 3, 160, 224), num_rois=7)
    return out, description['nets']['zf']


def test_derived_nets_have_no_python_layer_and_take_the_right_inputs(zf_nets):
    out, desc = zf_nets
    for part in ('conv', 'region', 'train'):
        net = nets.read_net(str(out / desc[part]['file']))
        assert not [layer.name for layer in net.layer if layer.type == 'Python']
    region = nets.read_net(str(out / desc['region']['file']))
    assert list(region.layer[0].top) == ['conv5', 'rois']
    assert list(region.layer[0].input_param.shape[1].dim) == [7, 5]
    assert desc['conv']['rpn_layers'][:2] == ['rpn_conv/3x3', 'rpn_relu/3x3']
    train = nets.read_net(str(out / desc['train']['file']))
    inputs = [t for layer in train.layer if layer.type == 'Input' for t in layer.top]
    assert inputs == ['data', 'rpn_labels', 'rpn_bbox_targets', 'rpn_bbox_inside_weights',
                      'rpn_bbox_outside_weights', 'rois', 'labels', 'bbox_targets', 'bbox_inside_weights',
                      'bbox_outside_weights']
    assert {layer.type for layer in train.layer} >= {'SoftmaxWithLoss', 'SmoothL1Loss', 'ROIPooling'}


def test_conv_and_region_nets_compute_what_the_test_net_computes(zf_nets, monkeypatch):
    """Same random weights, same image: the conv net's RPN outputs and the region net's class scores on the
    test net's own proposals equal the full test net's (which runs the Python proposal layer)."""
    import caffe
    from fast_rcnn.config import cfg
    out, desc = zf_nets
    caffe.set_mode_cpu()
    # keep tiny boxes: random weights give small proposals, and we want many rows through RoI pooling
    monkeypatch.setitem(cfg.TEST, 'RPN_MIN_SIZE', 0)
    monkeypatch.setitem(cfg.TEST, 'RPN_POST_NMS_TOP_N', 50)
    monkeypatch.setitem(cfg, 'GPU_ID', -1)  # CPU NMS: no GPU here
    full = caffe.Net(str(REPO / 'models/pascal_voc/ZF/faster_rcnn_end2end/test.prototxt'), caffe.TEST)
    conv = caffe.Net(str(out / desc['conv']['file']), caffe.TEST)
    region = caffe.Net(str(out / desc['region']['file']), caffe.TEST)
    rng = np.random.default_rng(0)
    for name, blobs in full.params.items():
        for i, blob in enumerate(blobs):
            blob.data[...] = rng.normal(0, 0.01, blob.data.shape)
            target = conv if name in conv.params else region
            target.params[name][i].data[...] = blob.data
    image = rng.normal(0, 20, (1, 3, 160, 224)).astype(np.float32)
    full.blobs['data'].reshape(*image.shape)
    full.blobs['im_info'].reshape(1, 3)
    full.blobs['data'].data[...] = image
    full.blobs['im_info'].data[...] = [160, 224, 1.0]
    full.forward()
    rois = full.blobs['rois'].data.copy()
    assert rois.shape[0] > 10
    conv.blobs['data'].data[...] = image
    conv.forward()
    np.testing.assert_array_equal(conv.blobs['rpn_cls_prob_reshape'].data,
                                  full.blobs['rpn_cls_prob_reshape'].data)
    np.testing.assert_array_equal(conv.blobs['rpn_bbox_pred'].data, full.blobs['rpn_bbox_pred'].data)
    region.blobs['conv5'].data[...] = conv.blobs['conv5'].data
    region.blobs['rois'].reshape(*rois.shape)
    region.blobs['rois'].data[...] = rois
    region.reshape()
    region.forward()
    np.testing.assert_array_equal(region.blobs['cls_prob'].data, full.blobs['cls_prob'].data)
    np.testing.assert_array_equal(region.blobs['bbox_pred'].data, full.blobs['bbox_pred'].data)


# ---- the built bundle (only after `make device-bundle`) ----------------------------------------------------

@pytest.fixture(scope='module')
def unpacked(tmp_path_factory):
    if not ARCHIVE.is_file():
        pytest.skip(f'{ARCHIVE.relative_to(REPO)} not built: run `make device-bundle` (~15 min at first)')
    return Path(check.unpack(str(ARCHIVE), str(tmp_path_factory.mktemp('bundle'))))


def test_bundle_matches_its_manifest_and_is_self_contained(unpacked):
    assert bundle.verify(unpacked) == []
    manifest = __import__('json').loads((unpacked / bundle.MANIFEST).read_text())
    assert set(manifest['external_libs']) <= bundle.EXTERNAL_LIBS
    # well under the 64 MiB the device tool carries, with the repository's own files beside it
    assert ARCHIVE.stat().st_size < 48 * 2**20


def test_bundle_binaries_load_with_only_cuda_added(unpacked):
    """ldd finds every library of the bundle's binaries from the bundle itself, CUDA's from the toolkit."""
    cuda = check.cuda_lib_candidates([])
    env = dict(os.environ, LD_LIBRARY_PATH=':'.join(cuda))
    for rel in ('bin/caffe', 'bin/test.testbin'):
        resolved = bundle.ldd(unpacked / rel, env)
        assert None not in resolved.values(), (rel, resolved)
        for name, path in resolved.items():
            if name not in bundle.EXTERNAL_LIBS and not name.startswith('libcaffe'):
                assert Path(path).resolve().parent == (unpacked / 'lib').resolve(), (rel, name, path)
    listing = subprocess.run([str(unpacked / 'bin' / 'test.testbin'), '--gtest_list_tests'], env=env,
                             capture_output=True, text=True, check=True).stdout
    suites = {name.split('/')[0] for name, _ in check.parse_listing(listing)}
    assert set(check.OUR_SUITES) <= suites and 'Im2colKernelTest' in suites
