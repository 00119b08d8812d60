"""fast_rcnn.alt_opt: which layers are the RPN and the shared convs, and the final-model merge."""

import os

os.environ.setdefault('GLOG_minloglevel', '2')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

caffe = pytest.importorskip('caffe')

from fast_rcnn.alt_opt import (merge_final_model, rpn_layer_names, shared_layer_names,  # noqa: E402
                              stage_max_iters, stage_solvers)

NET = '''name: "mini"
layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "conv1_bn" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "conv1_scale" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "rpn_conv/3x3" type: "Convolution" bottom: "conv1" top: "rpn"
        convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "fc6" type: "InnerProduct" bottom: "conv1" top: "fc6"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 1 } } }
'''


@pytest.fixture
def nets(tmp_path, caffe_cpu):
    path = tmp_path / 'mini.prototxt'
    path.write_text(NET)
    caffe.set_random_seed(1)
    a = caffe.Net(str(path), caffe.TEST)
    b = caffe.Net(str(path), caffe.TEST)
    for name in ('conv1', 'conv1_scale'):
        for dst, src in zip(b.params[name], a.params[name]):
            dst.data[...] = src.data
    rng = np.random.default_rng(0)
    for name in ('rpn_conv/3x3', 'fc6'):
        for blob in b.params[name]:
            blob.data[...] = rng.normal(size=blob.data.shape)
    return a, b


def test_layer_roles(nets):
    net, _ = nets
    assert rpn_layer_names(net) == ['rpn_conv/3x3']
    assert shared_layer_names(net) == ['conv1', 'conv1_scale']  # BatchNorm statistics are not parameters


def test_merge_takes_the_rpn_from_the_rpn_model_and_keeps_the_rest(nets):
    detector, rpn = nets
    fc6 = [blob.data.copy() for blob in detector.params['fc6']]
    shared, rpn_layers = merge_final_model(detector, rpn)
    assert (shared, rpn_layers) == (['conv1', 'conv1_scale'], ['rpn_conv/3x3'])
    for dst, src in zip(detector.params['rpn_conv/3x3'], rpn.params['rpn_conv/3x3']):
        np.testing.assert_array_equal(dst.data, src.data)
    for blob, before in zip(detector.params['fc6'], fc6):
        np.testing.assert_array_equal(blob.data, before)


def test_merge_refuses_models_whose_shared_convs_differ(nets):
    detector, rpn = nets
    rpn.params['conv1_scale'][0].data[0] += 1e-3
    with pytest.raises(ValueError,
                       match='shared layer conv1_scale differs between r.caffemodel and d.caffemodel'):
        merge_final_model(detector, rpn, 'r.caffemodel', 'd.caffemodel')


def test_stage_solvers_and_their_iterations(tmp_path):
    names = ['stage1_rpn_solver60k80k.pt', 'stage1_fast_rcnn_solver30k40k.pt', 'stage2_rpn_solver60k80k.pt',
             'stage2_fast_rcnn_solver30k40k.pt']
    for name, body in zip(names, ['max_iter: 7', '', 'max_iter: 9', 'max_iter: 11']):
        (tmp_path / name).write_text(f'train_net: "x.pt"\nbase_lr: 0.001\n{body}\n')
    solvers = stage_solvers(str(tmp_path))
    assert [p.split('/')[-1] for p in solvers] == names
    assert stage_max_iters(solvers) == [7, 40000, 9, 11]  # no max_iter: the released stage length
    assert stage_max_iters(solvers, [1, 2, 3, 4]) == [1, 2, 3, 4]
    (tmp_path / 'stage2_rpn_solver.pt').write_text('train_net: "x.pt"\n')
    with pytest.raises(ValueError, match=r'expected one solver stage2_rpn_solver\*\.pt in .*found 2'):
        stage_solvers(str(tmp_path))
