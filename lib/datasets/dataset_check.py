"""Checking a dataset file's data before any training: statistics and every problem, with file and field.

``check_dataset(spec, data_dir)`` reads every annotation of every split and every image's header (JPEG and
PNG sizes come from the header; other formats are decoded) under the rules of the dataset file (see
``datasets.dataset_file``) and returns a ``CheckReport``. Problems are errors (they would stop training: an
unknown class, a box outside the image or inverted under ``bad_boxes: raise``, a ``<size>`` that disagrees
with the image, an unreadable or missing image, a malformed XML, a duplicate id, an id without annotation
when ``negatives`` is false, class names differing only in case or spaces) or warnings (boxes clipped within
``border_slack``, a missing ``<size>`` read from the image, an id in two splits, objects skipped or clipped
under ``bad_boxes: skip | clip``). ``cached_check`` keeps the result under a hash of the dataset's content,
for the training tools.
"""

import glob
import hashlib
import json
import os
import os.path as osp

import numpy as np

from datasets.dataset_file import DatasetFileError, dataset_root, resolve_rules, split_ids
from datasets.pascal_voc import (BadAnnotationError, convert_object, find_image, image_id_problem,
                                 read_annotation_xml, strip_extension)
from utils.fileio import atomic_write, write_json_atomic
from utils.image import BadImageError, stored_image_size

# Bumped whenever the checks or the report change, so cached results are recomputed.
CHECK_VERSION = 2
# Bin edges (px, square root of the box area) of the box-size histogram.
SIZE_BINS = (0, 8, 16, 32, 64, 128, 256, 512, 1024, 100000)


class CheckReport:
    """What ``check_dataset`` found: ``problems`` (list of ``{'severity': 'error' | 'warning', 'file',
    'field', 'message'}``), ``notes`` (decisions: classes inferred, coordinate base), ``classes``,
    ``splits`` (split -> ``{'images', 'without_objects', 'objects' (class -> count), 'difficult',
    'truncated'}``) and ``boxes`` (K x 2 float64 widths and heights of all objects, original pixels;
    ``box_images`` K x 2 the sizes of their images)."""

    def __init__(self, name):
        self.name = name
        self.problems, self.notes, self.classes, self.splits = [], [], (), {}
        self.boxes = np.zeros((0, 2))
        self.box_images = np.zeros((0, 2))

    def add(self, severity, file, field, message):
        self.problems.append({'severity': severity, 'file': file, 'field': field, 'message': message})

    @property
    def errors(self):
        return [p for p in self.problems if p['severity'] == 'error']

    def to_json(self):
        return {'name': self.name, 'problems': self.problems, 'notes': self.notes,
                'classes': list(self.classes), 'splits': self.splits}


def read_split_file(path, exts, report):
    """Ids of split file ``path`` (extensions of ``exts`` and ``.xml`` dropped); every unusable or
    repeated id is reported (file:line) and left out."""
    ids, seen = [], {}
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            index = strip_extension(line.strip(), tuple(exts) + ('.xml',))
            if not index:
                continue
            problem = image_id_problem(index)
            if problem is None and index in seen:
                problem = f'repeats line {seen[index]} (duplicate id)'
            if problem:
                report.add('error', f'{path}:{lineno}', 'id', f'image id {index!r} {problem}')
                continue
            seen[index] = lineno
            ids.append(index)
    if not ids:
        report.add('error', path, 'id', 'the split lists no image ids')
    return ids


def _check_image(root, index, spec, xml_path, report):
    """``(path, (width, height))`` of the image of ``index`` read from its header; None when missing or
    unreadable (reported)."""
    present = [p for p in (osp.join(root, 'JPEGImages', f'{index}{ext}') for ext in spec['image_ext'])
               if osp.isfile(p)]
    # find_image would take the first of these too; it is asked only for the <filename> fallback
    path = present[0] if present else find_image(root, index, spec['image_ext'], xml_path if xml_path else '')
    if path is None:
        report.add('error', osp.join(root, 'JPEGImages', f'{index}{spec["image_ext"][0]}'), 'image',
                   f'no image for id {index!r} (tried {", ".join(spec["image_ext"])} and the XML\'s '
                   '<filename>)')
        return None
    files = {(st.st_dev, st.st_ino) for st in map(os.stat, present)}
    if len(files) > 1:
        # a case-insensitive file system finds one file under several spellings: that is not two images
        report.add('warning', path, 'image', f'id {index!r} has {len(present)} image files '
                   f'({", ".join(osp.basename(p) for p in present)}); {osp.basename(path)} is used '
                   '(the first of image_ext)')
    elif not present:
        report.add('warning', path, 'image', f'no image named after id {index!r}: found through the XML\'s '
                   '<filename>')
    try:
        return path, stored_image_size(path)
    except (BadImageError, OSError) as exc:
        report.add('error', path, 'image', f'unreadable image ({exc})')
        return None


