"""Datasets described by a file instead of code: ``data/datasets/<name>.yml`` or any YAML path.

A dataset file names a folder in the VOC layout (``Annotations/<id>.xml``, ``JPEGImages/<id>.<ext>``, optional
``ImageSets/Main/<split>.txt``) and the rules of the tool that exported it. Keys (only ``root`` is required):

    root: mydata              # the folder; relative paths are relative to cfg.DATA_DIR
    format: voc               # a key of FORMATS (other loaders register theirs)
    classes: [apple, pear]    # default: the sorted names found in the annotations (printed, and appended
                              #   to the file as a commented suggestion); a string names another dataset
                              #   file whose classes are used
    metric: voc07             # voc07 (11-point AP) | area (VOC2010+ AP)
    splits: [trainval, test]  # ImageSets/Main/<split>.txt; or a mapping split -> file relative to root
                              #   (format coco: split -> its COCO JSON, relative to root)
    images: {train: images/train}   # format coco only: split -> image folder relative to root
    split: {test: 0.2, seed: 1}   # instead of split files: fractions of the ids by a hash (rest: trainval)
    image_ext: [.jpg, .JPG, .jpeg, .png]   # tried in order (then the XML's <filename>)
    coordinates: 1-based      # 1-based (the devkit) | 0-based | auto (decided once per dataset, printed)
    negatives: false          # true: images without an XML are images without objects
    bad_boxes: raise          # raise | clip | skip (see pascal_voc.parse_annotation)
    border_slack: 1           # pixels a box may pass the border by; such boxes are clipped and counted
    max_images: {trainval: 40}   # keep only the first ids of a split
    voc_year: 2007            # a PASCAL VOC release: its released Selective Search boxes, server layout
    missing_hint: text        # what to tell the user when the folder is missing

An imdb of a dataset file is named ``<name>_<split>`` (``name``: the file's stem). With ``format: coco``
the classes are the JSON's categories (no ``classes`` key) and only ``root``, ``splits``, ``images`` and
``missing_hint`` apply.
"""

import glob
import hashlib
import os.path as osp
import re
import xml.etree.ElementTree as ET

import yaml

from utils.fileio import write_text_atomic

# The named dataset files (the built-in sets and the user's): <repo>/data/datasets/<name>.yml.
DATASETS_DIR = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', 'data', 'datasets'))

METRICS = {'voc07': True, 'area': False}  # metric -> use_07_metric
# Coordinate conventions of annotation files: the VOC devkit writes 1-based pixel indices, some exporters
# 0-based ones; the value is what is subtracted to get our 0-based boxes. 'auto' decides per dataset.
COORDINATE_BASES = {'1-based': 1.0, '0-based': 0.0}
COORDINATES = tuple(COORDINATE_BASES) + ('auto',)
# What the loader does with a bad object (see pascal_voc.parse_annotation).
BAD_BOX_POLICIES = ('raise', 'clip', 'skip')
DEFAULT_SPLITS = ('trainval', 'test')
# The split that takes the ids the fractions of a split rule leave.
REST_SPLIT = 'trainval'
DEFAULTS = {'format': 'voc', 'classes': None, 'metric': 'voc07', 'splits': list(DEFAULT_SPLITS),
            'split': None, 'image_ext': ['.jpg'], 'coordinates': '1-based', 'negatives': False,
            'bad_boxes': 'raise', 'border_slack': 1, 'max_images': {}, 'voc_year': None,
            'missing_hint': None, 'images': None}
KEYS = ('root',) + tuple(DEFAULTS)
_SPLIT_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9-]*$')
_SUGGESTION_MARK = '# classes found in the annotations'


class DatasetFileError(ValueError):
    """A dataset file is unreadable or holds an invalid value; the message names the file and the key."""


