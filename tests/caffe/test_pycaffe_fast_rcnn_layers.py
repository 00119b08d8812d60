"""A net of a Python layer -> ROIPooling -> SmoothL1Loss, forward and backward in CPU mode, exact values.

Feature map 1 x 1 x 4 x 5 holds the first 20 digits of pi; the Python layer maps it to 2x - 1:
    pi:  3 1 4 1 5        2x-1:  5  1  7  1  9
         9 2 6 5 3              17  3 11  9  5
         5 8 9 7 9               9 15 17 13 17
         3 2 3 8 4               5  3  5 15  7
ROIPooling 2 x 2 at spatial_scale 0.5 (corners rounded half away from zero):
  roi 0 [0, 0, 0, 8, 6] -> cols 0..4, rows 0..3, bins of 2 rows x 2.5 cols: rows [0,2) [2,4), cols [0,3) [2,5)
        -> 17 (1,0), 11 (1,2), 17 (2,2), 17 (2,2: ties with (2,4), the first wins)
  roi 1 [0, 3, 1, 5, 3] -> x 1.5..2.5 -> cols 2..3, y 0.5..1.5 -> rows 1..2: one cell per bin
        -> 11 (1,2), 9 (1,3), 17 (2,2), 13 (2,3)
SmoothL1 (sigma 1) against targets, d = pooled - target:
  roi 0: d = (0.5, 0, 2, -0.25) -> f = (0.125, 0, 1.5, 0.03125)
  roi 1: d = (-1, -0.5, 0, 3)   -> f = (0.5, 0.125, 0, 2.5)
  loss = 4.78125 / num 2 = 2.390625; d loss / d pooled = f'(d) / 2.
"""
import numpy as np
import pytest

PI = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4], np.float32).reshape(1, 1, 4, 5)

NET = """
name: "fast_rcnn_layers"
force_backward: true
layer {
  name: "input" type: "Input" top: "data" top: "rois" top: "targets"
  input_param { shape { dim: 1 dim: 1 dim: 4 dim: 5 } shape { dim: 2 dim: 5 }
                shape { dim: 2 dim: 1 dim: 2 dim: 2 } }
}
layer {
  name: "affine" type: "Python" bottom: "data" top: "scaled"
  python_param { module: "caffe_test_python_layers" layer: "AffineLayer"
                 param_str: "{'scale': 2, 'shift': -1}" }
}
layer {
  name: "roi_pool" type: "ROIPooling" bottom: "scaled" bottom: "rois" top: "pooled"
  roi_pooling_param { pooled_h: 2 pooled_w: 2 spatial_scale: 0.5 }
}
layer {
  name: "loss" type: "SmoothL1Loss" bottom: "pooled" bottom: "targets" top: "loss"
  smooth_l1_loss_param { sigma: 1 }
}
"""


@pytest.fixture
def net(caffe, make_net, python_layers):
    net = make_net(NET, caffe.TRAIN)
    net.blobs['data'].data[...] = PI
    net.blobs['rois'].data[...] = [[0, 0, 0, 8, 6], [0, 3, 1, 5, 3]]
    net.blobs['targets'].data[...] = np.array([[16.5, 11, 15, 17.25], [12, 9.5, 17, 10]]).reshape(2, 1, 2, 2)
    return net


def test_forward_pools_and_scores_exactly(net):
    out = net.forward()
    np.testing.assert_array_equal(net.blobs['scaled'].data, 2 * PI - 1)
    np.testing.assert_array_equal(net.blobs['pooled'].data.reshape(2, 4), [[17, 11, 17, 17], [11, 9, 17, 13]])
    assert out['loss'].item() == 2.390625


def test_backward_routes_gradients_to_the_max_cells(net):
    net.forward()
    net.backward()
    pooled_grad = np.array([[0.25, 0, 0.5, -0.125], [-0.5, -0.25, 0, 0.5]], np.float32)
    np.testing.assert_array_equal(net.blobs['pooled'].diff.reshape(2, 4), pooled_grad)
    # The target's gradient is the prediction's, negated.
    np.testing.assert_array_equal(net.blobs['targets'].diff.reshape(2, 4), -pooled_grad)
    # ROIPooling sends each bin's gradient to its max cell, summing shared cells: (2,2) gets 0.5 - 0.125
    # from roi 0 and 0 from roi 1; the Python layer then multiplies by its scale 2.
    expected = np.zeros((4, 5), np.float32)
    expected[1, 0] = 2 * 0.25
    expected[1, 2] = 2 * (0 - 0.5)
    expected[1, 3] = 2 * -0.25
    expected[2, 2] = 2 * (0.5 - 0.125 + 0)
    expected[2, 3] = 2 * 0.5
    np.testing.assert_array_equal(net.blobs['data'].diff[0, 0], expected)
    # rois are coordinates: ROIPooling gives them no gradient.
    np.testing.assert_array_equal(net.blobs['rois'].diff, 0)


def test_released_proto_field_numbers(caffe):
    """Released caffemodels and OpenCV's Caffe importer depend on these numbers."""
    from caffe.proto import caffe_pb2
    layer = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert layer['roi_pooling_param'].number == 8266711
    assert layer['smooth_l1_loss_param'].number == 8266712
    roi = caffe_pb2.ROIPoolingParameter.DESCRIPTOR.fields_by_name
    assert [roi[n].number for n in ('pooled_h', 'pooled_w', 'spatial_scale')] == [1, 2, 3]
    assert caffe_pb2.ROIPoolingParameter().spatial_scale == 1
    assert caffe_pb2.SmoothL1LossParameter.DESCRIPTOR.fields_by_name['sigma'].number == 1
    assert caffe_pb2.SmoothL1LossParameter().sigma == 1
    assert caffe_pb2.DropoutParameter.DESCRIPTOR.fields_by_name['scale_train'].number == 2
    assert caffe_pb2.DropoutParameter().scale_train is True
