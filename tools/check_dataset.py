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

import _init_paths  # noqa: F401
from datasets.dataset_check import check_dataset, format_report
from datasets.dataset_file import DatasetFileError, load_dataset_file, named_dataset_files
from fast_rcnn.config import cfg, cfg_from_file
from rpn.generate_anchors import generate_anchors


def smallest_anchor_side():
    """Square root of the smallest area among the default anchors (16 px base, scales 8, 16, 32)."""
    anchors = generate_anchors()
    return float(((anchors[:, 2] - anchors[:, 0] + 1) * (anchors[:, 3] - anchors[:, 1] + 1)).min() ** 0.5)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Check a dataset file and its data before training')
    parser.add_argument('dataset', help='a dataset name (data/datasets/<name>.yml) or a dataset file path')
    parser.add_argument('--cfg', dest='cfg_files', action='append', default=[],
                        help='config file (YAML) for DATA_DIR and the training scale; may be repeated')
    parser.add_argument('--smallest-anchor', type=float, default=smallest_anchor_side(),
                        help='side (px, sqrt of area) of the smallest anchor at the training scale '
                             '[the default anchors\': %(default)g]')
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
    report = check_dataset(spec, data_dir)
    histogram = args.histogram or osp.join(cfg.ROOT_DIR, 'output', 'dataset_checks',
                                           f'{spec["name"]}_box_sizes.png')
    print(format_report(report, spec, args.smallest_anchor, (cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE),
                        histogram), flush=True)
    return 1 if report.errors else 0


if __name__ == '__main__':
    sys.exit(main())