def load_dataset_file(path):
    """The validated settings of dataset file ``path``: a dict with every key of ``KEYS`` (defaults filled
    in), plus ``name`` (the file's stem), ``path`` and ``split_files`` (split -> path relative to root, or
    None under a split rule). Raises ``DatasetFileError`` naming the file and key."""
    try:
        with open(path, encoding='utf-8') as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise DatasetFileError(f'dataset file {path}: {exc.strerror or exc}') from None
    except yaml.YAMLError as exc:
        raise DatasetFileError(f'dataset file {path}: invalid YAML ({" ".join(str(exc).split())})') from None
    if not isinstance(data, dict):
        raise DatasetFileError(f'dataset file {path}: expected a mapping of keys ({", ".join(KEYS)})')
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise DatasetFileError(f'dataset file {path}: unknown key {unknown[0]!r}; known: {", ".join(KEYS)}')
    if not isinstance(data.get('root'), str) or not data['root'].strip():
        raise DatasetFileError(f'dataset file {path}: key root: the dataset folder is required (a path)')
    if 'split' in data and 'splits' in data:
        _fail(path, 'split', 'give split files (splits) or a split rule (split), not both')
    spec = dict(DEFAULTS, **data, name=osp.splitext(osp.basename(path))[0], path=osp.abspath(path))
    _check_values(spec, path)
    return spec


def _fail(path, key, message):
    raise DatasetFileError(f'dataset file {path}: key {key}: {message}')


def _check_values(spec, path):
    """Validate every key of ``spec`` in place (normalising lists); see ``load_dataset_file``."""
    classes = spec['classes']
    if isinstance(classes, str):
        other = osp.join(osp.dirname(spec['path']), f'{classes}.yml')
        if not osp.isfile(other):
            _fail(path, 'classes', f'names dataset file {other}, which does not exist')
        classes = load_dataset_file(other)['classes']
        if classes is None:
            _fail(path, 'classes', f'dataset file {other} lists no classes')
        classes = list(classes)
    if classes is not None:
        if (not isinstance(classes, list) or not classes
                or not all(isinstance(c, str) and c for c in classes)):
            _fail(path, 'classes', 'expected a list of class names')
        if len(set(classes)) != len(classes) or '__background__' in classes:
            _fail(path, 'classes', 'names must be unique and not __background__ (it is added)')
        classes = tuple(classes)
    spec['classes'] = classes
    for key, allowed in (('metric', METRICS), ('coordinates', COORDINATES), ('bad_boxes', BAD_BOX_POLICIES)):
        if spec[key] not in allowed:
            _fail(path, key, f'{spec[key]!r} is not one of {", ".join(allowed)}')
    exts = spec['image_ext']
    exts = [exts] if isinstance(exts, str) else exts
    if not isinstance(exts, list) or not exts or not all(isinstance(e, str) and e.startswith('.')
                                                         for e in exts):
        _fail(path, 'image_ext', 'expected an extension or a list of them, each starting with "."')
    spec['image_ext'] = tuple(exts)
    if not isinstance(spec['negatives'], bool):
        _fail(path, 'negatives', 'expected true or false')
    if isinstance(spec['border_slack'], bool) or not isinstance(spec['border_slack'], (int, float)) \
            or not 0 <= spec['border_slack'] <= 2:
        _fail(path, 'border_slack', 'expected a number of pixels from 0 to 2')
    spec['split_files'] = _split_files(spec, path)
    max_images = spec['max_images']
    if not isinstance(max_images, dict) or not all(
            k in spec['split_files'] and isinstance(v, int) and v > 0 for k, v in max_images.items()):
        _fail(path, 'max_images',
              f'expected split: positive count, splits being {", ".join(spec["split_files"])}')
    if spec['voc_year'] is not None:
        spec['voc_year'] = str(spec['voc_year'])
    if spec['missing_hint'] is not None and not isinstance(spec['missing_hint'], str):
        _fail(path, 'missing_hint', 'expected a text')
    _check_coco(spec, path)


