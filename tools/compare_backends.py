#!/usr/bin/env python3
"""Compare our Caffe with OpenCV dnn on the same test net and weights: proposals, head outputs, detections.

For each of the first ``--num-images`` images of ``--imdb``: the RPN proposals of both engines (how many
rows agree in order and as a set; where the orders part, whether a score tie or an NMS tie at the
threshold explains it), and the head outputs (``cls_prob``, ``bbox_pred``) on the proposals both engines
pool identically (RoIs within 0.05 px that round to the same RoI-pooling cells). With ``--eval`` the whole
imdb goes through ``fast_rcnn.test.test_net`` on both engines: both mAPs and the per-image agreement of
the top-10 detections (IoU ≥ 0.99).

OpenCV's proposal layer has no minimum box size; unless ``--keep-min-size``, cfg.TEST.RPN_MIN_SIZE is set
to 0 here so both engines compute the same thing. ``--random-seed S`` replaces ``--net`` by seeded He
weights (``fast_rcnn.init_model.he_init``), for the nets without trained models (ZF, VGG-16).

Examples:
    .venv/bin/python tools/compare_backends.py --cpu --cfg experiments/cfgs/synth.yml --imdb synth_test \\
        --def models/synth/TINY/faster_rcnn_end2end/test.prototxt --net MODEL --num-images 20 --eval
    .venv/bin/python tools/compare_backends.py --cpu --imdb synth_test --random-seed 3 --num-images 3 \\
        --def models/pascal_voc/ZF/faster_rcnn_end2end/test.prototxt
"""

import argparse
import os.path as osp

import cv2
import numpy as np

import _init_paths  # noqa: F401
import caffe
from _common import add_common_args, adapt_to_imdb, apply_config, fail, init_caffe, require_file, \
    require_imdb, require_weights
from fast_rcnn import deploy
from fast_rcnn.config import cfg, get_output_dir
from fast_rcnn.init_model import he_init, scale_to_unit_input
from fast_rcnn.models import ROI_POOLING_TYPE
from fast_rcnn.test import PROPOSAL_TOP, get_image_blob, im_detect, test_net


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--def', dest='prototxt', required=True, help='our test net definition')
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument('--net', dest='caffemodel', help='model weights')
    weights.add_argument('--random-seed', type=int, help='seeded He-random weights instead of a model')
    parser.add_argument('--unit-input', action='store_true',
                        help='with --random-seed: divide the first conv\'s weights by the first image\'s '
                             'blob standard deviation (He init assumes unit-variance inputs; without it, '
                             'random nets saturate the objectness softmax: many anchors tie at exactly 1)')
    parser.add_argument('--imdb', dest='imdb_name', required=True, help='images and class list')
    parser.add_argument('--num-images', type=int, default=3, help='images compared blob by blob [3]')
    parser.add_argument('--eval', action='store_true', help='also test the whole imdb on both engines')
    parser.add_argument('--keep-min-size', action='store_true',
                        help='keep cfg.TEST.RPN_MIN_SIZE for our Caffe (OpenCV has none)')
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None):
    """Run the comparison; returns a dict of the per-image results (and the evaluation with --eval)."""
    args = parse_args(argv)
    apply_config(args)
    require_file(args.prototxt, 'network definition')
    require_weights(args.caffemodel)
    cfg.TEST.HAS_RPN = True
    if not args.keep_min_size:
        cfg.TEST.RPN_MIN_SIZE = 0
    imdb = require_imdb(args.imdb_name)
    if not 1 <= args.num_images <= imdb.num_images:
        fail(f'--num-images must be in [1, {imdb.num_images}] for {imdb.name}')
    init_caffe()
    out_dir = osp.join(get_output_dir(imdb.name), 'compare_backends')
    adapted = adapt_to_imdb(args.prototxt, imdb.num_classes, out_dir, prefix='caffe_')
    if args.random_seed is not None:
        net = caffe.Net(adapted, caffe.TEST)
        he_init(net, np.random.default_rng(args.random_seed))
        if args.unit_input:
            data, _ = get_image_blob(cv2.imread(imdb.image_path_at(0)), cfg.TEST.SCALES, cfg.TEST.MAX_SIZE,
                                     cfg.PIXEL_MEANS)
            scale_to_unit_input(net, data)
        stem = f'{osp.splitext(osp.basename(args.prototxt))[0]}_he_{args.random_seed}'
        stem += '_unit' if args.unit_input else ''
        weights = osp.join(out_dir, stem + '.caffemodel')
        net.save(weights)
    else:
        weights = args.caffemodel
        net = caffe.Net(adapted, caffe.TEST, weights=weights)
    name = osp.splitext(osp.basename(weights))[0]
    net.name = 'caffe_' + name
    try:
        cv_net, reports = deploy.open_opencv_net(adapted, weights, imdb.num_classes, out_dir, cfg.TEST,
                                                 name='opencv_' + name)
        settings = deploy.proposal_settings(deploy.read_net_text(adapted), cfg.TEST, adapted)
    except ValueError as exc:
        fail(str(exc))
    for line in reports:
        print(f'note: {line}', flush=True)
    pool = next(layer for layer in deploy.read_net_text(adapted).layer if layer.type == ROI_POOLING_TYPE)
    spatial_scale = pool.roi_pooling_param.spatial_scale
    results = {'images': [compare_image(net, cv_net, imdb.image_path_at(i), settings, spatial_scale)
                          for i in range(args.num_images)]}
    if args.eval:
        results['eval'] = evaluate(net, cv_net, imdb)
    return results


