#!/usr/bin/env python3
"""Train a Faster R-CNN detector with the 4-step alternating optimisation (Ren et al., NIPS 2015).

Each step runs in its own process, as released (pycaffe does not reliably free memory of discarded nets).
The paper's steps and the released stage names (which name the files and the log banners):

1. stage-1 RPN from the initial (ImageNet) model → proposals for the training set (no pre-NMS cut, 2000
   after NMS, computed on unflipped images; the imdb mirrors them for the flipped entries);
2. stage-1 Fast R-CNN on those proposals from the initial model;
3. stage-2 RPN initialised from the stage-1 Fast R-CNN, shared convs frozen → proposals again;
4. stage-2 Fast R-CNN initialised from the stage-2 RPN net, shared convs frozen.

The final model holds the shared convs, the stage-2 RPN and the stage-2 head (``fast_rcnn.alt_opt``),
saved as ``<net_name>_faster_rcnn_final``.
"""

import argparse
import multiprocessing as mp
import os
import os.path as osp
import pprint
import signal
import sys
import time
import traceback

import _init_paths  # noqa: F401
from _common import adapt_to_imdb, add_common_args, apply_config, fail, init_caffe, lock_output_dir, \
    open_test_net, require_imdb, require_weights, write_final_model
from fast_rcnn.alt_opt import merge_final_model, stage_max_iters, stage_solvers
from fast_rcnn.config import cfg, get_output_dir
from fast_rcnn.models import RPN_LAYER_PREFIX, adapt_solver, read_solver
from utils.fileio import atomic_path, write_json_atomic

ALT_OPT_DIR = 'faster_rcnn_alt_opt'
# Proposals for Fast R-CNN training: no pre-NMS cut, 2000 after NMS (released alt-opt).
TRAIN_PROPOSALS_PRE_NMS = -1
TRAIN_PROPOSALS_POST_NMS = 2000


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description='Train a Faster R-CNN network by alternating optimisation')
    parser.add_argument('--net_name', required=True, help='network name, e.g. ZF, VGG16 or TINY')
    parser.add_argument('--weights', dest='pretrained_model', required=True,
                        help='initial (ImageNet) model weights for stages 1 and 2')
    parser.add_argument('--imdb', dest='imdb_name', default='voc_2007_trainval', help='dataset to train on')
    parser.add_argument('--iters', type=int, nargs=4, metavar=('RPN1', 'FRCN1', 'RPN2', 'FRCN2'),
                        help='iterations of the four stages (default: each solver\'s max_iter, else the '
                             'released 80k/40k/80k/40k)')
    parser.add_argument('--final-model-file', default=None,
                        help='write the final model\'s path (one line) to this file when all stages are done')
    add_common_args(parser)
    return parser.parse_args(argv)


def get_solvers(net_name):
    """The four stage solvers and the RPN / detector test nets under ``cfg.MODELS_DIR/<net>/alt_opt``."""
    net_dir = osp.join(cfg.MODELS_DIR, net_name, ALT_OPT_DIR)
    try:
        solvers = stage_solvers(net_dir)
    except ValueError as error:
        fail(str(error))
    return solvers, osp.join(net_dir, 'rpn_test.pt'), osp.join(net_dir, 'faster_rcnn_test.pt')


# ---------------------------------------------------------------------------------------------------------
# Stage bodies: each runs in a fresh (spawned) process and receives the parent's cfg.
# ---------------------------------------------------------------------------------------------------------

def _use_cfg(parent_cfg):
    """Install the parent's configuration in this process's ``cfg`` (the same object every module uses)."""
    for key, value in parent_cfg.items():
        cfg[key] = value


def _stage_solver(solver, imdb, stage_name):
    """Adapt ``solver``'s train net to the imdb's classes; return the adapted solver's path."""
    out_dir = osp.join(get_output_dir(imdb.name), 'prototxt')
    train_net = adapt_to_imdb(osp.join(cfg.ROOT_DIR, read_solver(solver).train_net), imdb.num_classes,
                              out_dir, prefix=f'{stage_name}_')
    return adapt_solver(solver, osp.join(out_dir, f'{stage_name}_{osp.basename(solver)}'), train_net)