def _check_coco(spec, path):
    """``format: coco``: split -> JSON files, an image folder for every split, the classes from the JSON."""
    images = spec['images']
    if spec['format'] != 'coco':
        if images is not None:
            _fail(path, 'images', 'only a format coco dataset names image folders')
        return
    if spec['classes'] is not None:
        _fail(path, 'classes', 'a format coco dataset takes its classes from the JSON\'s categories: '
                               'remove the key')
    if not isinstance(spec['splits'], dict):
        _fail(path, 'splits', 'format coco: expected a mapping split -> COCO JSON (relative to root)')
    if not isinstance(images, dict) or set(images) != set(spec['split_files']) or not all(
            isinstance(v, str) for v in images.values()):
        _fail(path, 'images', f'format coco: expected a mapping split -> image folder (relative to root) '
                              f'for the splits {", ".join(spec["split_files"])}')


def _split_files(spec, path):
    """Split -> file relative to root (None for the splits of a split rule), from ``splits`` / ``split``."""
    rule = spec['split']
    if rule is not None:
        if not isinstance(rule, dict) or not isinstance(rule.get('seed', 0), int):
            _fail(path, 'split', 'expected {<split>: fraction, ..., seed: integer}')
        fractions = {k: v for k, v in rule.items() if k != 'seed'}
        if not fractions or REST_SPLIT in fractions or not all(
                _SPLIT_NAME.match(str(k)) and isinstance(v, (int, float)) and not isinstance(v, bool)
                and 0 < v < 1 for k, v in fractions.items()) or sum(fractions.values()) >= 1:
            _fail(path, 'split', f'fractions must lie in (0, 1) and sum below 1 (the rest is {REST_SPLIT})')
        return {REST_SPLIT: None, **{str(k): None for k in fractions}}
    splits = spec['splits']
    if isinstance(splits, list):
        splits = {s: osp.join('ImageSets', 'Main', f'{s}.txt') for s in splits}
    if not isinstance(splits, dict) or not splits or not all(
            isinstance(k, str) and _SPLIT_NAME.match(k) and isinstance(v, str) for k, v in splits.items()):
        _fail(path, 'splits', 'expected a list of split names or a mapping split -> file (relative to root); '
                              'names are letters, digits and "-"')
    return splits


def dataset_root(spec, data_dir):
    """The dataset folder: ``root`` as written when absolute, else under ``data_dir`` (cfg.DATA_DIR)."""
    return osp.join(data_dir, osp.expanduser(spec['root']))


def annotation_ids(root):
    """Sorted ids (file stems) of ``<root>/Annotations/*.xml``."""
    return sorted(osp.splitext(osp.basename(p))[0] for p in glob.glob(osp.join(glob.escape(root),
                                                                                 'Annotations', '*.xml')))


def negative_ids(root, exts):
    """Sorted ids of images in ``<root>/JPEGImages`` with one of ``exts`` that have no XML of their own and
    are not the ``<filename>`` of any XML."""
    named = set()
    for index in annotation_ids(root):
        try:
            filename = ET.parse(osp.join(root, 'Annotations', f'{index}.xml')).getroot().findtext('filename')
        except ET.ParseError:
            continue
        named.add(osp.basename((filename or '').strip()))
    annotated = set(annotation_ids(root))
    ids = set()
    for path in glob.glob(osp.join(glob.escape(root), 'JPEGImages', '*')):
        stem, ext = osp.splitext(osp.basename(path))
        if ext in exts and stem not in annotated and osp.basename(path) not in named:
            ids.add(stem)
    return sorted(ids)


