"""The embedded synthetic shapes dataset (written by data/scripts/make_synth_dataset.py).

Its imdbs (``synth_{trainval,test}``, ``synth_mini_*``) come from the dataset files
``data/datasets/synth.yml`` / ``synth_mini.yml`` like any other; this module gives the generator the class
list and the folder that ``synth.yml`` names.
"""

import os.path as osp

from datasets.dataset_file import dataset_root, load_dataset_file, named_dataset_files

_SPEC = load_dataset_file(named_dataset_files()['synth'])
SYNTH_CLASSES = ('__background__',) + _SPEC['classes']
# The folder name of the generated set (the <folder> of its XMLs).
SYNTH_DATASET_DIRNAME = osp.basename(_SPEC['root'])


def synth_dataset_path(data_dir):
    """Where the generator writes by default: the ``root`` of ``synth.yml`` under ``data_dir``
    (cfg.DATA_DIR), i.e. ``<data_dir>/SYNTHdevkit/SYNTH``."""
    return dataset_root(_SPEC, data_dir)
