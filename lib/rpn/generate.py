"""Region proposals for a whole imdb from an RPN test net (``rpn_test.pt``: tops ``rois`` and ``scores``).

Boxes are ``[x1, y1, x2, y2]``, 0-based, pixel-inclusive, in original-image coordinates. The proposal
counts follow ``cfg.TEST.RPN_PRE_NMS_TOP_N`` / ``RPN_POST_NMS_TOP_N`` as read by the proposal layer; the
alternating optimisation sets them to (−1, 2000) before calling ``imdb_proposals``.
"""

import time

import numpy as np

from fast_rcnn.config import cfg
from fast_rcnn.test import format_eta, get_image_blob
from utils.image import read_image


def im_proposals(net, im):
    """Proposals for one image.

    ``im``: H×W×3 BGR uint8. Returns ``(boxes, scores)``: P×4 float32 boxes in original-image pixels and
    P×1 float32 objectness scores, in the proposal layer's (descending score) order.
    """
    if len(cfg.TEST.SCALES) != 1:
        raise ValueError(f'proposals are computed at one scale; cfg.TEST.SCALES = {cfg.TEST.SCALES}')
    data, im_scales = get_image_blob(im, cfg.TEST.SCALES, cfg.TEST.MAX_SIZE)
    im_info = np.array([[data.shape[2], data.shape[3], im_scales[0]]], dtype=np.float32)
    net.blobs['data'].reshape(*data.shape)
    net.blobs['im_info'].reshape(*im_info.shape)
    net.forward(data=data, im_info=im_info)
    boxes = (net.blobs['rois'].data[:, 1:5] / im_scales[0]).astype(np.float32)
    scores = net.blobs['scores'].data.reshape(-1, 1).astype(np.float32)
    return boxes, scores


def imdb_proposals(net, imdb):
    """Run the RPN over every image of ``imdb`` (unflipped).

    Returns a list with one P_i×5 float32 array ``[x1, y1, x2, y2, score]`` per image, in
    ``imdb.image_index`` order.
    """
    proposals = []
    start = time.perf_counter()
    for i in range(imdb.num_images):
        im = read_image(imdb.image_path_at(i))  # as stored, complete (else BadImageError)
        boxes, scores = im_proposals(net, im)
        proposals.append(np.hstack((boxes, scores)))
        if (i + 1) % 100 == 0 or i + 1 == imdb.num_images:
            elapsed = time.perf_counter() - start
            eta = elapsed / (i + 1) * (imdb.num_images - i - 1)
            print(f'im_proposals: {i + 1}/{imdb.num_images} {elapsed / (i + 1):.3f}s/image '
                  f"ETA {format_eta(eta)}", flush=True)
    return proposals