def _training_roidb(imdb_name, rpn_file=None):
    """The imdb with the configured proposal method and its training roidb."""
    from datasets.factory import get_imdb
    from fast_rcnn.train import get_training_roidb
    imdb = get_imdb(imdb_name)
    imdb.set_proposal_method(cfg.TRAIN.PROPOSAL_METHOD)
    if rpn_file is not None:
        imdb.config['rpn_file'] = rpn_file
    return imdb, get_training_roidb(imdb)


def _train_stage(parent_cfg, stage_name, imdb_name, init_model, solver, max_iters, rpn_file, infix):
    """Train one stage (RPN when ``rpn_file`` is None, else Fast R-CNN); returns the final model path.

    Intermediate snapshots are removed, as released; the training state stays under train_state/.
    """
    _use_cfg(parent_cfg)
    cfg.TRAIN.SNAPSHOT_INFIX = infix
    if rpn_file is None:
        # RPN: ground-truth boxes only, one image per minibatch, no Fast R-CNN box regression.
        cfg.TRAIN.HAS_RPN = True
        cfg.TRAIN.BBOX_REG = False
        cfg.TRAIN.PROPOSAL_METHOD = 'gt'
        cfg.TRAIN.IMS_PER_BATCH = 1
    else:
        # Fast R-CNN: images per minibatch as configured (2 by default, as released; the synth cfg uses 1).
        cfg.TRAIN.HAS_RPN = False
        cfg.TRAIN.PROPOSAL_METHOD = 'rpn'
    from fast_rcnn.train import train_net
    init_caffe()
    print(f'[{stage_name}] init model: {init_model}; proposals: {rpn_file}', flush=True)
    imdb, roidb = _training_roidb(imdb_name, rpn_file)
    print(f'[{stage_name}] roidb: {len(roidb)} entries', flush=True)
    output_dir = get_output_dir(imdb.name)
    model_paths = train_net(_stage_solver(solver, imdb, stage_name), roidb, output_dir,
                            pretrained_model=init_model, max_iters=max_iters)
    for path in model_paths[:-1]:
        os.remove(path)
    return model_paths[-1]


def _generate_proposals(parent_cfg, stage_name, imdb_name, rpn_model, rpn_test_prototxt):
    """Proposals of an RPN model for every training image; returns the proposals file (.npz)."""
    _use_cfg(parent_cfg)
    cfg.TEST.RPN_PRE_NMS_TOP_N = TRAIN_PROPOSALS_PRE_NMS
    cfg.TEST.RPN_POST_NMS_TOP_N = TRAIN_PROPOSALS_POST_NMS
    from datasets.factory import get_imdb
    from datasets.imdb import save_box_list
    from fast_rcnn.test import detect_settings
    from rpn.generate import imdb_proposals
    init_caffe()
    imdb = get_imdb(imdb_name)
    output_dir = get_output_dir(imdb.name)
    net = open_test_net(rpn_test_prototxt, rpn_model, imdb.num_classes, osp.join(output_dir, 'prototxt'))
    proposals = imdb_proposals(net, imdb, detect_settings(cfg))
    path = osp.join(output_dir, osp.splitext(osp.basename(rpn_model))[0] + '_proposals.npz')
    save_box_list(path, imdb.image_index, proposals)
    print(f'[{stage_name}] wrote {sum(len(p) for p in proposals)} proposals of {len(proposals)} images '
          f'to {path}', flush=True)
    return path


