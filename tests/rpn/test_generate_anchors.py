"""Reference anchors and their tiling (rpn.generate_anchors)."""

import numpy as np

from rpn.anchor_target import inside_anchor_inds
from rpn.generate_anchors import anchors_from_layer_params, generate_anchors, shifted_anchors

# The released 9 anchors (0-based; the comment in the released file shows MATLAB's 1-based values).
RELEASED_ANCHORS = np.array([
    [-84, -40, 99, 55], [-176, -88, 191, 103], [-360, -184, 375, 199],
    [-56, -56, 71, 71], [-120, -120, 135, 135], [-248, -248, 263, 263],
    [-36, -80, 51, 95], [-80, -168, 95, 183], [-168, -344, 183, 359]], dtype=np.float64)


def test_default_anchors_are_the_released_nine():
    np.testing.assert_array_equal(generate_anchors(), RELEASED_ANCHORS)


def test_ratio_one_scale_one_is_the_base_box():
    np.testing.assert_array_equal(generate_anchors(ratios=(1,), scales=(1,)), [[0, 0, 15, 15]])


def test_ratio_rounding_is_half_to_even():
    # ratio 0.5: w = round(sqrt(512)) = 23, h = round(11.5) = 12 (half to even), centre 7.5.
    np.testing.assert_array_equal(generate_anchors(ratios=(0.5,), scales=(1,)), [[-3.5, 2, 18.5, 13]])


def test_layer_params_override_scales_and_ratios():
    np.testing.assert_array_equal(anchors_from_layer_params({'feat_stride': 16}), RELEASED_ANCHORS)
    np.testing.assert_array_equal(anchors_from_layer_params({'scales': [8]}), RELEASED_ANCHORS[[0, 3, 6]])
    np.testing.assert_array_equal(anchors_from_layer_params({'ratios': [1], 'scales': [16, 32]}),
                                  RELEASED_ANCHORS[[4, 5]])


def test_shifted_anchors_order_is_h_w_a_with_a_fastest():
    anchors = np.array([[0, 0, 15, 15], [-8, -8, 23, 23]], dtype=np.float64)
    tiled = shifted_anchors(anchors, height=2, width=3, feat_stride=16)
    assert tiled.shape == (2 * 3 * 2, 4)
    # row (h·W + w)·A + a: h = 1, w = 2, a = 1 -> row 11, shifted by (32, 16).
    np.testing.assert_array_equal(tiled[11], [24, 8, 55, 39])
    np.testing.assert_array_equal(tiled[1], [-8, -8, 23, 23])      # h=0, w=0, a=1
    np.testing.assert_array_equal(tiled[2], [16, 0, 31, 15])       # h=0, w=1, a=0
    np.testing.assert_array_equal(tiled[6], [0, 16, 15, 31])       # h=1, w=0, a=0


def test_vgg16_600x1000_anchor_counts():
    # 600×1000 input; conv5 of VGG-16 is ceil(600/16) × ceil(1000/16) = 38 × 63.
    all_anchors = shifted_anchors(generate_anchors(), 38, 63, 16)
    assert all_anchors.shape == (21546, 4)
    # Fully inside the image: 8,151. The paper's "about 6k" for a 1000×600 image does not reproduce with
    # these anchors (measured here; the released code gives the same).
    assert inside_anchor_inds(all_anchors, 600, 1000, allowed_border=0).size == 8151
