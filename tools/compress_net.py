#!/usr/bin/env python3
"""Compress a trained detector's fc6 / fc7 with truncated SVD (the Fast R-CNN paper's speed-up).

Each compressed layer ``fc`` becomes ``fc_L`` (rank k, no bias) followed by ``fc_U`` (the original outputs and
bias), see ``fast_rcnn.svd``. Writes ``<out>/<model>_svd_fc6_<k6>_fc7_<k7>.pt`` (the test net) and
``.caffemodel`` and prints, per layer, the multiply-adds per RoI before and after and the error bound
σ_{k+1} (the most the layer's output can move per unit input norm). Test the result with
``tools/test_net.py --def <the .pt> --net <the .caffemodel>`` to see the region-wise time and the mAP change.

Example (the embedded dataset; TINY's fc layers are 4608 -> 512 -> 512):
    .venv/bin/python tools/compress_net.py --cfg experiments/cfgs/synth.yml --imdb synth_test \\
        --def models/synth/TINY/faster_rcnn_end2end/test.prototxt \\
        --net output/faster_rcnn_end2end/synth_trainval/tiny_faster_rcnn_iter_3000.caffemodel \\
        --fc6-rank 128 --fc7-rank 64 --out output/svd
"""

import argparse
import os
import os.path as osp

import _init_paths  # noqa: F401
import caffe
from _common import add_common_args, add_net_args, adapt_to_imdb, apply_config, fail, init_caffe, \
    require_imdb, require_net_files
from fast_rcnn import svd
from fast_rcnn.models import read_net, write_message


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_net_args(parser, 'test net definition', 'trained model weights')
    parser.add_argument('--imdb', dest='imdb_name', required=True,
                        help='imdb whose class list the model was trained with')
    parser.add_argument('--fc6-rank', type=int, default=svd.DEFAULT_RANKS['fc6'],
                        help=f'rank kept of fc6 [{svd.DEFAULT_RANKS["fc6"]}, the released VGG-16 value]')
    parser.add_argument('--fc7-rank', type=int, default=svd.DEFAULT_RANKS['fc7'],
                        help=f'rank kept of fc7 [{svd.DEFAULT_RANKS["fc7"]}, the released VGG-16 value]')
    parser.add_argument('--out', required=True, help='directory for the compressed net and weights')
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None):
    """Write the compressed net and weights; returns ``(prototxt, caffemodel)``."""
    args = parse_args(argv)
    apply_config(args)
    require_net_files(args)
    imdb = require_imdb(args.imdb_name)
    ranks = {'fc6': args.fc6_rank, 'fc7': args.fc7_rank}
    os.makedirs(args.out, exist_ok=True)
    adapted = adapt_to_imdb(args.prototxt, imdb.num_classes, args.out, prefix='full_')
    stem = f'{osp.splitext(osp.basename(args.caffemodel))[0]}_svd_fc6_{ranks["fc6"]}_fc7_{ranks["fc7"]}'
    out_def, out_net = osp.join(args.out, stem + '.pt'), osp.join(args.out, stem + '.caffemodel')
    try:
        write_message(svd.compress_net_param(read_net(adapted), ranks, args.prototxt), out_def)
    except ValueError as exc:
        fail(str(exc))
    init_caffe()
    full = caffe.Net(adapted, caffe.TEST, weights=args.caffemodel)
    for name, rank in ranks.items():
        shape = full.params[name][0].data.shape
        if rank >= min(shape):
            fail(f'--{name}-rank {rank}: {name} of {args.caffemodel} is {shape[0]}x{shape[1]}, so a rank of '
                 f'{min(shape)} or more saves nothing (the released 1024 / 256 are for VGG-16\'s 4096-wide '
                 f'fc)')
    compressed = caffe.Net(out_def, caffe.TEST)
    info = svd.compress_weights(full, compressed, ranks)
    compressed.save(out_net)
    for name, item in info.items():
        before, after = svd.macs_saved(item['in'], item['out'], item['rank'])
        energy = float((item['sigma'][:item['rank']] ** 2).sum() / (item['sigma'] ** 2).sum())
        print(f'{name}: {item["out"]}x{item["in"]} -> rank {item["rank"]}: {before / 1e6:.2f} -> '
              f'{after / 1e6:.2f} M multiply-adds per RoI, sigma_1 {item["sigma"][0]:.4g}, error bound '
              f'sigma_{item["rank"] + 1} {item["bound"]:.4g} per unit input norm, energy kept {energy:.4f}',
              flush=True)
    print(f'Wrote {out_def} and {out_net}', flush=True)
    return out_def, out_net


if __name__ == '__main__':
    main()