def _assemble_final_model(parent_cfg, imdb_name, test_prototxt, rpn_model, fast_rcnn_model, final_path):
    """Copy the stage-2 RPN (step 3) and stage-2 Fast R-CNN (step 4) parameters by layer name into the test
    net (``fast_rcnn.alt_opt.merge_final_model``, which also checks the shared convs agree); save it."""
    _use_cfg(parent_cfg)
    from datasets.factory import get_imdb
    init_caffe()
    imdb = get_imdb(imdb_name)
    proto_dir = osp.join(get_output_dir(imdb.name), 'prototxt')
    # Each model holds only its part of the test net: the detector everything but the RPN, the RPN model
    # the shared convs and the RPN.
    net = open_test_net(test_prototxt, fast_rcnn_model, imdb.num_classes, proto_dir,
                        required=lambda name: not name.startswith(RPN_LAYER_PREFIX))
    rpn_net = open_test_net(test_prototxt, rpn_model, imdb.num_classes, proto_dir,
                            required=lambda name: name.startswith(RPN_LAYER_PREFIX))
    shared, rpn_layers = merge_final_model(net, rpn_net, rpn_model, fast_rcnn_model)
    with atomic_path(final_path) as temp:
        net.save(temp)
    print(f'Final model (shared {", ".join(shared)}; RPN {", ".join(rpn_layers)} from '
          f'{osp.basename(rpn_model)}; the rest from {osp.basename(fast_rcnn_model)}): {final_path}',
          flush=True)
    return final_path


# Signals the driver forwards to the running stage (which snapshots and stops), then stops itself.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StageStopped(Exception):
    """A stage ended without a result; ``exit_status`` is what the driver exits with."""

    def __init__(self, message, exit_status):
        super().__init__(message)
        self.exit_status = exit_status


def _stage_main(conn, func, parent_cfg, kwargs):
    """Body of a stage process: run ``func`` and send ``(status, payload)`` to the driver."""
    from fast_rcnn.train import EmptyRoidbError, TrainingDivergedError, TrainingInterrupted
    from fast_rcnn.weights import WeightsError
    try:
        result = func(parent_cfg, **kwargs)
    except TrainingInterrupted as exc:
        conn.send(('interrupted', str(exc)))
    except (WeightsError, TrainingDivergedError, EmptyRoidbError, FileNotFoundError) as exc:
        conn.send(('error', str(exc)))
    except BaseException:  # KeyboardInterrupt too: the driver reports it
        conn.send(('error', traceback.format_exc()))
    else:
        conn.send(('ok', result))
    finally:
        conn.close()


def run_in_process(func, **kwargs):
    """Run ``func(parent_cfg, **kwargs)`` in a fresh spawned process; return its result.

    SIGINT / SIGTERM received meanwhile are forwarded to the stage process (a training stage snapshots
    and stops; see ``fast_rcnn.train``); the driver then raises ``StageStopped`` with exit status
    128 + signal. A failing stage raises ``StageStopped`` with its error and status 1.
    """
    ctx = mp.get_context('spawn')
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_stage_main, args=(sender, func, cfg, kwargs))
    received = []

    def forward(signum, frame):
        del frame
        received.append(signum)
        if proc.pid is not None and proc.exitcode is None:
            os.kill(proc.pid, signum)

    previous = {signum: signal.signal(signum, forward) for signum in STOP_SIGNALS}
    try:
        proc.start()
        sender.close()
        if received:  # arrived while the process was being started
            os.kill(proc.pid, received[0])
        try:
            status, payload = receiver.recv()
        except EOFError:  # killed before it could report
            proc.join()
            status, payload = 'died', f'the stage process died (exit status {proc.exitcode})'
        proc.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        name = signal.Signals(received[0]).name
        detail = payload if status != 'ok' else 'the stage had just finished'
        raise StageStopped(f'{name} received: stopped in this stage ({detail.strip()}). The alternating '
                           f'optimisation does not resume; run it again', 128 + received[0])
    if status != 'ok':
        raise StageStopped(payload.strip(), 1)
    return payload


