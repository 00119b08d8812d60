"""Image blobs: scaling, mean subtraction and batching into Caffe's N×C×H×W layout."""

import cv2
import numpy as np


def im_list_to_blob(ims):
    """Stack images into one zero-padded blob.

    ``ims``: list of H_i×W_i×3 float arrays (already mean-subtracted). Returns an N×3×H×W float32
    C-contiguous array with H = max H_i, W = max W_i; each image sits in the top-left corner.
    """
    max_h = max(im.shape[0] for im in ims)
    max_w = max(im.shape[1] for im in ims)
    blob = np.zeros((len(ims), max_h, max_w, 3), dtype=np.float32)
    for i, im in enumerate(ims):
        blob[i, :im.shape[0], :im.shape[1], :] = im
    return np.ascontiguousarray(blob.transpose(0, 3, 1, 2))


def blob_scale(im_shape, target_size, max_size):
    """Scale factor that makes the shorter side ``target_size`` unless the longer side would exceed
    ``max_size`` (after rounding to whole pixels), in which case the longer side becomes ``max_size``.

    ``im_shape``: (H, W, ...). Returns a Python float.
    """
    im_size_min = min(im_shape[0], im_shape[1])
    im_size_max = max(im_shape[0], im_shape[1])
    im_scale = float(target_size) / float(im_size_min)
    # Released rule: compare the rounded scaled length (the size cv2.resize produces) with the cap.
    if np.round(im_scale * im_size_max) > max_size:
        im_scale = float(max_size) / float(im_size_max)
    return im_scale


def prep_im_for_blob(im, pixel_means, target_size, max_size):
    """Mean-subtract and rescale an image for a blob.

    ``im``: H×W×3 BGR image (any numeric dtype); ``pixel_means``: broadcastable to it (1×1×3 BGR).
    Returns ``(im, scale)``: the float32 image resized by ``scale`` with bilinear interpolation
    (round(H·scale)×round(W·scale)×3), and the scale from ``blob_scale``.
    """
    im = im.astype(np.float32)  # a copy: the caller's image is left untouched
    # In-place subtraction computes in the means' precision and rounds once to float32, as released.
    im -= pixel_means
    im_scale = blob_scale(im.shape, target_size, max_size)
    im = cv2.resize(im, None, None, fx=im_scale, fy=im_scale, interpolation=cv2.INTER_LINEAR)
    return im, im_scale