def _check_objects(raw, xml_path, size, spec, class_to_ind, base, stats, report):
    """Check every object of one parsed XML; count them into ``stats``; returns K x 2 box sizes."""
    sizes = []
    bad = 'error' if spec['bad_boxes'] == 'raise' else 'warning'
    for k, obj in enumerate(raw['objects']):
        converted = convert_object(obj, size[0], size[1], class_to_ind, base, spec['border_slack'])
        field = f'object {k} ({obj["name"]!r})'
        if converted['problem']:
            report.add(bad, xml_path, field, converted['problem'])
            continue
        if converted['clipped']:
            report.add('warning', xml_path, field, f'box passes the border by at most '
                       f'{spec["border_slack"]:g} px; clipped')
        x1, y1, x2, y2 = converted['box']
        sizes.append((x2 - x1 + 1, y2 - y1 + 1))
        name = obj['name']
        stats['objects'][name] = stats['objects'].get(name, 0) + 1
        stats['difficult'] += obj['difficult']
        stats['truncated'] += obj['truncated']
    return sizes


def _check_split(root, split, ids, spec, class_to_ind, base, report):
    """Statistics of one split; problems go to ``report``. Returns ``(stats, box sizes, image sizes)``."""
    stats = {'images': len(ids), 'without_objects': 0, 'negatives': 0,
             'objects': {c: 0 for c in class_to_ind}, 'difficult': 0, 'truncated': 0}
    xml_paths = {i: osp.join(root, 'Annotations', f'{i}.xml') for i in ids}
    if ids and not any(osp.isfile(p) for p in xml_paths.values()):
        report.notes.append(f'split {split}: no annotations at all (a test set evaluated elsewhere); '
                            'images checked only')
        for index in ids:
            _check_image(root, index, spec, None, report)
        return stats, [], []
    boxes, images = [], []
    for index in ids:
        xml_path = xml_paths[index]
        if not osp.isfile(xml_path):
            if spec['negatives']:
                stats['negatives'] += 1
                stats['without_objects'] += 1
                _check_image(root, index, spec, None, report)
            else:
                report.add('error', xml_path, 'annotation', f'id {index!r} of split {split} has no '
                           'annotation (set negatives: true if images without objects are meant)')
            continue
        try:
            raw = read_annotation_xml(xml_path)
        except BadAnnotationError as exc:
            report.add('error', xml_path, 'xml', str(exc).replace(f'{xml_path}: ', '', 1))
            continue
        image = _check_image(root, index, spec, xml_path, report)
        if image is None:
            continue
        image_path, stored = image
        if raw['size'] is None:
            report.add('warning', xml_path, '<size>',
                       f'missing; read from the image: {stored[0]} x {stored[1]}')
        elif raw['size'] != stored:
            report.add('error', xml_path, '<size>', f'says {raw["size"][0]} x {raw["size"][1]} but the image '
                       f'{image_path} is {stored[0]} x {stored[1]}')
            continue
        sizes = _check_objects(raw, xml_path, stored, spec, class_to_ind, base, stats, report)
        stats['without_objects'] += not sizes
        boxes += sizes
        images += [stored] * len(sizes)
    return stats, boxes, images


def check_dataset(spec, data_dir, splits=None):
    """Check the ``splits`` (default: all) of dataset file ``spec`` (``load_dataset_file``) under
    ``data_dir`` (cfg.DATA_DIR); returns a ``CheckReport``."""
    report = CheckReport(spec['name'])
    if spec['format'] not in CHECKERS:
        # a format whose loader registered no checks still trains (its loader validates what it reads)
        report.add('warning', spec['path'], 'format', f'no checks for format {spec["format"]!r} (checks '
                   f'exist for: {", ".join(sorted(CHECKERS))}; register one in '
                   'datasets.dataset_check.CHECKERS)')
        return report
    return CHECKERS[spec['format']](spec, data_dir, report, list(splits or spec['split_files']))