def rule_split(ids, fractions, seed):
    """Deterministic split of ``ids``: ids ordered by SHA-256 of ``'<seed>:<id>'``; the first
    ``round(f * N)`` go to the first split of ``fractions`` (split -> f), the next to the second, ...; the
    rest to ``REST_SPLIT``. Returns split -> sorted ids. An id keeps its split when others are added unless
    the counts shift it over a boundary; it never depends on the numpy version."""
    order = sorted(ids, key=lambda i: hashlib.sha256(f'{seed}:{i}'.encode()).hexdigest())
    taken, start = {}, 0
    for split, fraction in fractions.items():
        count = int(round(fraction * len(order)))
        taken[split] = sorted(order[start:start + count])
        start += count
    return {REST_SPLIT: sorted(order[start:]), **taken}


def split_ids(spec, root):
    """Split -> ids under the split rule of ``spec`` (annotated images, plus negatives when allowed)."""
    ids = annotation_ids(root)
    if spec['negatives']:
        ids = sorted(set(ids) | set(negative_ids(root, spec['image_ext'])))
    rule = spec['split']
    return rule_split(ids, {k: v for k, v in rule.items() if k != 'seed'}, rule.get('seed', 0))


def found_class_names(paths):
    """Sorted ``<name>`` texts (exactly as written) of the annotation files ``paths``; raises
    ``DatasetFileError`` when two differ only in case or surrounding spaces (never merged silently)."""
    names = {}
    for path in paths:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as err:
            raise DatasetFileError(f'{path}: not valid XML ({err})') from None
        for obj in root.findall('object'):
            name = obj.findtext('name')
            if name and name.strip():
                names.setdefault(name, path)
    by_key = {}
    for name in names:
        by_key.setdefault(name.strip().casefold(), []).append(name)
    clashes = [sorted(v) for v in by_key.values() if len(v) > 1]
    if clashes:
        variants = clashes[0]
        where = ', '.join(f'{v!r} in {names[v]}' for v in variants)
        raise DatasetFileError(f'class names differ only in case or surrounding spaces: {where}; correct the '
                               'annotations to one spelling, or list the classes in the dataset file to keep '
                               'them apart')
    return sorted(names)


def suggest_classes(spec, classes):
    """Append ``classes`` to the dataset file as a commented suggestion (once; a later one replaces it) and
    return the line printed to the user."""
    block = f'{_SUGGESTION_MARK} (uncomment to fix their order):\n# classes: [{", ".join(classes)}]\n'
    with open(spec['path'], encoding='utf-8') as f:
        text = f.read()
    kept = text.split(_SUGGESTION_MARK)[0]
    if not kept.endswith('\n'):
        kept += '\n'
    if kept + block != text:
        write_text_atomic(spec['path'], kept + block)
    return (f'{spec["name"]}: no classes in {spec["path"]}; found {len(classes)} in the annotations: '
            f'{", ".join(classes)} (suggestion appended to the file)')


def decide_coordinates(paths):
    """``('0-based' | '1-based', reason)`` for annotation files ``paths``: 0-based when some box has xmin or
    ymin below 1 (a 1-based file never does), else 1-based."""
    low, total, first = 0, 0, None
    for path in paths:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError:
            continue  # reported by the loader and the checker
        for obj in root.findall('object'):
            total += 1
            try:
                values = [float(obj.findtext(f'bndbox/{tag}')) for tag in ('xmin', 'ymin')]
            except (TypeError, ValueError):
                continue
            if min(values) < 1:
                low += 1
                first = first or path
    if low:
        return '0-based', f'{low} of {total} boxes have xmin or ymin below 1 (first: {first})'
    return '1-based', f'none of {total} boxes has xmin or ymin below 1'


def resolve_rules(spec, root, report=print):
    """``(classes, base)`` of a dataset: its classes (inferred from the annotations when not given) and the
    coordinate base (decided when ``coordinates: auto``); decisions are passed to ``report``."""
    classes = spec['classes']
    xml_paths = None
    if classes is None or spec['coordinates'] == 'auto':
        xml_paths = [osp.join(root, 'Annotations', f'{i}.xml') for i in annotation_ids(root)]
    if classes is None:
        classes = tuple(found_class_names(xml_paths))
        if not classes:
            raise DatasetFileError(f'{spec["path"]}: no classes given and no objects in {root}/Annotations')
        report(suggest_classes(spec, classes))
    coordinates = spec['coordinates']
    if coordinates == 'auto':
        coordinates, reason = decide_coordinates(xml_paths)
        report(f'{spec["name"]}: coordinates auto: {coordinates} ({reason})')
    return classes, COORDINATE_BASES[coordinates]


