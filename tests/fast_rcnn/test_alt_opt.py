"""fast_rcnn.alt_opt: which layers are the RPN and the shared convs, and the final-model merge."""

import os

os.environ.setdefault('GLOG_minloglevel', '2')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

caffe = pytest.importorskip('caffe')

from fast_rcnn.alt_opt import merge_final_model, rpn_layer_names, shared_layer_names  # noqa: E402

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
