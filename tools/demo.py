#!/usr/bin/env python3
"""Detect objects in images with a trained Faster R-CNN and write PNGs with labelled boxes.

Example (the embedded dataset):
    .venv/bin/python tools/demo.py --cpu --cfg experiments/cfgs/synth.yml --imdb synth_test \\
        --def models/synth/TINY/faster_rcnn_alt_opt/faster_rcnn_test.pt \\
        --net output/faster_rcnn_alt_opt/synth_trainval/TINY_faster_rcnn_final.caffemodel \\
        data/SYNTHdevkit/SYNTH/JPEGImages/000001.jpg
"""

import argparse
import os
import os.path as osp

import cv2

import _init_paths  # noqa: F401
from _common import add_backend_arg, add_common_args, add_net_args, apply_config, fail, init_caffe, \
    open_net, require_imdb, require_net_files
from fast_rcnn.config import cfg
from fast_rcnn.test import detect_settings, draw_detections, im_detect, postprocess_detections
from utils.timer import Timer


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description='Faster R-CNN demo: draw detections on images')
    add_net_args(parser, 'test net definition', 'model weights')
    parser.add_argument('--imdb', dest='imdb_name', required=True,
                        help='imdb whose class list the model was trained with (e.g. voc_2007_test)')
    parser.add_argument('--conf', type=float, default=0.8, help='draw detections scoring at least this')
    parser.add_argument('--out_dir', default=osp.join('data', 'demo_out'), help='where the PNGs go')
    parser.add_argument('images', nargs='+', help='image files')
    add_backend_arg(parser)
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None):
    """Detect in every image and write ``<out_dir>/<image name>_detections.png``."""
    args = parse_args(argv)
    apply_config(args)
    require_net_files(args)
    cfg.TEST.HAS_RPN = True
    imdb = require_imdb(args.imdb_name)
    init_caffe()
    os.makedirs(args.out_dir, exist_ok=True)
    net = open_net(args, imdb.num_classes, args.out_dir, prefix='demo_')
    timer = Timer()
    settings = detect_settings(cfg)
    for path in args.images:
        im = cv2.imread(path)
        if im is None:
            fail(f'cannot read image {path}')
        timer.tic()
        scores, boxes = im_detect(net, im, settings=settings)
        dets = postprocess_detections(scores, boxes, args.conf, settings.nms, cfg.TEST.MAX_PER_IMAGE,
                                      settings.nms_gpu_id)
        timer.toc()
        out = osp.join(args.out_dir, osp.splitext(osp.basename(path))[0] + '_detections.png')
        cv2.imwrite(out, draw_detections(im, dets, imdb.classes, thresh=args.conf))
        found = ', '.join(f'{imdb.classes[j]} {d[k, 4]:.2f}'
                          for j, d in enumerate(dets) for k in range(len(d)))
        print(f'{path}: {timer.diff:.3f}s, {found or "no detections"} -> {out}', flush=True)


if __name__ == '__main__':
    main()
