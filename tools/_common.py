"""What the command-line tools share: common options, config loading, Caffe set-up, input checks."""

import os
import os.path as osp
import sys

import numpy as np

import caffe
from fast_rcnn.config import cfg, cfg_from_file, cfg_from_list
from fast_rcnn.models import adapt_prototxt


def add_common_args(parser):
    """Add ``--gpu``, ``--cpu``, ``--cfg`` (repeatable) and ``--set``."""
    parser.add_argument('--gpu', dest='gpu_id', type=int, default=0, help='GPU id to use; -1 for the CPU [0]')
    parser.add_argument('--cpu', action='store_true', help='run on the CPU (same as --gpu -1)')
    parser.add_argument('--cfg', dest='cfg_files', action='append', default=[],
                        help='config file (YAML) merged into cfg; may be repeated (merged in order)')
    parser.add_argument('--set', dest='set_cfgs', default=None, nargs='+',
                        help='config KEY VALUE pairs, e.g. --set EXP_DIR foo TRAIN.SCALES "(400,)"')


def add_net_args(parser, def_help, net_help):
    """Add ``--def`` (a net definition, ``args.prototxt``) and ``--net`` (its weights,
    ``args.caffemodel``)."""
    parser.add_argument('--def', dest='prototxt', required=True, help=def_help)
    parser.add_argument('--net', dest='caffemodel', required=True, help=net_help)


def add_backend_arg(parser):
    """Add ``--backend caffe|opencv`` (the engine that runs a test net; see ``open_net``)."""
    parser.add_argument('--backend', choices=('caffe', 'opencv'), default='caffe',
                        help='engine: our Caffe, or OpenCV dnn (--def is then an OpenCV deploy net from '
                             'tools/export_deploy.py, or our test net, converted with cfg.TEST) [caffe]')


def open_net(args, num_classes, out_dir, prefix=''):
    """The test net of ``args.prototxt`` / ``args.caffemodel`` on ``args.backend``, named after the weights
    (the name picks the output directory). OpenCV: ``fast_rcnn.deploy.open_opencv_net``; settings OpenCV
    ignores are printed, settings it cannot express stop the tool."""
    name = osp.splitext(osp.basename(args.caffemodel))[0]
    if args.backend == 'opencv':
        from fast_rcnn.deploy import open_opencv_net
        try:
            net, reports = open_opencv_net(args.prototxt, args.caffemodel, num_classes, out_dir, cfg.TEST,
                                           name=name)
        except ValueError as exc:
            fail(str(exc))
        for line in reports:
            print(f'note: {line}', flush=True)
        return net
    net = open_test_net(args.prototxt, args.caffemodel, num_classes, out_dir, prefix=prefix)
    net.name = name
    return net


def require_net_files(args):
    """Stop at once unless ``--def`` and ``--net`` name existing files."""
    require_file(args.prototxt, 'network definition')
    require_weights(args.caffemodel)


def open_test_net(prototxt, weights, num_classes, out_dir, prefix=''):
    """The TEST-phase net of ``prototxt`` adapted to ``num_classes`` (copy written to ``out_dir``), with the
    ``weights`` caffemodel loaded."""
    adapted = adapt_to_imdb(prototxt, num_classes, out_dir, prefix=prefix)
    return caffe.Net(adapted, caffe.TEST, weights=weights)


def apply_config(args):
    """Merge ``--cfg`` files and ``--set`` into ``cfg`` and set ``cfg.GPU_ID`` (−1 in CPU mode)."""
    for path in args.cfg_files:
        cfg_from_file(path)
    if args.set_cfgs is not None:
        cfg_from_list(args.set_cfgs)
    cfg.GPU_ID = -1 if args.cpu or args.gpu_id < 0 else args.gpu_id
    # Relative paths in config files are relative to the repository root.
    cfg.MODELS_DIR = osp.join(cfg.ROOT_DIR, cfg.MODELS_DIR)
    cfg.DATA_DIR = osp.join(cfg.ROOT_DIR, cfg.DATA_DIR)


def init_caffe(seed=True):
    """Select Caffe's device from ``cfg.GPU_ID``; with ``seed`` seed numpy and Caffe with cfg.RNG_SEED."""
    if seed:
        np.random.seed(cfg.RNG_SEED)
        caffe.set_random_seed(cfg.RNG_SEED)
    if cfg.GPU_ID < 0:
        caffe.set_mode_cpu()
    else:
        caffe.set_mode_gpu()
        caffe.set_device(cfg.GPU_ID)


def fail(message):
    """Stop the tool with ``message`` on stderr (exit status 1)."""
    print(f'error: {message}', file=sys.stderr, flush=True)
    sys.exit(1)


def require_weights(path):
    """Stop at once unless the initial / trained model ``path`` exists, saying what to put where."""
    if path is None or osp.isfile(path):
        return
    name = osp.basename(path)
    if osp.dirname(osp.abspath(path)) == osp.join(cfg.DATA_DIR, 'imagenet_models'):
        fail(f'missing ImageNet model {path}. Put the ImageNet-pretrained {name} (the released '
             f'py-faster-rcnn imagenet_models, e.g. ZF.v2.caffemodel or VGG16.v2.caffemodel) into '
             f'{osp.dirname(osp.abspath(path))}/. The embedded SYNTH experiments need none: their '
             f'initial model is written by tools/make_init_model.py.')
    fail(f'model weights not found: {path}')


def require_imdb(name):
    """Load the imdb ``name`` now, so that a missing dataset stops the tool before any work."""
    from datasets.factory import get_imdb
    try:
        return get_imdb(name)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        fail(str(exc))


def require_file(path, what):
    """Stop unless ``path`` exists; ``what`` says what it is."""
    if not osp.isfile(path):
        fail(f'{what} not found: {path}')


def adapt_to_imdb(src, num_classes, out_dir, prefix=''):
    """Copy net prototxt ``src`` into ``out_dir`` with its class counts set to ``num_classes``; return the
    copy's path (``<out_dir>/<prefix><basename>``)."""
    require_file(src, 'network definition')
    os.makedirs(out_dir, exist_ok=True)
    return adapt_prototxt(src, osp.join(out_dir, prefix + osp.basename(src)), num_classes)
