#!/usr/bin/env python3
"""Train a net with one solver: Faster R-CNN end to end (``cfg.TRAIN.HAS_RPN``) or Fast R-CNN on a
proposal method of the imdb. The solver's train net is adapted to the imdb's class count first."""

import argparse
import os.path as osp
import pprint
import sys

import _init_paths  # noqa: F401
from _common import add_common_args, adapt_to_imdb, apply_config, exit_interrupted, fail, init_caffe, \
    lock_output_dir, require_file, require_imdb, require_weights, write_final_model
from datasets.imdb import set_proposals
from fast_rcnn.config import cfg, get_output_dir
from fast_rcnn.models import adapt_solver, read_solver, released_max_iter
from fast_rcnn.train import EmptyRoidbError, TrainingInterrupted, get_training_roidb, train_net
from fast_rcnn.weights import WeightsError


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description='Train a Fast R-CNN / Faster R-CNN network')
    parser.add_argument('--solver', required=True, help='solver prototxt')
    parser.add_argument('--iters', dest='max_iters', type=int, default=None,
                        help="iterations to train (default: the solver's max_iter, else the released length: "
                             "70000 end to end, 40000 otherwise)")
    parser.add_argument('--weights', dest='pretrained_model', default=None, help='initial model weights')
    parser.add_argument('--resume', default=None,
                        help='continue from a .solverstate under <output>/train_state/ (same config)')
    parser.add_argument('--imdb', dest='imdb_name', default='voc_2007_trainval', help='dataset to train on')
    parser.add_argument('--proposals', default=None,
                        help='proposals file (.npz, rpn_generate) for TRAIN.PROPOSAL_METHOD rpn')
    parser.add_argument('--final-model-file', default=None,
                        help='write the final model\'s path (one line) to this file when training completes')
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None):
    """Train and print the final model's path."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    apply_config(args)
    require_file(args.solver, 'solver')
    require_weights(args.pretrained_model)
    if args.resume is not None:
        require_file(args.resume, 'solver state to resume from')
    if args.proposals is not None:
        require_file(args.proposals, 'proposals file')
    imdb = require_imdb(args.imdb_name, check=True)
    solver_param = read_solver(args.solver)
    max_iters = args.max_iters or released_max_iter(solver_param, end2end=cfg.TRAIN.HAS_RPN)
    if not solver_param.HasField('train_net'):
        fail(f'{args.solver}: the solver needs a train_net entry')
    print('Called with args:', args, flush=True)
    print('Using config:', flush=True)
    pprint.pprint(cfg)
    init_caffe()

    output_dir = get_output_dir(imdb.name)
    lock = lock_output_dir(output_dir)  # noqa: F841 (held until exit)
    print(f'Loaded dataset {imdb.name} for training', flush=True)
    set_proposals(imdb, cfg.TRAIN.PROPOSAL_METHOD, cfg.PROPOSALS, (cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE),
                  args.proposals)
    roidb = get_training_roidb(imdb)
    print(f'Output will be saved to {output_dir}', flush=True)
    proto_dir = osp.join(output_dir, 'prototxt')
    train_prototxt = adapt_to_imdb(osp.join(cfg.ROOT_DIR, solver_param.train_net), imdb.num_classes,
                                   proto_dir)
    solver = adapt_solver(args.solver, osp.join(proto_dir, osp.basename(args.solver)), train_prototxt)
    try:
        model_paths = train_net(solver, roidb, output_dir, pretrained_model=args.pretrained_model,
                                max_iters=max_iters, resume=args.resume)
    except TrainingInterrupted as exc:
        exit_interrupted(exc, argv)
    except (WeightsError, EmptyRoidbError, FileNotFoundError) as exc:
        fail(str(exc))
    print(f'Final model: {model_paths[-1]}', flush=True)
    write_final_model(args.final_model_file, model_paths[-1])
    return model_paths


if __name__ == '__main__':
    main()
