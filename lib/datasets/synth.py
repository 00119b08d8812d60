"""The embedded synthetic shapes dataset (written by data/scripts/make_synth_dataset.py).

Its imdbs (``synth_{trainval,test}``, ``synth_mini_*``) come from the dataset files
``data/datasets/synth.yml`` / ``synth_mini.yml`` like any other; this module gives the generator the class
list and the folder that ``synth.yml`` names.
"""

import os.path as osp

from datasets.dataset_file import dataset_root, load_dataset_file, named_dataset_files

_SPEC = load_dataset_file(named_dataset_files()['synth'])
# Its COCO view (synth_coco.yml): the JSON files the generator writes beside the VOC ones.
_COCO_SPEC = load_dataset_file(named_dataset_files()['synth_coco'])
SYNTH_CLASSES = ('__background__',) + _SPEC['classes']
# The folder name of the generated set (the <folder> of its XMLs).
SYNTH_DATASET_DIRNAME = osp.basename(_SPEC['root'])


def synth_dataset_path(data_dir):
    """Where the generator writes by default: the ``root`` of ``synth.yml`` under ``data_dir``
    (cfg.DATA_DIR), i.e. ``<data_dir>/SYNTHdevkit/SYNTH``."""
    return dataset_root(_SPEC, data_dir)


def synth_coco_annotation_file(image_set, dataset_path):
    """The COCO JSON of ``image_set`` in the generated set at ``dataset_path`` (as ``synth_coco.yml``
    names it: ``annotations/instances_<image_set>.json``)."""
    return osp.join(dataset_path, _COCO_SPEC['split_files'][image_set])
