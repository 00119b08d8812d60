"""fast_rcnn.models: class-count adaptation of net and solver prototxts."""

import glob
import os
import os.path as osp

os.environ.setdefault('GLOG_minloglevel', '2')  # before caffe is imported: keep Caffe's logging quiet

import pytest  # noqa: E402
from google.protobuf import text_format  # noqa: E402

import caffe  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402
from fast_rcnn.config import cfg  # noqa: E402
from fast_rcnn.models import (adapt_net, adapt_prototxt, adapt_solver, read_net, read_solver,  # noqa: E402
                              rewrite_num_classes)

# A miniature detector with the released layer names: data layer, RoI pooling, a head, and one unrelated
# Python layer whose param_str has no num_classes.
DETECTOR = """
name: "tiny"
layer { name: "input-data" type: "Python" top: "data" top: "rois" top: "labels"
  python_param { module: "roi_data_layer.layer" layer: "RoIDataLayer" param_str: "'num_classes': 21" } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 } }
layer { name: "proposal" type: "Python" bottom: "conv1" top: "rpn_rois"
  python_param { module: "rpn.proposal_layer" layer: "ProposalLayer" param_str: "'feat_stride': 16" } }
layer { name: "roi-data" type: "Python" bottom: "rpn_rois" top: "r"
  python_param { module: "rpn.proposal_target_layer" layer: "ProposalTargetLayer"
                 param_str: "'num_classes': 21\\n'other': 7" } }
layer { name: "roi_pool5" type: "ROIPooling" bottom: "conv1" bottom: "rois" top: "pool5"
  roi_pooling_param { pooled_w: 6 pooled_h: 6 spatial_scale: 0.0625 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool5" top: "fc6" inner_product_param { num_output: 21 } }
layer { name: "cls_score" type: "InnerProduct" bottom: "fc6" top: "cls_score"
  inner_product_param { num_output: 21 } }
layer { name: "bbox_pred" type: "InnerProduct" bottom: "fc6" top: "bbox_pred"
  inner_product_param { num_output: 84 } }
"""

RPN_ONLY = """
name: "rpn"
layer { name: "input-data" type: "Python" top: "data"
  python_param { module: "roi_data_layer.layer" layer: "RoIDataLayer" param_str: "'num_classes': 21" } }
layer { name: "rpn_cls_score" type: "Convolution" bottom: "data" top: "rpn_cls_score"
  convolution_param { num_output: 18 kernel_size: 1 } }
"""

SOLVER = """
train_net: "models/pascal_voc/ZF/faster_rcnn_alt_opt/stage1_rpn_train.pt"
base_lr: 0.001
lr_policy: "step"
snapshot_prefix: "zf_rpn"
"""


def _write(tmp_path, name, text):
    """Write ``text`` to ``tmp_path/name`` and return the path."""
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def read_net_text(text):
    """Parse a text-format NetParameter held in a string."""
    return text_format.Merge(text, caffe_pb2.NetParameter())


def _layers(net):
    """``{name: layer}`` of a NetParameter."""
    return {layer.name: layer for layer in net.layer}


def test_adapt_prototxt_sets_head_and_python_num_classes(tmp_path):
    src = _write(tmp_path, 'src.pt', DETECTOR)
    dst = str(tmp_path / 'dst.pt')
    assert adapt_prototxt(src, dst, 5) == dst
    layers = _layers(read_net(dst))
    assert layers['cls_score'].inner_product_param.num_output == 5
    assert layers['bbox_pred'].inner_product_param.num_output == 20
    assert layers['input-data'].python_param.param_str == "'num_classes': 5"
    assert layers['roi-data'].python_param.param_str == "'num_classes': 5\n'other': 7"


def test_adapt_prototxt_leaves_unrelated_layers_untouched(tmp_path):
    src = _write(tmp_path, 'src.pt', DETECTOR)
    dst = adapt_prototxt(src, str(tmp_path / 'dst.pt'), 3)
    before, after = _layers(read_net(src)), _layers(read_net(dst))
    assert list(before) == list(after)
    for name in ('conv1', 'proposal', 'roi_pool5', 'fc6'):
        assert after[name] == before[name], name
    # fc6 happens to have 21 outputs: only the head's counts follow the class list.
    assert after['fc6'].inner_product_param.num_output == 21
    assert after['proposal'].python_param.param_str == "'feat_stride': 16"


def test_adapt_to_voc_count_is_identity(tmp_path):
    src = _write(tmp_path, 'src.pt', DETECTOR)
    dst = adapt_prototxt(src, str(tmp_path / 'dst.pt'), 21)
    assert read_net(dst) == read_net(src)


def test_detector_without_head_is_an_error(tmp_path):
    src = _write(tmp_path, 'src.pt', DETECTOR.replace('"bbox_pred"', '"box_out"'))
    with pytest.raises(ValueError, match='bbox_pred'):
        adapt_prototxt(src, str(tmp_path / 'dst.pt'), 3)


