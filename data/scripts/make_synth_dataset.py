#!/usr/bin/env python3
"""Generate the embedded synthetic detection dataset in the PASCAL VOC layout.

Writes ``<out>/JPEGImages/<id>.jpg``, ``<out>/Annotations/<id>.xml`` (1-based VOC coordinates) and
``<out>/ImageSets/Main/{trainval,test}.txt``; default ``<out>`` is ``<cfg.DATA_DIR>/SYNTHdevkit/SYNTH``.
The same objects are also written as COCO JSON, ``<out>/annotations/instances_{trainval,test}.json``
(``write_coco_views``), derived from the VOC files after they are written (or found up to date), so the two
views cannot disagree and adding the JSON never touches the images or the XMLs.
Images 1..N_trainval form trainval, the next N_test form test (disjoint by construction). Image k is drawn
from its own generator seeded with (seed, k), so the output depends only on the seed and the counts.
A stamp file (generator version, seed, counts) makes a rerun with the same arguments a no-op.
See synth_shapes.py for the scene and annotation rules, and data/README.md.

Usage: make_synth_dataset.py [--seed S] [--num-trainval N] [--num-test M] [--out DIR] [--force]
"""

import argparse
import json
import os
import os.path as osp
import shutil
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', 'lib'))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from datasets.coco_eval import roidb_box_to_coco  # noqa: E402
from datasets.pascal_voc import annotation_xml, parse_annotation, read_image_set  # noqa: E402
from datasets.synth import SYNTH_CLASSES, SYNTH_DATASET_DIRNAME, synth_coco_annotation_file, \
    synth_dataset_path  # noqa: E402
from fast_rcnn.config import cfg  # noqa: E402
from synth_shapes import SHAPES, render_scene  # noqa: E402
from utils.fileio import write_text_atomic  # noqa: E402

# Bump whenever the output for a given seed changes (drawing, annotation rule, file format).
GENERATOR_VERSION = 5
DEFAULT_SEED = 20151207
DEFAULT_NUM_TRAINVAL = 1000
DEFAULT_NUM_TEST = 300
JPEG_QUALITY = 92
STAMP_FILE = 'synth_stamp.json'
STATS_FILE = 'synth_stats.json'

if SHAPES != SYNTH_CLASSES[1:]:
    raise RuntimeError(f'synth_shapes.SHAPES {SHAPES} must equal datasets.synth.SYNTH_CLASSES[1:]')


def image_id(k):
    """Id of image ``k`` (1-based): six digits, like VOC2007."""
    return f'{k:06d}'


def new_stats():
    """Empty statistics accumulator (see ``add_to_stats``)."""
    return {'images': 0, 'images_without_objects': 0, 'objects': {s: 0 for s in SHAPES},
            'difficult': {s: 0 for s in SHAPES}, 'dropped_occluded': 0,
            'image_width': [None, None], 'image_height': [None, None],
            'box_side': [None, None], 'box_aspect_w_over_h': [None, None], 'objects_per_image_max': 0}


def _widen(interval, value):
    """Extend ``[lo, hi]`` (None when empty) to include ``value``."""
    interval[0] = value if interval[0] is None else min(interval[0], value)
    interval[1] = value if interval[1] is None else max(interval[1], value)


def add_to_stats(stats, width, height, objects, dropped):
    """Accumulate one image into ``stats``."""
    stats['images'] += 1
    stats['images_without_objects'] += int(not objects)
    stats['dropped_occluded'] += dropped
    stats['objects_per_image_max'] = max(stats['objects_per_image_max'], len(objects))
    _widen(stats['image_width'], width)
    _widen(stats['image_height'], height)
    for obj in objects:
        stats['objects'][obj['name']] += 1
        stats['difficult'][obj['name']] += int(obj['difficult'])
        w = obj['box'][2] - obj['box'][0] + 1
        h = obj['box'][3] - obj['box'][1] + 1
        _widen(stats['box_side'], min(w, h))
        _widen(stats['box_side'], max(w, h))
        _widen(stats['box_aspect_w_over_h'], round(w / h, 3))


def write_image(out_dir, k, seed):
    """Render image ``k`` with seed (seed, k) and write its JPEG and XML. Returns (width, height, objects,
    dropped)."""
    rng = np.random.default_rng([seed, k])
    im, objects, dropped = render_scene(rng)
    index = image_id(k)
    ok, jpeg = cv2.imencode('.jpg', im, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f'JPEG encoding failed for image {index}')
    with open(osp.join(out_dir, 'JPEGImages', f'{index}.jpg'), 'wb') as f:
        f.write(jpeg.tobytes())
    with open(osp.join(out_dir, 'Annotations', f'{index}.xml'), 'w', encoding='utf-8') as f:
        f.write(annotation_xml(f'{index}.jpg', im.shape[1], im.shape[0], objects, SYNTH_DATASET_DIRNAME))
    return im.shape[1], im.shape[0], objects, dropped


