"""Imdbs by name: ``get_imdb('voc_2007_trainval')``; ``'a+b'`` combines sets (VOC 07+12).

Every name is ``<dataset>_<split>`` of a dataset file ``data/datasets/<dataset>.yml`` (the built-in VOC and
synth sets are such files too; see ``datasets.dataset_file``), or ``path/to/file.yml:<split>`` for a
dataset file anywhere. ``get_imdb`` is the configuration boundary: it reads ``cfg.DATA_DIR`` (where
relative dataset roots and the caches are) and ``cfg.TRAIN.USE_DIFFICULT`` and passes them down.
"""

import os.path as osp

from datasets.combined_imdb import combined_imdb
from datasets.dataset_file import DATASETS_DIR, build_imdb, load_dataset_file, named_dataset_files
from fast_rcnn.config import cfg


class UnknownImdbError(KeyError):
    """``get_imdb`` was given a name it does not know; the message lists the known ones."""

    def __str__(self):
        return str(self.args[0])  # KeyError would show the repr of the message


def _named_splits(datasets_dir):
    """Imdb name -> (dataset file settings, split) for every dataset file in ``datasets_dir``."""
    names = {}
    for path in named_dataset_files(datasets_dir).values():
        spec = load_dataset_file(path)
        for split in spec['split_files']:
            names[f'{spec["name"]}_{split}'] = (spec, split)
    return names


def list_imdbs(datasets_dir=DATASETS_DIR):
    """Names ``get_imdb`` knows (each may be joined with ``+``): every split of every dataset file."""
    return sorted(_named_splits(datasets_dir))


def resolve_imdb_name(name, datasets_dir=DATASETS_DIR):
    """``(dataset file settings, split)`` of one imdb name: ``<dataset>_<split>`` or ``<file.yml>:<split>``.
    Raises ``UnknownImdbError`` listing the known names."""
    if ':' in name and name.rsplit(':', 1)[0].endswith(('.yml', '.yaml')):
        path, split = name.rsplit(':', 1)
        return load_dataset_file(path), split
    named = _named_splits(datasets_dir)
    if name not in named:
        raise UnknownImdbError(f'unknown imdb {name!r}; known: {", ".join(sorted(named))} (join names with '
                               f'"+" to combine them; a dataset file anywhere: path/to/file.yml:<split>)')
    return named[name]


def canonical_imdb_name(name):
    """The ``name`` of the imdb ``get_imdb(name)`` gives, without loading it: ``file.yml:<split>`` parts
    become ``<dataset>_<split>`` (what output folders and result files are named after)."""
    return '+'.join(f'{spec["name"]}_{split}' for spec, split in map(resolve_imdb_name, name.split('+')))


def get_imdb(name):
    """The imdb called ``name``; ``'a+b'`` gives a combined imdb of ``a`` and ``b``."""
    names = name.split('+')
    if len(set(names)) != len(names):
        raise ValueError(f'imdb {name!r} names a set more than once')
    resolved = [resolve_imdb_name(part) for part in names]
    imdbs = [build_imdb(spec, split, data_dir=cfg.DATA_DIR, cache_dir=osp.join(cfg.DATA_DIR, 'cache'),
                        use_difficult=cfg.TRAIN.USE_DIFFICULT) for spec, split in resolved]
    return imdbs[0] if len(imdbs) == 1 else combined_imdb(imdbs)
