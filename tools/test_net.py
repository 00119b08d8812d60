#!/usr/bin/env python3
"""Test a detector on an imdb: detections, VOC evaluation, the per-class AP table and the mAP.

The net definition is adapted to the imdb's class count before loading.
"""

import argparse
import os.path as osp
import pprint

import _init_paths  # noqa: F401
from _common import add_backend_arg, add_common_args, add_net_args, apply_config, init_caffe, open_net, \
    require_imdb, require_net_files
from fast_rcnn.config import cfg, get_output_dir
from fast_rcnn.test import test_net


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description='Test a Fast R-CNN / Faster R-CNN network')
    add_net_args(parser, 'test net definition', 'model weights to test')
    parser.add_argument('--imdb', dest='imdb_name', default='voc_2007_test', help='dataset to test on')
    parser.add_argument('--vis', action='store_true', help='write PNGs of the detections')
    parser.add_argument('--num_dets', dest='max_per_image', type=int, default=None,
                        help='max detections per image (default cfg.TEST.MAX_PER_IMAGE)')
    add_backend_arg(parser)
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None):
    """Run the test; returns the mAP."""
    args = parse_args(argv)
    apply_config(args)
    require_net_files(args)
    imdb = require_imdb(args.imdb_name)
    if not cfg.TEST.HAS_RPN:
        imdb.set_proposal_method(cfg.TEST.PROPOSAL_METHOD)
    print('Called with args:', args, flush=True)
    print('Using config:', flush=True)
    pprint.pprint(cfg)
    init_caffe()
    proto_dir = osp.join(get_output_dir(imdb.name), 'prototxt')
    net = open_net(args, imdb.num_classes, proto_dir, prefix='test_')
    max_per_image = cfg.TEST.MAX_PER_IMAGE if args.max_per_image is None else args.max_per_image
    _, mean_ap = test_net(net, imdb, max_per_image=max_per_image, thresh=cfg.TEST.SCORE_THRESH, vis=args.vis)
    print(f'mAP = {mean_ap:.4f}', flush=True)
    return mean_ap


if __name__ == '__main__':
    main()