def missing_hint(spec):
    """What to tell the user when the files of dataset file ``spec`` are missing."""
    return spec['missing_hint'] or f'Put the dataset there or correct root in {spec["path"]}.'


def build_voc(spec, split, *, data_dir, cache_dir, use_difficult, report=print):
    """The ``pascal_voc`` imdb ``<name>_<split>`` of a ``format: voc`` dataset file."""
    from datasets.pascal_voc import DatasetNotFoundError, pascal_voc
    root = dataset_root(spec, data_dir)
    scans_folder = spec['classes'] is None or spec['coordinates'] == 'auto' or spec['split'] is not None
    if scans_folder and not osp.isdir(root):  # else pascal_voc names the missing split file
        raise DatasetNotFoundError(f'{spec["name"]}_{split}: dataset folder not found: {root}\n'
                                   f'{missing_hint(spec)}')
    classes, base = resolve_rules(spec, root, report)
    ids = split_ids(spec, root)[split] if spec['split'] is not None else None
    year = spec['voc_year']
    return pascal_voc(split, year, devkit_path=osp.dirname(root), classes=('__background__',) + classes,
                      dataset_dir=osp.basename(root), name=f'{spec["name"]}_{split}',
                      max_images=spec['max_images'].get(split), use_07_metric=METRICS[spec['metric']],
                      on_bad_box=spec['bad_boxes'], missing_hint=spec['missing_hint'], image_ids=ids,
                      image_set_file=None if ids is not None else osp.join(root, spec['split_files'][split]),
                      image_exts=spec['image_ext'], base=base, border_slack=spec['border_slack'],
                      negatives=spec['negatives'], split_file_exts=spec['image_ext'] + ('.xml',),
                      use_difficult=use_difficult, cache_dir=cache_dir, data_dir=data_dir)


def build_coco(spec, split, *, data_dir, cache_dir, use_difficult):
    """The ``datasets.coco`` imdb ``<name>_<split>`` of a ``format: coco`` dataset file (the JSON's crowd
    regions, not ``use_difficult``, decide what training ignores)."""
    from datasets.coco import coco_from_files
    root = dataset_root(spec, data_dir)
    return coco_from_files(f'{spec["name"]}_{split}', osp.join(root, spec['split_files'][split]),
                           osp.join(root, spec['images'][split]), missing_hint=missing_hint(spec))


# format -> builder(spec, split, *, data_dir, cache_dir, use_difficult) returning an imdb.
FORMATS = {'voc': build_voc, 'coco': build_coco}


def build_imdb(spec, split, *, data_dir, cache_dir, use_difficult):
    """The imdb of ``split`` of dataset file ``spec`` through its format's builder."""
    if split not in spec['split_files']:
        raise DatasetFileError(f'dataset file {spec["path"]}: no split {split!r}; its splits: '
                               f'{", ".join(spec["split_files"])}')
    builder = FORMATS.get(spec['format'])
    if builder is None:
        raise DatasetFileError(f'dataset file {spec["path"]}: key format: unknown format {spec["format"]!r}; '
                               f'known: {", ".join(sorted(FORMATS))}')
    return builder(spec, split, data_dir=data_dir, cache_dir=cache_dir, use_difficult=use_difficult)


def named_dataset_files(datasets_dir=DATASETS_DIR):
    """Name -> path of the dataset files ``<datasets_dir>/<name>.yml``."""
    return {osp.splitext(osp.basename(p))[0]: p for p in sorted(glob.glob(osp.join(datasets_dir, '*.yml')))}
