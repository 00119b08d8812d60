#!/usr/bin/env python3
"""Test a detector on an imdb: detections, then the dataset's own evaluation (VOC: the per-class AP table and
the mAP; COCO-format: pycocotools' 12-number summary). ``--metric coco`` adds the COCO summary
(AP@[.5:.95] ...) for a VOC-format dataset, its annotations converted on the fly (datasets.coco_eval).

The net definition is adapted to the imdb's class count before loading.
"""

import argparse
import os.path as osp
import pprint

import _init_paths  # noqa: F401
from _common import add_backend_arg, add_common_args, add_net_args, apply_config, fail, init_caffe, \
    lock_output_dir, open_net, require_file, require_imdb, require_net_files
from datasets import coco_eval
from datasets.imdb import set_proposals
from fast_rcnn.config import cfg, get_output_dir
from fast_rcnn.test import test_net


# --metric choices.
METRICS = ('auto', 'coco')


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description='Test a Fast R-CNN / Faster R-CNN network')
    add_net_args(parser, 'test net definition', 'model weights to test')
    parser.add_argument('--imdb', dest='imdb_name', default='voc_2007_test', help='dataset to test on')
    parser.add_argument('--vis', action='store_true', help='write PNGs of the detections')
    parser.add_argument('--proposals', default=None,
                        help='proposals file (.npz, rpn_generate) for a Fast R-CNN net with '
                             'TEST.PROPOSAL_METHOD rpn')
    parser.add_argument('--num_dets', dest='max_per_image', type=int, default=None,
                        help='max detections per image (default cfg.TEST.MAX_PER_IMAGE)')
    parser.add_argument('--metric', choices=METRICS, default='auto',
                        help="auto: the dataset's own evaluation; coco: also pycocotools' COCO summary for a "
                             'VOC-format dataset (a COCO-format one gets it anyway)')
    add_backend_arg(parser)
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None):
    """Run the test; returns the dataset's own number (VOC: mAP; COCO-format: AP@[.5:.95])."""
    args = parse_args(argv)
    apply_config(args)
    require_net_files(args)
    imdb = require_imdb(args.imdb_name)
    if args.proposals is not None:
        require_file(args.proposals, 'proposals file')
    if not cfg.TEST.HAS_RPN:
        if cfg.TEST.PROPOSAL_METHOD == 'gt':
            fail('TEST.PROPOSAL_METHOD gt would test on the ground-truth boxes; use selective_search, '
                 'edge_boxes, dense or rpn (with --proposals), or TEST.HAS_RPN true for a Faster R-CNN net')
        # Dense windows are laid out on the training-scale image, one set for every test scale.
        set_proposals(imdb, cfg.TEST.PROPOSAL_METHOD, cfg.PROPOSALS,
                      (cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE), args.proposals)
    print('Called with args:', args, flush=True)
    print('Using config:', flush=True)
    pprint.pprint(cfg)
    init_caffe()
    net_name = osp.splitext(osp.basename(args.caffemodel))[0]
    lock = lock_output_dir(get_output_dir(imdb.name, net_name))  # noqa: F841 (held until exit)
    proto_dir = osp.join(get_output_dir(imdb.name), 'prototxt')
    net = open_net(args, imdb.num_classes, proto_dir, prefix='test_')
    max_per_image = cfg.TEST.MAX_PER_IMAGE if args.max_per_image is None else args.max_per_image
    all_boxes, mean_ap = test_net(net, imdb, max_per_image=max_per_image, thresh=cfg.TEST.SCORE_THRESH,
                                  vis=args.vis)
    if mean_ap is not None:  # None: an image set evaluated by a server (its files were written)
        # A COCO-format imdb's own evaluation is already COCO's.
        own_coco = coco_eval.is_coco_format(imdb)
        print(f'{"COCO AP@[.5:.95]" if own_coco else "mAP"} = {mean_ap:.4f}', flush=True)
        if args.metric == 'coco' and not own_coco:
            summary = coco_eval.evaluate_imdb(imdb, all_boxes, get_output_dir(imdb.name, net_name))
            print(f'COCO AP@[.5:.95] = {summary["AP"]:.4f}', flush=True)
    return mean_ap


if __name__ == '__main__':
    main()