def check_voc(spec, data_dir, report, splits):
    """``check_dataset`` of a ``format: voc`` dataset file."""
    root = dataset_root(spec, data_dir)
    if not osp.isdir(root):
        report.add('error', spec['path'], 'root', f'dataset folder not found: {root}')
        return report
    try:
        classes, base = resolve_rules(spec, root, report.notes.append)
    except DatasetFileError as exc:
        report.add('error', spec['path'], 'classes', str(exc))
        return report
    report.classes = classes
    class_to_ind = {c: i for i, c in enumerate(classes, 1)}
    splits = {s: ids for s, ids in _split_lists(spec, root, report, splits).items() if s in splits}
    seen = {}
    boxes, images = [], []
    for split, ids in splits.items():
        for index in ids:
            if index in seen:
                report.add('warning', spec['path'], 'splits', f'id {index!r} is in split {seen[index]} and '
                           f'split {split}')
            seen.setdefault(index, split)
        stats, split_boxes, split_images = _check_split(root, split, ids, spec, class_to_ind, base, report)
        report.splits[split] = stats
        boxes += split_boxes
        images += split_images
    report.boxes = np.array(boxes, dtype=np.float64).reshape(-1, 2)
    report.box_images = np.array(images, dtype=np.float64).reshape(-1, 2)
    return report


def _split_lists(spec, root, report, splits):
    """Split -> ids (after ``max_images``) from the split files of ``splits`` or the split rule."""
    if spec['split'] is not None:
        lists = split_ids(spec, root)
        report.notes.append('split rule: ' + ', '.join(f'{s} {len(v)}' for s, v in lists.items()))
    else:
        lists = {}
        for split in splits:
            path = osp.join(root, spec['split_files'][split])
            if not osp.isfile(path):
                report.add('error', path, 'splits', f'split file of {split} not found')
                lists[split] = []
                continue
            lists[split] = read_split_file(path, spec['image_ext'], report)
    return {s: ids[:spec['max_images'].get(s)] for s, ids in lists.items()}


# format -> checks(spec, data_dir, report, splits) filling ``report``; another loader adds its own.
CHECKERS = {'voc': check_voc}


def scaled_box_sides(report, input_size):
    """Square roots of the box areas (K float64) once the image is scaled as for training (``input_size``
    = (shorter side, max size), cfg.TRAIN.SCALES[0] and cfg.TRAIN.MAX_SIZE)."""
    if report.boxes.shape[0] == 0:
        return np.zeros(0)
    short = report.box_images.min(axis=1)
    long = report.box_images.max(axis=1)
    scale = np.minimum(input_size[0] / short, input_size[1] / long)
    return np.sqrt(report.boxes[:, 0] * report.boxes[:, 1]) * scale


def format_report(report, spec, smallest_anchor, input_size, histogram_path=None):
    """The text ``tools/check_dataset.py`` prints (and the training tools on failure)."""
    lines = [f'dataset {spec["name"]} ({spec["path"]}): format {spec["format"]}, root {spec["root"]}, '
             f'metric {spec["metric"]}']
    lines += [f'note: {n}' for n in report.notes]
    if report.splits:
        lines.append(f'{"split":<10} {"images":>7} {"no objects":>10} {"objects":>8} {"difficult":>9} '
                     f'{"truncated":>9}')
        for split, s in report.splits.items():
            lines.append(f'{split:<10} {s["images"]:>7} {s["without_objects"]:>10} '
                         f'{sum(s["objects"].values()):>8} {s["difficult"]:>9} {s["truncated"]:>9}')
        width = max(len(c) for c in report.classes)
        lines.append('objects per class:')
        lines.append(f'  {"class":<{width}} ' + '  '.join(f'{s:>8}' for s in report.splits))
        for cls in report.classes:
            lines.append(f'  {cls:<{width}} ' + '  '.join(f'{report.splits[s]["objects"].get(cls, 0):>8}'
                                                          for s in report.splits))
    if report.boxes.shape[0]:
        lines += _box_lines(report, smallest_anchor, input_size, histogram_path)
    errors = report.errors
    lines.append(f'problems: {len(errors)} errors, {len(report.problems) - len(errors)} warnings')
    lines += [f'  {p["severity"]}: {p["file"]}: {p["field"]}: {p["message"]}' for p in report.problems]
    lines.append('FAILED: fix the errors above before training' if errors
                 else 'OK: nothing would stop training')
    return '\n'.join(lines)


