#!/usr/bin/env python3
"""Plot proposal recall against the IoU threshold (the paper's Fig. 2) for proposal files of an imdb.

Example:
    .venv/bin/python tools/plot_recall.py --imdb synth_trainval --top 300 \\
        output/faster_rcnn_alt_opt/synth_trainval/tiny_rpn_stage2_iter_1000_proposals.npz
"""

import argparse
import os.path as osp

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import _init_paths  # noqa: F401,E402
from _common import apply_config, require_file, require_imdb  # noqa: E402
from datasets.imdb import load_box_list  # noqa: E402

THRESHOLDS = np.arange(0.5, 0.951, 0.05)


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description='Recall vs IoU of proposal files')
    parser.add_argument('--imdb', dest='imdb_name', required=True, help='dataset the proposals are for')
    parser.add_argument('--top', type=int, nargs='+', default=[300], help='proposals per image to use')
    parser.add_argument('--out', default='recall.png', help='PNG to write')
    parser.add_argument('proposals', nargs='+', help='proposal .npz files (datasets.imdb.save_box_list)')
    parser.add_argument('--cfg', dest='cfg_files', action='append', default=[], help='config file(s)')
    parser.add_argument('--set', dest='set_cfgs', default=None, nargs='+', help='config KEY VALUE pairs')
    return parser.parse_args(argv)


def main(argv=None):
    """Compute the recalls, print them and write the plot."""
    args = parse_args(argv)
    args.cpu, args.gpu_id = True, -1
    apply_config(args)
    imdb = require_imdb(args.imdb_name)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for path in args.proposals:
        require_file(path, 'proposals file')
        boxes = load_box_list(path, imdb.image_index)
        for top in args.top:
            result = imdb.evaluate_recall(boxes, thresholds=THRESHOLDS, limit=top)
            label = f'{osp.splitext(osp.basename(path))[0]} top {top} (AR {result["ar"]:.3f})'
            recalls = ' '.join(f'{t:.2f}:{r:.3f}' for t, r in zip(THRESHOLDS, result['recalls']))
            print(label, recalls, flush=True)
            ax.plot(THRESHOLDS, result['recalls'], marker='.', label=label)
    ax.set_xlabel('IoU overlap ratio')
    ax.set_ylabel('recall')
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f'Wrote {args.out}', flush=True)


if __name__ == '__main__':
    main()
