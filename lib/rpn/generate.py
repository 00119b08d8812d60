"""Region proposals for a whole imdb from an RPN test net (``rpn_test.pt``: tops ``rois`` and ``scores``).

Boxes are ``[x1, y1, x2, y2]``, 0-based, pixel-inclusive, in original-image coordinates. The proposal
counts follow ``cfg.TEST.RPN_PRE_NMS_TOP_N`` / ``RPN_POST_NMS_TOP_N`` as read by the proposal layer (a
layer reads its configuration itself); the alternating optimisation sets them to (−1, 2000) before
calling ``imdb_proposals``. The image pyramid comes in a ``fast_rcnn.test.DetectSettings``.
"""

import time

import numpy as np

from fast_rcnn.test import get_image_blob
from rpn.generate_anchors import shifted_anchors
from rpn.proposal import generate_proposals_with_anchors
from utils.image import read_image
from utils.timer import format_eta


def im_proposals(net, im, settings):
    """Proposals for one image, scaled by ``settings`` (``DetectSettings``: one scale).

    ``im``: H×W×3 BGR uint8. Returns ``(boxes, scores)``: P×4 float32 boxes in original-image pixels and
    P×1 float32 objectness scores, in the proposal layer's (descending score) order.
    """
    if len(settings.scales) != 1:
        raise ValueError(f'proposals are computed at one scale; TEST.SCALES = {settings.scales}')
    data, im_scales = get_image_blob(im, settings.scales, settings.max_size, settings.pixel_means)
    im_info = np.array([[data.shape[2], data.shape[3], im_scales[0]]], dtype=np.float32)
    net.blobs['data'].reshape(*data.shape)
    net.blobs['im_info'].reshape(*im_info.shape)
    net.forward(data=data, im_info=im_info)
    boxes = (net.blobs['rois'].data[:, 1:5] / im_scales[0]).astype(np.float32)
    scores = net.blobs['scores'].data.reshape(-1, 1).astype(np.float32)
    return boxes, scores


def imdb_proposals(net, imdb, settings):
    """Run the RPN over every image of ``imdb`` (unflipped), scaled by ``settings`` (``DetectSettings``).

    Returns a list with one P_i×5 float32 array ``[x1, y1, x2, y2, score]`` per image, in
    ``imdb.image_index`` order.
    """
    proposals = []
    start = time.perf_counter()
    for i in range(imdb.num_images):
        im = read_image(imdb.image_path_at(i))  # as stored, complete (else BadImageError)
        boxes, scores = im_proposals(net, im, settings)
        proposals.append(np.hstack((boxes, scores)))
        if (i + 1) % 100 == 0 or i + 1 == imdb.num_images:
            elapsed = time.perf_counter() - start
            eta = elapsed / (i + 1) * (imdb.num_images - i - 1)
            print(f'im_proposals: {i + 1}/{imdb.num_images} {elapsed / (i + 1):.3f}s/image '
                  f"ETA {format_eta(eta)}", flush=True)
    return proposals


def anchor_proposal_sizes(net, imdb, settings, rpn_test, proposal_layer='proposal'):
    """The learned average proposal size per anchor (the paper's table in section 3.1).

    Runs the RPN test net ``net`` over every image of ``imdb`` (scaled by ``settings``, a
    ``DetectSettings``) and re-derives its proposals with the proposal settings ``rpn_test`` (``cfg.TEST``:
    ``RPN_MIN_SIZE``, ``RPN_PRE_NMS_TOP_N``, ``RPN_POST_NMS_TOP_N``, ``RPN_NMS_THRESH``; exactly the proposal
    layer's computation) keeping, for each proposal, the anchor it was decoded from. Returns a list over
    the A reference anchors of dicts ``anchor`` (``[w, h]`` of the reference box), ``count`` (proposals it
    produced) and ``mean_w``, ``mean_h`` (their mean size), all in scaled-input pixels, i.e. "for
    s = TEST.SCALES[0]" as in the paper.
    """
    layer = net.layers[list(net._layer_names).index(proposal_layer)]
    anchors, stride = np.asarray(layer.anchors), layer.feat_stride
    num_anchors = len(anchors)
    sums = np.zeros((num_anchors, 2))
    counts = np.zeros(num_anchors, dtype=np.int64)
    start = time.perf_counter()
    for i in range(imdb.num_images):
        im_proposals(net, read_image(imdb.image_path_at(i)), settings)
        im_height, im_width, im_scale = net.blobs['im_info'].data[0, :3]
        prob = net.blobs['rpn_cls_prob_reshape'].data
        height, width = prob.shape[-2:]
        scores = prob[:, num_anchors:, :, :].transpose(0, 2, 3, 1).reshape(-1)
        deltas = net.blobs['rpn_bbox_pred'].data.transpose(0, 2, 3, 1).reshape(-1, 4)
        boxes, _, rows = generate_proposals_with_anchors(
            shifted_anchors(anchors, height, width, stride), deltas, scores, im_height, im_width,
            min_size=rpn_test.RPN_MIN_SIZE * im_scale, pre_nms_top_n=rpn_test.RPN_PRE_NMS_TOP_N,
            post_nms_top_n=rpn_test.RPN_POST_NMS_TOP_N, nms_thresh=rpn_test.RPN_NMS_THRESH,
            nms_gpu_id=settings.nms_gpu_id)
        valid = rows >= 0
        kinds = rows[valid] % num_anchors
        sizes = boxes[valid, 2:4] - boxes[valid, 0:2] + 1
        np.add.at(sums, kinds, sizes)
        np.add.at(counts, kinds, 1)
        if (i + 1) % 100 == 0 or i + 1 == imdb.num_images:
            elapsed = time.perf_counter() - start
            print(f'anchor sizes: {i + 1}/{imdb.num_images} '
                  f'ETA {format_eta(elapsed / (i + 1) * (imdb.num_images - i - 1))}', flush=True)
    ref = anchors[:, 2:4] - anchors[:, 0:2] + 1
    return [{'anchor': ref[a].tolist(), 'count': int(counts[a]),
             'mean_w': float(sums[a, 0] / counts[a]) if counts[a] else float('nan'),
             'mean_h': float(sums[a, 1] / counts[a]) if counts[a] else float('nan')}
            for a in range(num_anchors)]