def _box_lines(report, smallest_anchor, input_size, histogram_path):
    """Box-size and aspect-ratio lines (and the histogram PNG when ``histogram_path`` is given)."""
    sides = np.sqrt(report.boxes[:, 0] * report.boxes[:, 1])
    scaled = scaled_box_sides(report, input_size)
    ratios = report.boxes[:, 0] / report.boxes[:, 1]
    below = float((scaled < smallest_anchor).mean())
    q = np.percentile
    lines = [f'box size (sqrt of area, px): min {sides.min():.0f}, median {np.median(sides):.0f}, max '
             f'{sides.max():.0f}; {100 * below:.1f}% below the smallest anchor ({smallest_anchor:.0f} px at '
             f'the training scale {input_size[0]}/{input_size[1]})',
             f'aspect ratio (w/h): min {ratios.min():.2f}, 5% {q(ratios, 5):.2f}, median '
             f'{np.median(ratios):.2f}, 95% {q(ratios, 95):.2f}, max {ratios.max():.2f}']
    counts, _ = np.histogram(sides, bins=SIZE_BINS)
    lines.append('box size histogram (px): ' + ', '.join(
        f'{lo}-{hi}: {n}' for lo, hi, n in zip(SIZE_BINS[:-2], SIZE_BINS[1:-1], counts[:-1]))
        + f', {SIZE_BINS[-2]}+: {counts[-1]}')
    if histogram_path:
        write_histogram(histogram_path, sides, scaled, smallest_anchor)
        lines.append(f'histogram: {histogram_path}')
    return lines


def write_histogram(path, sides, scaled, smallest_anchor):
    """A PNG of the box-size distribution, original and training-scale pixels, with the smallest anchor."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.geomspace(1, max(sides.max(), scaled.max(), smallest_anchor) * 1.1, 40)
    ax.hist(sides, bins=bins, alpha=0.6, label='original image')
    ax.hist(scaled, bins=bins, alpha=0.6, label='training scale')
    ax.axvline(smallest_anchor, color='k', linestyle='--', label=f'smallest anchor ({smallest_anchor:g} px)')
    ax.set_xscale('log')
    ax.set_xlabel('box size: sqrt(width x height), px')
    ax.set_ylabel('objects')
    ax.legend()
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with atomic_write(path) as f:
        fig.savefig(f, dpi=100, format='png')
    plt.close(fig)


def content_key(spec, data_dir, splits=None):
    """SHA-256 over the check version, the splits checked, the dataset file, every annotation and split
    file's bytes and every image's name, size and modification time (image bytes are not read)."""
    root = dataset_root(spec, data_dir)
    digest = hashlib.sha256(json.dumps([CHECK_VERSION, root, sorted(splits or spec['split_files'])]).encode())
    with open(spec['path'], 'rb') as f:
        digest.update(f.read())
    for sub in ('Annotations', 'ImageSets'):
        for path in sorted(glob.glob(osp.join(glob.escape(root), sub, '**', '*'), recursive=True)):
            if osp.isfile(path):
                with open(path, 'rb') as f:
                    digest.update(path.encode() + b'\0' + f.read() + b'\0')
    for path in sorted(glob.glob(osp.join(glob.escape(root), 'JPEGImages', '*'))):
        st = os.stat(path)
        digest.update(f'{path}\0{st.st_size}\0{st.st_mtime_ns}\0'.encode())
    return digest.hexdigest()


def cached_check(spec, data_dir, cache_dir, splits=None):
    """``(errors, from_cache)``: the error problems of ``check_dataset`` of ``splits``, kept in
    ``<cache_dir>/dataset_checks/<name>_<key>.json`` so an unchanged dataset is checked once."""
    key = content_key(spec, data_dir, splits)
    path = osp.join(cache_dir, 'dataset_checks', f'{spec["name"]}_{key[:16]}.json')
    try:
        with open(path, encoding='utf-8') as f:
            cached = json.load(f)
        if cached.get('key') == key and isinstance(cached.get('errors'), list):
            return cached['errors'], True
    except (OSError, ValueError):
        pass  # absent or unreadable: check again
    report = check_dataset(spec, data_dir, splits)
    os.makedirs(osp.dirname(path), exist_ok=True)
    write_json_atomic(path, {'key': key, 'errors': report.errors, 'report': report.to_json()})
    return report.errors, False
