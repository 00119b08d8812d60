#!/usr/bin/env python3
"""Check a dataset before training: ``tools/check_dataset.py <name | path/to/file.yml>``.

Prints images and objects per split and class, images without objects, difficult / truncated counts, box
sizes (and the share below the smallest anchor at the training scale; a histogram PNG), aspect ratios and
every problem with its file and field. Exit status 1 when anything would stop training (see
``datasets.dataset_check``), 2 for a bad command line or dataset file.
"""

import argparse
import os.path as osp
import sys

import yaml
from google.protobuf import text_format

import _init_paths  # noqa: F401
from datasets.dataset_check import check_dataset, format_report
from datasets.dataset_file import DatasetFileError, load_dataset_file, named_dataset_files
from fast_rcnn.config import cfg, cfg_from_file
from fast_rcnn.models import read_net
from rpn.generate_anchors import generate_anchors


def smallest_anchor_side(prototxt=None):
    """Square root of the smallest anchor area of the net ``prototxt`` (its AnchorTargetLayer's ``scales`` and
    ``ratios``), or of the released anchors (scales 8, 16, 32; the VOC nets) without one."""
    settings = {}
    if prototxt is not None:
        layers = [layer for layer in read_net(prototxt).layer
                  if layer.type == 'Python' and layer.python_param.layer == 'AnchorTargetLayer']
        if not layers:
            raise ValueError(f'{prototxt}: no AnchorTargetLayer (give a training net of an RPN)')
        settings = yaml.safe_load(layers[0].python_param.param_str) or {}
    anchors = generate_anchors(**{k: settings[k] for k in ('scales', 'ratios') if k in settings})
    return float(((anchors[:, 2] - anchors[:, 0] + 1) * (anchors[:, 3] - anchors[:, 1] + 1)).min() ** 0.5)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Check a dataset file and its data before training')
    parser.add_argument('dataset', help='a dataset name (data/datasets/<name>.yml) or a dataset file path')
    parser.add_argument('--cfg', dest='cfg_files', action='append', default=[],
                        help='config file (YAML) for DATA_DIR and the training scale; may be repeated')
    parser.add_argument('--def', dest='prototxt', default=None,
                        help='the training net whose anchors the boxes are compared with, e.g. '
                             'models/synth/TINY/faster_rcnn_end2end/train.prototxt [the released anchors]')
    parser.add_argument('--histogram', default=None,
                        help='box-size histogram PNG [output/dataset_checks/<name>_box_sizes.png]')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for path in args.cfg_files:
        cfg_from_file(path)
    data_dir = osp.join(cfg.ROOT_DIR, cfg.DATA_DIR)
    is_file = args.dataset.endswith(('.yml', '.yaml'))
    path = args.dataset if is_file else named_dataset_files().get(args.dataset)
    if path is None:
        print(f'error: no dataset file data/datasets/{args.dataset}.yml (known: '
              f'{", ".join(named_dataset_files())}; or give a path to a .yml)', file=sys.stderr)
        return 2
    try:
        spec = load_dataset_file(path)
    except DatasetFileError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    try:
        smallest_anchor = smallest_anchor_side(args.prototxt)
    except (OSError, ValueError, yaml.YAMLError, text_format.ParseError) as exc:
        print(f'error: --def {args.prototxt}: {exc}', file=sys.stderr)
        return 2
    report = check_dataset(spec, data_dir)
    histogram = args.histogram or osp.join(cfg.ROOT_DIR, 'output', 'dataset_checks',
                                           f'{spec["name"]}_box_sizes.png')
    print(format_report(report, spec, smallest_anchor, (cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE),
                        histogram), flush=True)
    return 1 if report.errors else 0


if __name__ == '__main__':
    sys.exit(main())