def main(argv=None):
    """Run the four stages and assemble the final model; print the wall time of each step."""
    args = parse_args(argv)
    apply_config(args)
    require_weights(args.pretrained_model)
    imdb = require_imdb(args.imdb_name, check=True)
    solvers, rpn_test_prototxt, test_prototxt = get_solvers(args.net_name)
    max_iters = stage_max_iters(solvers, args.iters)
    print('Called with args:', args, flush=True)
    print('Using config:', flush=True)
    pprint.pprint(cfg)
    output_dir = get_output_dir(imdb.name)
    lock = lock_output_dir(output_dir)  # noqa: F841 (held until exit; the stages write here too)
    print(f'Output goes to {output_dir}; iterations per stage: {max_iters}', flush=True)

    times = {}

    def timed(label, func, **kwargs):
        banner = '~' * 72
        print(f'{banner}\n{label}\n{banner}', flush=True)
        start = time.perf_counter()
        try:
            result = run_in_process(func, **kwargs)
        except StageStopped as exc:
            print(f'error: [{label}] {exc}', file=sys.stderr, flush=True)
            sys.exit(exc.exit_status)
        times[label] = time.perf_counter() - start
        print(f'[{label}] wall time {times[label]:.1f} s', flush=True)
        return result

    common = dict(imdb_name=args.imdb_name)
    rpn1 = timed('Step 1: stage-1 RPN, init from the initial model', _train_stage,
                 stage_name='stage1_rpn', init_model=args.pretrained_model, solver=solvers[0],
                 max_iters=max_iters[0], rpn_file=None, infix='stage1', **common)
    props1 = timed('Step 1: stage-1 RPN, generate proposals', _generate_proposals, stage_name='stage1_rpn',
                   rpn_model=rpn1, rpn_test_prototxt=rpn_test_prototxt, **common)
    frcn1 = timed('Step 2: stage-1 Fast R-CNN on stage-1 RPN proposals, init from the initial model',
                  _train_stage, stage_name='stage1_fast_rcnn', init_model=args.pretrained_model,
                  solver=solvers[1], max_iters=max_iters[1], rpn_file=props1, infix='stage1', **common)
    rpn2 = timed('Step 3: stage-2 RPN, init from the stage-1 Fast R-CNN, shared convs frozen', _train_stage,
                 stage_name='stage2_rpn', init_model=frcn1, solver=solvers[2], max_iters=max_iters[2],
                 rpn_file=None, infix='stage2', **common)
    props2 = timed('Step 3: stage-2 RPN, generate proposals', _generate_proposals, stage_name='stage2_rpn',
                   rpn_model=rpn2, rpn_test_prototxt=rpn_test_prototxt, **common)
    frcn2 = timed('Step 4: stage-2 Fast R-CNN on stage-2 RPN proposals, init from the stage-2 RPN, shared '
                  'convs frozen', _train_stage, stage_name='stage2_fast_rcnn', init_model=rpn2,
                  solver=solvers[3], max_iters=max_iters[3], rpn_file=props2, infix='stage2', **common)
    final_path = osp.join(output_dir, f'{args.net_name}_faster_rcnn_final.caffemodel')
    timed('Final model: shared convs + stage-2 RPN (step 3) + stage-2 Fast R-CNN head (step 4)',
          _assemble_final_model, test_prototxt=test_prototxt, rpn_model=rpn2, fast_rcnn_model=frcn2,
          final_path=final_path, **common)

    print('Wall time per step:', flush=True)
    for label, seconds in times.items():
        print(f'  {seconds:8.1f} s  {label}', flush=True)
    print(f'  {sum(times.values()):8.1f} s  total', flush=True)
    write_json_atomic(osp.join(output_dir, f'{args.net_name}_alt_opt_times.json'),
                      {'stage_seconds': times, 'max_iters': max_iters, 'final_model': final_path,
                       # the paper's "unshared" system is steps 1-2: stage-1 RPN + stage-1 detector
                       'stage_models': {'stage1_rpn': rpn1, 'stage1_fast_rcnn': frcn1, 'stage2_rpn': rpn2,
                                        'stage2_fast_rcnn': frcn2},
                       'train_proposals': {'stage1_rpn': props1, 'stage2_rpn': props2}}, indent=2)
    print(f'Final model: {final_path}', flush=True)
    write_final_model(args.final_model_file, final_path)
    return final_path


if __name__ == '__main__':
    main()