def test_head_required_explicitly(tmp_path):
    src = _write(tmp_path, 'rpn.pt', RPN_ONLY)
    with pytest.raises(ValueError, match='cls_score or bbox_pred'):
        adapt_prototxt(src, str(tmp_path / 'dst.pt'), 3, require_head=True)


def test_half_a_head_is_an_error_even_when_not_required():
    net = read_net_text(DETECTOR.replace('"cls_score"', '"scores"'))
    with pytest.raises(ValueError, match='cls_score'):
        adapt_net(net, 3, require_head=False)


def test_rpn_only_net_gets_python_num_classes(tmp_path):
    src = _write(tmp_path, 'rpn.pt', RPN_ONLY)
    layers = _layers(read_net(adapt_prototxt(src, str(tmp_path / 'dst.pt'), 7)))
    assert layers['input-data'].python_param.param_str == "'num_classes': 7"
    assert layers['rpn_cls_score'].convolution_param.num_output == 18


def test_head_layer_must_be_inner_product():
    net = read_net_text(DETECTOR.replace('name: "cls_score" type: "InnerProduct"',
                                         'name: "cls_score" type: "Convolution"'))
    with pytest.raises(ValueError, match='Convolution'):
        adapt_net(net, 3)


@pytest.mark.parametrize('bad', [1, 0, 2.0, True, '3'])
def test_bad_class_count_is_rejected(bad):
    with pytest.raises(ValueError, match='num_classes'):
        adapt_net(read_net_text(DETECTOR), bad)


@pytest.mark.parametrize('text, expected', [
    ("'num_classes': 21", "'num_classes': 4"),
    ('"num_classes": 21', '"num_classes": 4'),
    ('num_classes:21', 'num_classes:4'),
    ("'feat_stride': 16\n'num_classes': 81", "'feat_stride': 16\n'num_classes': 4"),
    ("'feat_stride': 16", "'feat_stride': 16"),
])
def test_rewrite_num_classes(text, expected):
    assert rewrite_num_classes(text, 4) == expected


def test_adapt_solver_points_at_adapted_net(tmp_path):
    src = _write(tmp_path, 'solver.pt', SOLVER + 'net: "other.pt"\n')
    dst = adapt_solver(src, str(tmp_path / 'out.pt'), '/abs/train.pt', snapshot_prefix='custom')
    solver = read_solver(dst)
    assert solver.train_net == '/abs/train.pt'
    assert not solver.HasField('net')
    assert solver.snapshot_prefix == 'custom'
    assert solver.base_lr == pytest.approx(0.001)
    assert solver.lr_policy == 'step'


def test_adapt_solver_keeps_snapshot_prefix_by_default(tmp_path):
    src = _write(tmp_path, 'solver.pt', SOLVER)
    solver = read_solver(adapt_solver(src, str(tmp_path / 'out.pt'), 'train.pt'))
    assert solver.snapshot_prefix == 'zf_rpn'


def _voc_net_prototxts():
    """Every net prototxt under models/pascal_voc (solvers excluded)."""
    paths = glob.glob(osp.join(cfg.MODELS_DIR, '*', '*', '*.pt')) + \
        glob.glob(osp.join(cfg.MODELS_DIR, '*', '*', '*.prototxt'))
    return sorted(p for p in paths if 'solver' not in osp.basename(p))


@pytest.mark.parametrize('path', _voc_net_prototxts(), ids=lambda p: osp.relpath(p, cfg.MODELS_DIR))
def test_voc_prototxts_adapt(path, tmp_path):
    """The shipped nets adapt with the default head detection, and every class count follows K."""
    net = adapt_net(read_net(path), 6, source=path)
    layers = _layers(net)
    if 'cls_score' in layers:
        assert layers['cls_score'].inner_product_param.num_output == 6
        assert layers['bbox_pred'].inner_product_param.num_output == 24
    for layer in net.layer:
        assert '21' not in layer.python_param.param_str, layer.name


@pytest.mark.parametrize('rel, has_rpn', [('ZF/faster_rcnn_alt_opt/faster_rcnn_test.pt', False),
                                           ('ZF/faster_rcnn_alt_opt/stage1_fast_rcnn_train.pt', False),
                                           ('ZF/faster_rcnn_end2end/train.prototxt', True)])
def test_adapted_nets_build_in_caffe(rel, has_rpn, tmp_path, monkeypatch):
    """Caffe's setup checks the head against the Python layers' blob shapes (e.g. bbox_targets is 4K wide)."""
    caffe.set_mode_cpu()
    monkeypatch.setitem(cfg.TRAIN, 'HAS_RPN', has_rpn)  # the data layer's mode must match its tops
    phase = caffe.TEST if 'test' in osp.basename(rel) else caffe.TRAIN
    net = caffe.Net(adapt_prototxt(osp.join(cfg.MODELS_DIR, rel), str(tmp_path / 'net.pt'), 6), phase)
    assert net.params['cls_score'][0].data.shape == (6, 4096)
    assert net.params['bbox_pred'][0].data.shape == (24, 4096)
    if phase == caffe.TRAIN:
        assert net.blobs['bbox_targets'].data.shape[1] == 24
