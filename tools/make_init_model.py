#!/usr/bin/env python3
"""Write the initial model of a net that has no ImageNet model (TINY): seeded random, or pre-trained.

See ``fast_rcnn.init_model`` for what the model holds and how the pre-training works. ``--out`` is written
once, atomically, when everything (pre-training included) has completed: an interrupted run (a kill,
SIGINT / SIGTERM, an error) leaves no model behind, so scripts that reuse an existing file never pick up
a half-made one.
"""

import argparse
import signal
import sys

import _init_paths  # noqa: F401
from fast_rcnn.config import cfg
from fast_rcnn.init_model import PretrainSettings, write_init_model

_DEFAULTS = PretrainSettings()


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--def', dest='prototxt', required=True,
                        help='a test net of the architecture (e.g. models/synth/TINY/faster_rcnn_alt_opt/'
                             'faster_rcnn_test.pt)')
    parser.add_argument('--out', required=True, help='caffemodel to write')
    parser.add_argument('--seed', type=int, default=cfg.RNG_SEED, help='random seed [cfg.RNG_SEED]')
    parser.add_argument('--pretrain-imdb', default=None,
                        help='pre-train on crops of this imdb (the training split only; default: none, the '
                             'model stays random)')
    parser.add_argument('--pretrain-iters', type=int, default=_DEFAULTS.iters,
                        help=f'pre-training SGD iterations [{_DEFAULTS.iters}]')
    parser.add_argument('--crop', type=int, default=_DEFAULTS.crop,
                        help=f'crop side in pixels [{_DEFAULTS.crop}]')
    parser.add_argument('--batch', type=int, default=_DEFAULTS.batch,
                        help=f'crops per iteration [{_DEFAULTS.batch}]')
    return parser.parse_args(argv)


def main(argv=None):
    """Write the initial model (only once it is complete)."""
    args = parse_args(argv)
    # SIGTERM unwinds like an error (SystemExit), so the scratch folder is removed and --out never written.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    imdb = None
    if args.pretrain_imdb:
        from datasets.factory import get_imdb
        imdb = get_imdb(args.pretrain_imdb)
    settings = PretrainSettings(iters=args.pretrain_iters, crop=args.crop, batch=args.batch)
    layers = write_init_model(args.prototxt, args.out, args.seed, cfg.PIXEL_MEANS, imdb, settings)
    print(f'Wrote {args.out} (seed {args.seed}; pre-trained on {args.pretrain_imdb or "nothing"}; '
          f'layers {", ".join(layers)})', flush=True)


if __name__ == '__main__':
    main()
