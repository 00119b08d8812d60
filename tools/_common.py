"""What the command-line tools share: common options, config loading, Caffe set-up, input checks,
output-directory locks, weight checks and the resume command after a stop signal."""

import os
import os.path as osp
import shlex
import sys

import numpy as np
import yaml

import caffe
from fast_rcnn.config import cfg, cfg_from_file, cfg_from_list
from fast_rcnn.device import usable_gpu_count
from fast_rcnn.models import adapt_prototxt
from fast_rcnn.weights import WeightsError, check_model, net_shapes, read_model
from utils.fileio import DirectoryLock, LockedError, write_text_atomic


def add_common_args(parser):
    """Add ``--gpu``, ``--cpu``, ``--cfg`` (repeatable) and ``--set``."""
    parser.add_argument('--gpu', dest='gpu_id', type=int, default=None,
                        help='GPU id to use; -1 for the CPU [0 when a GPU is usable, else the CPU]')
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


def open_test_net(prototxt, weights, num_classes, out_dir, prefix='', required=None):
    """The TEST-phase net of ``prototxt`` adapted to ``num_classes`` (copy written to ``out_dir``), with the
    ``weights`` caffemodel loaded after checking it against the net (stops the tool naming the file when
    it does not fit). ``required``: a predicate on layer names selecting the parameter layers the file must
    provide (default: all of them)."""
    adapted = adapt_to_imdb(prototxt, num_classes, out_dir, prefix=prefix)
    net = caffe.Net(adapted, caffe.TEST)
    try:
        report = check_model(weights, net_shapes(net), require_all=required is None)
        missing = [name for name in report.skipped if required is not None and required(name)]
        if missing:
            raise WeightsError(f'model {weights} lacks layers {", ".join(missing)} of the net')
    except WeightsError as exc:
        fail(f'{exc} (net {prototxt})')
    if report.ignored:
        print(f'{weights}: layers not in {osp.basename(prototxt)}, ignored: {", ".join(report.ignored)}',
              flush=True)
    net.copy_from(weights)
    return net


