"""Image blobs (utils.blob)."""

import numpy as np

from utils.blob import blob_scale, im_list_to_blob, prep_im_for_blob

MEANS = np.array([[[102.9801, 115.9465, 122.7717]]])


def test_blob_scale_short_side_and_max_size_cap():
    assert blob_scale((375, 500, 3), 600, 1000) == 1.6
    assert blob_scale((500, 375, 3), 600, 1000) == 1.6
    assert blob_scale((100, 1000, 3), 600, 1000) == 1.0      # 6000 > 1000: long side capped
    assert blob_scale((300, 2000, 3), 600, 1000) == 0.5
    # 600/450·1334 = 1778.67 > 1000 -> 1000/1334
    assert blob_scale((450, 1334, 3), 600, 1000) == 1000 / 1334


def test_prep_im_for_blob_sizes():
    im = np.full((375, 500, 3), 128, dtype=np.uint8)
    out, scale = prep_im_for_blob(im, MEANS, 600, 1000)
    assert scale == 1.6 and out.shape == (600, 800, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[300, 400], 128 - MEANS[0, 0], rtol=1e-6)
    out, scale = prep_im_for_blob(np.zeros((100, 1000, 3), np.uint8), MEANS, 600, 1000)
    assert scale == 1.0 and out.shape == (100, 1000, 3)


def test_prep_im_for_blob_subtracts_means_and_leaves_input():
    im = np.arange(600 * 800 * 3, dtype=np.int64).reshape(600, 800, 3) % 256
    im = im.astype(np.uint8)
    original = im.copy()
    out, scale = prep_im_for_blob(im, MEANS, 600, 1000)
    assert scale == 1.0
    np.testing.assert_array_equal(out, (im - MEANS).astype(np.float32))
    np.testing.assert_array_equal(im, original)


def test_im_list_to_blob_pads_to_the_largest():
    a = np.ones((2, 3, 3), dtype=np.float32)
    b = 2 * np.ones((4, 1, 3), dtype=np.float32)
    blob = im_list_to_blob([a, b])
    assert blob.shape == (2, 3, 4, 3) and blob.dtype == np.float32 and blob.flags['C_CONTIGUOUS']
    assert blob[0, :, :2, :3].min() == 1 and blob[0, :, 2:, :].max() == 0
    assert blob[1, :, :, :1].min() == 2 and blob[1, :, :, 1:].max() == 0
