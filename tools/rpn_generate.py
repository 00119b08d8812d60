#!/usr/bin/env python3
"""Generate RPN proposals for every image of an imdb and save them as a proposals .npz
(``datasets.imdb.save_box_list``: boxes + objectness, original-image pixels)."""

import argparse
import os.path as osp
import pprint

import _init_paths  # noqa: F401
from _common import add_common_args, add_net_args, apply_config, init_caffe, lock_output_dir, \
    open_test_net, require_imdb, require_net_files
from datasets.imdb import save_box_list
from fast_rcnn.config import cfg, get_output_dir
from fast_rcnn.test import detect_settings
from rpn.generate import imdb_proposals


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description='Generate RPN proposals for an imdb')
    add_net_args(parser, 'RPN test net (rpn_test.pt)', 'RPN model weights')
    parser.add_argument('--imdb', dest='imdb_name', default='voc_2007_test', help='dataset')
    parser.add_argument('--out', default=None,
                        help='proposals file (default <output>/<model name>_proposals.npz)')
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None):
    """Generate and save the proposals; returns the file's path."""
    args = parse_args(argv)
    apply_config(args)
    require_net_files(args)
    imdb = require_imdb(args.imdb_name)
    print('Called with args:', args, flush=True)
    pprint.pprint(cfg)
    init_caffe()
    output_dir = get_output_dir(imdb.name)
    lock = lock_output_dir(output_dir)  # noqa: F841 (held until exit)
    net = open_test_net(args.prototxt, args.caffemodel, imdb.num_classes, osp.join(output_dir, 'prototxt'))
    proposals = imdb_proposals(net, imdb, detect_settings(cfg))
    path = args.out or osp.join(output_dir, osp.splitext(osp.basename(args.caffemodel))[0] + '_proposals.npz')
    save_box_list(path, imdb.image_index, proposals)
    print(f'Wrote proposals of {len(proposals)} images to {path}', flush=True)
    return path


if __name__ == '__main__':
    main()
