"""The embedded synthetic shapes dataset (written by data/scripts/make_synth_dataset.py).

It is a VOC-layout dataset at ``<cfg.DATA_DIR>/SYNTHdevkit/SYNTH/`` read by the same ``pascal_voc`` loader
with its own class list, evaluated with the VOC07 11-point metric.
"""

import os.path as osp

from datasets.pascal_voc import pascal_voc
from fast_rcnn.config import cfg

SYNTH_CLASSES = ('__background__', 'circle', 'ring', 'triangle', 'rectangle', 'cross', 'star')
SYNTH_DEVKIT_DIRNAME = 'SYNTHdevkit'
SYNTH_DATASET_DIRNAME = 'SYNTH'
SYNTH_IMAGE_SETS = ('trainval', 'test')
# The synth_mini_* subsets (the first images of each set) for quick smoke tests.
SYNTH_MINI_SIZES = {'trainval': 40, 'test': 20}


def synth_devkit_path():
    """``<cfg.DATA_DIR>/SYNTHdevkit``."""
    return osp.join(cfg.DATA_DIR, SYNTH_DEVKIT_DIRNAME)


def synth_dataset_path():
    """``<cfg.DATA_DIR>/SYNTHdevkit/SYNTH``: where the generator writes by default."""
    return osp.join(synth_devkit_path(), SYNTH_DATASET_DIRNAME)


def synth(image_set, mini=False):
    """The imdb ``synth_<image_set>`` (or ``synth_mini_<image_set>``, its first images)."""
    if image_set not in SYNTH_IMAGE_SETS:
        raise ValueError(f'synth has image sets {SYNTH_IMAGE_SETS}, not {image_set!r}')
    hint = ('Generate it with: .venv/bin/python data/scripts/make_synth_dataset.py  '
            '(`make` does this; see data/README.md).')
    return pascal_voc(image_set, None, devkit_path=synth_devkit_path(), classes=SYNTH_CLASSES,
                      dataset_dir=SYNTH_DATASET_DIRNAME,
                      name=f'synth_mini_{image_set}' if mini else f'synth_{image_set}',
                      max_images=SYNTH_MINI_SIZES[image_set] if mini else None,
                      use_07_metric=True, missing_hint=hint)