def compare_image(net, cv_net, path, settings, spatial_scale):
    """Proposals and head outputs of both engines on the image at ``path``; prints one line."""
    im = cv2.imread(path)
    if im is None:
        fail(f'cannot read image {path}')
    im_detect(net, im)
    im_detect(cv_net, im)
    rois_a, rois_b = net.blobs[PROPOSAL_TOP].data[:, 1:], cv_net.blobs[PROPOSAL_TOP].data[:, 1:]
    boxes_a, scores_a = deploy.caffe_proposal_scores(net, settings, net.blobs['im_info'].data)
    if not np.array_equal(boxes_a, rois_a):
        fail(f'{path}: our proposal layer\'s output differs from rpn.proposal on its blobs')
    prop = deploy.compare_proposals(rois_a, scores_a, rois_b, settings.nms_thresh)
    prop['tied_anchors'] = tied_anchors(net, settings)
    rows_a, rows_b = deploy.paired_rows(rois_a, rois_b, spatial_scale)
    head = {blob: float(np.abs(net.blobs[blob].data[rows_a] - cv_net.blobs[blob].data[rows_b]).max())
            if len(rows_a) else float('nan') for blob in deploy.HEAD_BLOBS}
    rpn = {blob: float(np.abs(net.blobs[blob].data - cv_rpn).max())
           for blob, cv_rpn in rpn_blobs(cv_net, net.blobs['data'].data, net.blobs['im_info'].data).items()}
    result = dict(prop, image=osp.basename(path), pooled_same=len(rows_a), head_max_diff=head,
                  rpn_max_diff=rpn)
    print(f'{result["image"]} {tuple(net.blobs["data"].data.shape[2:])}: proposals {prop["count_a"]} / '
          f'{prop["count_b"]}, same order for the first {prop["same_prefix"]}, at the same rank '
          f'{prop["same_rank"]}, {prop["in_both"]} in both; {prop["tied_anchors"]} of the top '
          f'{settings.pre_nms_top_n} anchors tie in objectness; '
          f'first divergence: {prop["cause"]} (gap {prop["gap"]:.2g}); '
          f'RPN max |diff| {", ".join(f"{k} {v:.2g}" for k, v in rpn.items())}; '
          f'head on {result["pooled_same"]} identically pooled RoIs: max |diff| '
          f'{", ".join(f"{k} {v:.2g}" for k, v in head.items())}', flush=True)
    return result


def tied_anchors(net, settings):
    """How many of our top ``pre_nms_top_n`` anchors by objectness have a score equal (in float32) to another
    anchor's: their order is the sort's tie-break (ours stable, OpenCV's std::sort unspecified)."""
    prob = net.blobs['rpn_cls_prob_reshape'].data
    scores = np.sort(prob[:, prob.shape[1] // 2:].ravel())[::-1][:settings.pre_nms_top_n]
    _, counts = np.unique(scores, return_counts=True)
    return int(counts[counts > 1].sum())


def rpn_blobs(cv_net, data, im_info):
    """OpenCV's RPN outputs for the same input (a fresh cv2 net)."""
    net = cv2.dnn.readNetFromCaffe(cv_net.prototxt, cv_net.weights)
    net.setInput(np.ascontiguousarray(data, np.float32), 'data')
    net.setInput(np.ascontiguousarray(im_info, np.float32), 'im_info')
    names = ['rpn_cls_prob_reshape', 'rpn_bbox_pred']
    return dict(zip(names, net.forward(names)))


def evaluate(net, cv_net, imdb):
    """Both engines through test_net on the whole imdb: mAPs and the per-image top-10 agreement."""
    max_per_image, thresh = cfg.TEST.MAX_PER_IMAGE, cfg.TEST.SCORE_THRESH
    boxes_a, map_a = test_net(net, imdb, max_per_image=max_per_image, thresh=thresh)
    boxes_b, map_b = test_net(cv_net, imdb, max_per_image=max_per_image, thresh=thresh)
    parity = deploy.parity_summary(boxes_a, boxes_b)
    print(f'mAP caffe {map_a:.4f}, opencv {map_b:.4f}, difference {map_b - map_a:+.4f}; images whose top-10 '
          f'detections all match with IoU >= 0.99: {parity["images_ok"]}/{parity["images"]} (lowest IoU '
          f'{parity["min_iou"]:.4f}, largest score difference {parity["max_score_diff"]:.2g}); detections '
          f'{parity["detections_a"]} / {parity["detections_b"]}; other images: {parity["bad_images"][:20]}',
          flush=True)
    return {'mAP_caffe': float(map_a), 'mAP_opencv': float(map_b), **parity}


if __name__ == '__main__':
    main()