def _config_error(source, exc):
    """One line for a config error (YAML errors carry a multi-line mark)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f'{source}: invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}'
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return f'{source}: {" ".join(str(text).split())}'


def apply_config(args):
    """Merge ``--cfg`` files and ``--set`` into ``cfg`` and set ``cfg.GPU_ID`` (−1 in CPU mode). A bad
    file or value stops the tool with one line naming it."""
    for path in args.cfg_files:
        try:
            cfg_from_file(path)
        except (OSError, yaml.YAMLError, KeyError, ValueError, TypeError) as exc:
            fail(_config_error(f'--cfg {path}', exc))
    if args.set_cfgs is not None:
        try:
            cfg_from_list(args.set_cfgs)
        except (KeyError, ValueError, TypeError) as exc:
            fail(_config_error('--set', exc))
    cfg.GPU_ID = _choose_gpu(args)
    # Relative paths in config files are relative to the repository root.
    cfg.MODELS_DIR = osp.join(cfg.ROOT_DIR, cfg.MODELS_DIR)
    cfg.DATA_DIR = osp.join(cfg.ROOT_DIR, cfg.DATA_DIR)


def _choose_gpu(args):
    """The device id for ``cfg.GPU_ID``: −1 for ``--cpu`` / ``--gpu -1``; a GPU given with ``--gpu N`` must
    be usable (else the tool stops); with neither option GPU 0 when usable, else the CPU (one warning)."""
    if args.cpu or (args.gpu_id is not None and args.gpu_id < 0):
        return -1
    count = usable_gpu_count()
    if args.gpu_id is None:
        if count == 0:
            print('warning: no usable GPU: running on the CPU (pass --cpu to say so, --gpu N to insist)',
                  file=sys.stderr, flush=True)
            return -1
        return 0
    if args.gpu_id >= count:
        fail(f'--gpu {args.gpu_id}: {count or "no"} usable CUDA device{"" if count == 1 else "s"} on this '
             f'machine{"" if count else " (or a CPU-only build)"}; pass --cpu to run on the CPU')
    return args.gpu_id


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


def lock_output_dir(path):
    """Hold the lock of output directory ``path`` for the rest of this process (a second run into it
    stops at once, naming the holder's pid). Returns the lock."""
    try:
        return DirectoryLock(path).acquire()
    except LockedError as exc:
        fail(str(exc))


def write_final_model(path, model):
    """Write the final model's path (one line) to ``path`` (``--final-model-file``), atomically."""
    if path:
        write_text_atomic(path, f'{model}\n')


def resume_command(argv, solverstate):
    """The shell command that resumes: this tool's command line with ``--resume solverstate``."""
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == '--resume':
            skip = True
            continue
        if arg.startswith('--resume='):
            continue
        args.append(arg)
    words = [sys.executable, sys.argv[0]] + args + ['--resume', solverstate]
    return ' '.join(shlex.quote(w) for w in words)


def exit_interrupted(exc, argv=None):
    """Report a ``TrainingInterrupted`` (the snapshot, the resume command) and exit 128 + signal."""
    print(f'{exc}', file=sys.stderr, flush=True)
    if argv is not None:
        print(f'To resume: {resume_command(argv, exc.solverstate)}', file=sys.stderr, flush=True)
    sys.exit(128 + exc.signum)


def require_weights(path):
    """Stop at once unless the initial / trained model ``path`` exists, saying what to put where, and is a
    parsable caffemodel (not empty or truncated; checked against the net later, when it is built)."""
    if path is None:
        return
    if osp.isfile(path):
        try:
            read_model(path)
        except WeightsError as exc:
            fail(str(exc))
        return
    name = osp.basename(path)
    if osp.dirname(osp.abspath(path)) == osp.join(cfg.DATA_DIR, 'imagenet_models'):
        fail(f'missing ImageNet model {path}. Put the ImageNet-pretrained {name} (the released '
             f'py-faster-rcnn imagenet_models, e.g. ZF.v2.caffemodel or VGG16.v2.caffemodel) into '
             f'{osp.dirname(osp.abspath(path))}/. The embedded SYNTH experiments need none: their '
             f'initial model is written by tools/make_init_model.py.')
    fail(f'model weights not found: {path}')


def require_imdb(name, check=False):
    """Load the imdb ``name`` and its ground truth now (ids, annotations with the training rules, image
    files and sizes), so that a missing or bad dataset stops the tool with one line before any work.
    With ``check`` (the training tools) every dataset file it names is first checked like
    ``tools/check_dataset.py`` does (cached by content hash under ``<DATA_DIR>/cache/dataset_checks``), so
    the tool lists every problem, not the first; a missing dataset keeps the loader's message (what to get).
    """
    from datasets.factory import get_imdb
    try:
        imdb = get_imdb(name)
    except FileNotFoundError as exc:
        fail(str(exc))
    except (KeyError, ValueError) as exc:
        if check:
            try:
                require_checked_datasets(name)  # stops listing every problem when it finds any
            except (FileNotFoundError, KeyError, ValueError):
                pass  # an unknown name or a bad dataset file: the loader's message says it
        fail(str(exc))
    try:
        if check:
            require_checked_datasets(name)
        imdb.gt_roidb()
    except (FileNotFoundError, KeyError, ValueError) as exc:
        fail(str(exc))
    return imdb


# Dataset errors a training tool prints before it stops (the checker prints all).
_ERRORS_SHOWN = 20


def require_checked_datasets(name):
    """Stop the tool, listing every error, when a dataset file of imdb ``name`` (``a+b`` too) fails
    ``datasets.dataset_check``."""
    from datasets.dataset_check import cached_check
    from datasets.factory import resolve_imdb_name
    specs, splits = {}, {}
    for part in name.split('+'):
        spec, split = resolve_imdb_name(part)
        specs[spec['path']] = spec
        splits.setdefault(spec['path'], []).append(split)
    for path, spec in specs.items():
        errors, from_cache = cached_check(spec, cfg.DATA_DIR, osp.join(cfg.DATA_DIR, 'cache'), splits[path])
        if errors:
            lines = [f'{p["file"]}: {p["field"]}: {p["message"]}' for p in errors[:_ERRORS_SHOWN]]
            if len(errors) > _ERRORS_SHOWN:
                lines.append(f'... and {len(errors) - _ERRORS_SHOWN} more')
            fail(f'dataset {spec["name"]} ({spec["path"]}) has {len(errors)} errors that would stop '
                 f'training (tools/check_dataset.py {spec["path"]} prints them all):\n  '
                 + '\n  '.join(lines))
        print(f'Dataset {spec["name"]} checked: no errors{" (cached)" if from_cache else ""}', flush=True)


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