def coco_view(out_dir, split):
    """COCO-format dict of one split, read from its VOC files: image id = int(VOC id), file_name
    ``<id>.jpg``, category ids 1..K in ``SYNTH_CLASSES`` order, ``bbox`` ``[x, y, w, h]`` of the 0-based
    pixel-inclusive box (w = x2 - x1 + 1), ``area`` w * h, difficult objects as crowd regions (``iscrowd``
    1: left out of training and ignored by the evaluation, like VOC's difficult)."""
    class_to_ind = {name: k for k, name in enumerate(SYNTH_CLASSES) if k > 0}
    images, annotations = [], []
    for index in read_image_set(osp.join(out_dir, 'ImageSets', 'Main', f'{split}.txt')):
        ann = parse_annotation(osp.join(out_dir, 'Annotations', f'{index}.xml'), class_to_ind)
        images.append({'id': int(index), 'file_name': f'{index}.jpg', 'width': ann['width'],
                       'height': ann['height']})
        for bbox, cls, difficult in zip(roidb_box_to_coco(ann['boxes']), ann['gt_classes'], ann['difficult']):
            x, y, w, h = (int(v) for v in bbox)
            annotations.append({'id': len(annotations) + 1, 'image_id': int(index), 'category_id': int(cls),
                                'bbox': [x, y, w, h], 'area': w * h, 'iscrowd': int(difficult)})
    categories = [{'id': k, 'name': name, 'supercategory': 'shape'} for k, name in enumerate(SYNTH_CLASSES)
                  if k > 0]
    return {'images': images, 'annotations': annotations, 'categories': categories}


def write_coco_views(out_dir):
    """Write each split's COCO JSON (``coco_view``) where it is missing or differs; returns the paths
    written."""
    written = []
    for split in ('trainval', 'test'):
        path = synth_coco_annotation_file(split, out_dir)
        text = json.dumps(coco_view(out_dir, split)) + '\n'
        if osp.isfile(path):
            with open(path, encoding='utf-8') as f:
                if f.read() == text:
                    continue
        os.makedirs(osp.dirname(path), exist_ok=True)
        write_text_atomic(path, text)
        written.append(path)
    return written


def read_stamp(out_dir):
    """The stamp dict of a previous run in ``out_dir``, or None."""
    path = osp.join(out_dir, STAMP_FILE)
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def generate(out_dir, seed=DEFAULT_SEED, num_trainval=DEFAULT_NUM_TRAINVAL, num_test=DEFAULT_NUM_TEST,
             force=False):
    """Write the dataset to ``out_dir`` unless an up-to-date stamp is there.

    Returns ``(stats, generated)``: per-split statistics (read back from the previous run when skipped) and
    whether anything was written.
    """
    stamp = {'generator_version': GENERATOR_VERSION, 'seed': seed, 'num_trainval': num_trainval,
             'num_test': num_test}
    if not force and read_stamp(out_dir) == stamp and osp.isfile(osp.join(out_dir, STATS_FILE)):
        with open(osp.join(out_dir, STATS_FILE), encoding='utf-8') as f:
            return json.load(f), False
    if read_stamp(out_dir) is not None:
        # our own earlier output (it has a stamp): start clean so no stale files remain
        for sub in ('JPEGImages', 'Annotations', 'ImageSets', 'annotations'):
            shutil.rmtree(osp.join(out_dir, sub), ignore_errors=True)
        os.remove(osp.join(out_dir, STAMP_FILE))
    for sub in ('JPEGImages', 'Annotations', osp.join('ImageSets', 'Main')):
        os.makedirs(osp.join(out_dir, sub), exist_ok=True)

    splits = {'trainval': range(1, num_trainval + 1),
              'test': range(num_trainval + 1, num_trainval + num_test + 1)}
    stats = {}
    start = time.perf_counter()
    for split, numbers in splits.items():
        stats[split] = new_stats()
        for k in numbers:
            add_to_stats(stats[split], *write_image(out_dir, k, seed))
        with open(osp.join(out_dir, 'ImageSets', 'Main', f'{split}.txt'), 'w', encoding='utf-8') as f:
            f.writelines(f'{image_id(k)}\n' for k in numbers)
    stats['seconds'] = round(time.perf_counter() - start, 2)
    with open(osp.join(out_dir, STATS_FILE), 'w', encoding='utf-8') as f:
        json.dump(stats, f, indent=2)
    with open(osp.join(out_dir, STAMP_FILE), 'w', encoding='utf-8') as f:
        json.dump(stamp, f, indent=2)  # written last: a partial run is never taken as up to date
    return stats, True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seed', type=int, default=DEFAULT_SEED)
    parser.add_argument('--num-trainval', type=int, default=DEFAULT_NUM_TRAINVAL)
    parser.add_argument('--num-test', type=int, default=DEFAULT_NUM_TEST)
    parser.add_argument('--out', default=None,
                        help='output directory (default: <DATA_DIR>/SYNTHdevkit/SYNTH)')
    parser.add_argument('--force', action='store_true', help='regenerate even when the stamp is up to date')
    args = parser.parse_args(argv)
    if args.num_trainval < 1 or args.num_test < 1:
        parser.error('--num-trainval and --num-test must be positive')
    out_dir = args.out or synth_dataset_path(cfg.DATA_DIR)
    stats, generated = generate(out_dir, args.seed, args.num_trainval, args.num_test, args.force)
    for path in write_coco_views(out_dir):
        print(f'wrote {path}')
    state = (f'generated in {stats["seconds"]} s' if generated
             else 'up to date (stamp matches; --force regenerates)')
    print(f'synthetic dataset {out_dir}: {state}')
    for split in ('trainval', 'test'):
        print(f'{split}: {json.dumps(stats[split])}')


if __name__ == '__main__':
    main()
