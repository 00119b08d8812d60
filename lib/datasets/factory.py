"""Imdbs by name: ``get_imdb('voc_2007_trainval')``; ``'a+b'`` combines sets (VOC 07+12)."""

import functools

from datasets import coco
from datasets.combined_imdb import combined_imdb
from datasets.pascal_voc import pascal_voc
from datasets.synth import SYNTH_IMAGE_SETS, synth

_SETS = {}
for _split in ('trainval', 'train', 'val', 'test'):
    _SETS[f'voc_2007_{_split}'] = functools.partial(pascal_voc, _split, '2007')
# voc_2012_test has images only (VOCtest 2012 archive): detections are evaluated by the server.
for _split in ('trainval', 'train', 'val', 'test'):
    _SETS[f'voc_2012_{_split}'] = functools.partial(pascal_voc, _split, '2012')
for _split in SYNTH_IMAGE_SETS:
    _SETS[f'synth_{_split}'] = functools.partial(synth, _split)
    _SETS[f'synth_mini_{_split}'] = functools.partial(synth, _split, mini=True)
# MS COCO as released (coco_2014_*, coco_2015_*) and the COCO view of the embedded set (synth_coco_*).
_SETS.update(coco.imdb_factories())


class UnknownImdbError(KeyError):
    """``get_imdb`` was given a name it does not know; the message lists the known ones."""

    def __str__(self):
        return str(self.args[0])  # KeyError would show the repr of the message


def list_imdbs():
    """Names ``get_imdb`` knows (each may be joined with ``+``)."""
    return sorted(_SETS)


def get_imdb(name):
    """The imdb called ``name``; ``'a+b'`` gives a combined imdb of ``a`` and ``b``."""
    names = name.split('+')
    if len(set(names)) != len(names):
        raise ValueError(f'imdb {name!r} names a set more than once')
    for part in names:
        if part not in _SETS:
            raise UnknownImdbError(f'unknown imdb {part!r}; known: {", ".join(list_imdbs())} '
                           '(join names with "+" to combine them)')
    if len(names) == 1:
        return _SETS[name]()
    return combined_imdb([_SETS[part]() for part in names])
