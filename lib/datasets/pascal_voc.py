"""PASCAL VOC-format image databases (also serves custom datasets in the VOC layout).

Layout: ``<devkit_path>/<dataset_dir>/{JPEGImages/<id>.jpg, Annotations/<id>.xml, ImageSets/Main/<set>.txt}``
with ``devkit_path = <data_dir>/VOCdevkit<year>`` and ``dataset_dir = VOC<year>`` by default. Dataset files
(``datasets.dataset_file``) build these loaders with the rules of other exporters (image extensions,
0-based coordinates, border slack, negatives); the defaults are the devkit's.

Annotation XMLs use 1-based inclusive pixel coordinates; roidb boxes are 0-based (x - 1). Every object is
validated when read (see ``parse_annotation``). Parsed annotations are cached in
``<cache_dir>/<name>_gt_annotations.npz`` under a key hashing the content of every annotation file,
the class list and the bad-box policy (and the other rules when they are not the devkit's), so an edited
annotation rebuilds the cache; a corrupt cache is rebuilt with a warning.

Image ids (one per line of the ImageSets file) must be plain file names (no path separator, not ``.`` or
``..``, no whitespace or control characters) and unique; the set must not be empty. When annotations are
loaded, every image's stored size (read from its header) must equal its annotation's ``<size>``.
"""

import hashlib
import json
import os
import os.path as osp
import tarfile
import warnings
import xml.etree.ElementTree as ET
import zipfile

import numpy as np

from datasets.dataset_file import BAD_BOX_POLICIES, load_dataset_file, named_dataset_files
from datasets.imdb import imdb
from datasets.voc_eval import voc_eval
from fast_rcnn.config import cfg
from utils.fileio import atomic_write, write_json_atomic, write_text_atomic
from utils.image import BadImageError, stored_image_size

# The 20 VOC classes (data/datasets/voc_2007.yml is their one source).
VOC_CLASSES = ('__background__',) + load_dataset_file(named_dataset_files()['voc_2007'])['classes']

# The archives that hold each VOC year (all extract into a common VOCdevkit/ directory).
VOC_ARCHIVES = {
    '2007': ('VOCtrainval_06-Nov-2007.tar', 'VOCtest_06-Nov-2007.tar', 'VOCdevkit_08-Jun-2007.tar'),
    # the test images (voc_2012_test) come from the evaluation server after registration
    '2012': ('VOCtrainval_11-May-2012.tar', 'VOC2012test.tar'),
}

# IoU threshold of the VOC detection challenge.
VOC_IOU_THRESH = 0.5

# Bumped whenever the annotation cache layout changes, so old caches are rebuilt.
_CACHE_VERSION = 2


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where the loader looks; the message says what to download and where."""


class BadAnnotationError(ValueError):
    """An annotation file is malformed or holds an invalid object; the message names file, object, values."""


class BadImageSetError(ValueError):
    """An ImageSets file is empty or lists an unusable or repeated id; the message names file and line."""


def image_id_problem(index):
    """Why ``index`` is not a plain image id (a string), or None when it is one."""
    if index in ('.', '..'):
        return 'is a relative directory name'
    if '/' in index or '\\' in index or (os.sep in index) or (os.altsep and os.altsep in index):
        return 'contains a path separator (ids are file names, not paths)'
    if any(c.isspace() for c in index):
        return 'contains whitespace (a class file "<id> <label>" given as the image set?)'
    if not index.isprintable():
        return 'contains control characters'
    return None


def read_image_set(path, strip_exts=()):
    """The image ids listed in ImageSets file ``path`` (blank lines skipped); ``BadImageSetError`` naming
    the file and line for an id that is not a plain name or repeats one, and for an empty set.
    ``strip_exts``: file extensions (e.g. ``('.jpg', '.xml')``, matched regardless of case) dropped from
    the end of an id, for split files that list file names instead of ids."""
    ids, seen = [], {}
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            index = strip_extension(line.strip(), strip_exts)
            if not index:
                continue
            problem = image_id_problem(index)
            if problem:
                raise BadImageSetError(f'{path}:{lineno}: image id {index!r} {problem}')
            if index in seen:
                raise BadImageSetError(f'{path}:{lineno}: image id {index!r} repeats line {seen[index]} '
                                       f'(each image may be listed once)')
            seen[index] = lineno
            ids.append(index)
    if not ids:
        raise BadImageSetError(f'{path}: the image set is empty (no image ids)')
    return ids


def strip_extension(name, exts):
    """``name`` without its extension when that is one of ``exts`` (compared regardless of case)."""
    stem, ext = osp.splitext(name)
    if stem and ext.lower() in {e.lower() for e in exts}:
        return stem
    return name


def voc_missing_hint(year, devkit_path):
    """How to provide VOC ``year`` at ``devkit_path`` (archive names and the symlink to make)."""
    archives = VOC_ARCHIVES.get(str(year), ())
    listed = ', '.join(archives) if archives else f'the PASCAL VOC {year} archives'
    return (f'Download {listed} from the PASCAL VOC website, extract them into one directory (they create '
            f'VOCdevkit/), then move or symlink it: ln -s /path/to/VOCdevkit {devkit_path}  '
            '(see data/README.md).')


def find_image(data_path, index, exts, annotation_path):
    """The image of id ``index`` under ``<data_path>/JPEGImages``: ``<id><ext>`` for the first of ``exts``
    that exists, else the base name of the XML's ``<filename>`` (exporters that name the XML differently)
    when that exists; None when neither does."""
    for ext in exts:
        path = osp.join(data_path, 'JPEGImages', f'{index}{ext}')
        if osp.isfile(path):
            return path
    if osp.isfile(annotation_path):
        try:
            filename = ET.parse(annotation_path).getroot().findtext('filename')
        except ET.ParseError:
            return None
        if filename and filename.strip():
            path = osp.join(data_path, 'JPEGImages', osp.basename(filename.strip()))
            if osp.isfile(path):
                return path
    return None


def devkit_xml(classes, boxes, gt_classes, difficult):
    """The objects of one image as devkit XML for ``voc_eval``: ``boxes`` M x 4 (0-based, any floats),
    written 1-based with ``%g``; ``gt_classes`` M indices into ``classes``; ``difficult`` M bool."""
    root = ET.Element('annotation')
    for box, cls, diff in zip(boxes, gt_classes, difficult):
        node = ET.SubElement(root, 'object')
        ET.SubElement(node, 'name').text = classes[int(cls)]
        ET.SubElement(node, 'difficult').text = str(int(diff))
        bndbox = ET.SubElement(node, 'bndbox')
        for tag, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), box):
            ET.SubElement(bndbox, tag).text = f'{float(value) + 1:g}'
    return ET.tostring(root, encoding='unicode') + '\n'


def annotation_xml(filename, width, height, objects, folder):
    """VOC annotation XML text for one image. ``objects``: dicts with ``name``, ``box`` (0-based
    ``[x1, y1, x2, y2]`` integers; written 1-based as the devkit expects) and ``difficult``."""
    root = ET.Element('annotation')
    ET.SubElement(root, 'folder').text = folder
    ET.SubElement(root, 'filename').text = filename
    size = ET.SubElement(root, 'size')
    for tag, value in (('width', width), ('height', height), ('depth', 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, 'segmented').text = '0'
    for obj in objects:
        node = ET.SubElement(root, 'object')
        ET.SubElement(node, 'name').text = obj['name']
        ET.SubElement(node, 'pose').text = 'Unspecified'
        ET.SubElement(node, 'truncated').text = '0'
        ET.SubElement(node, 'difficult').text = str(int(obj['difficult']))
        bndbox = ET.SubElement(node, 'bndbox')
        for tag, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), obj['box']):
            ET.SubElement(bndbox, tag).text = str(int(value) + 1)
    ET.indent(root)
    return ET.tostring(root, encoding='unicode') + '\n'


def read_annotation_xml(filename):
    """The fields of one VOC annotation XML as written, before any dataset rule is applied.

    Returns ``{'filename': <filename> text or None, 'size': (width, height) or None when ``<size>`` is absent
    or says 0 x 0 (exporters that do not know it), 'objects': [...]}``; each object is ``{'name'`` (the
    ``<name>`` text exactly as written), ``'box'`` (``(xmin, ymin, xmax, ymax)`` floats as written, in the
    file's own coordinate base), ``'difficult'``, ``'truncated'`` (bool; a missing tag reads as 0)}``;
    ``<pose>`` is not read. Malformed XML, a missing or non-numeric field, a size given only in part and a
    flag other than 0/1 raise ``BadAnnotationError`` naming the file and field.
    """
    try:
        root = ET.parse(filename).getroot()
    except FileNotFoundError as err:
        raise BadAnnotationError(f'annotation file not found: {filename}') from err
    except ET.ParseError as err:
        raise BadAnnotationError(f'{filename}: not valid XML ({err})') from err
    size = None
    if any((root.findtext(f'size/{tag}') or '').strip() for tag in ('width', 'height')):
        width = _read_number(root, 'size/width', filename, 'image size')
        height = _read_number(root, 'size/height', filename, 'image size')
        if (width, height) != (0, 0):
            if width <= 0 or height <= 0 or not width.is_integer() or not height.is_integer():
                raise BadAnnotationError(f'{filename}: image size must be positive integers, got {width} x '
                                         f'{height}')
            size = (int(width), int(height))
    objects = []
    for k, obj in enumerate(root.findall('object')):
        name = obj.findtext('name')
        if name is None or not name.strip():
            raise BadAnnotationError(f'{filename}: object {k}: missing field <name>')
        what = f'object {k} ({name!r})'
        box = tuple(_read_number(obj, f'bndbox/{tag}', filename, what)
                    for tag in ('xmin', 'ymin', 'xmax', 'ymax'))
        flags = {tag: _read_flag(obj, tag, filename, what) for tag in ('difficult', 'truncated')}
        objects.append({'name': name, 'box': box, **flags})
    filename_text = (root.findtext('filename') or '').strip() or None
    return {'filename': filename_text, 'size': size, 'objects': objects}


def _read_flag(obj, tag, filename, what):
    """``<tag>`` of an object as a bool; missing reads as 0; anything but 0 / 1 raises."""
    text = (obj.findtext(tag) or '0').strip()
    if text not in ('0', '1'):
        raise BadAnnotationError(f'{filename}: {what}: field <{tag}> must be 0 or 1, got {text!r}')
    return text == '1'


def class_name_hint(name, known):
    """When ``name`` equals a known class up to case or surrounding spaces, the sentence suggesting the fix
    (names are never merged silently); else ''."""
    matches = [c for c in known if c.strip().casefold() == name.strip().casefold()]
    if not matches:
        return ''
    return (f'; it differs from class {matches[0]!r} only in case or surrounding spaces: correct the '
            f'annotation, or list {name!r} in the dataset\'s classes to make it a class of its own')


def convert_object(obj, width, height, class_to_ind, base=1.0, border_slack=0.0):
    """One object of ``read_annotation_xml`` under the dataset rules.

    ``base``: subtracted from the written coordinates (1 for devkit files, 0 for 0-based exporters);
    ``border_slack``: pixels a box may pass the border by and be clipped (counted, not an error).
    Returns ``{'box'`` (0-based ``[x1, y1, x2, y2]`` float64, clipped when within the slack), ``'clipped'``
    (bool), ``'cls'`` (class index or None), ``'problem'`` (text or None), ``'kind'`` (``'class'`` |
    ``'inverted'`` | ``'outside'`` | None)}``.
    """
    xmin, ymin, xmax, ymax = obj['box']
    values = f'xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} ymax={ymax:g}'
    box = np.array(obj['box'], dtype=np.float64) - base
    limits = np.array([width - 1, height - 1, width - 1, height - 1], dtype=np.float64)
    result = {'box': box, 'clipped': False, 'cls': class_to_ind.get(obj['name']), 'problem': None,
              'kind': None}
    if result['cls'] is None:
        result['problem'] = (f'unknown class name {obj["name"]!r} (known: {", ".join(sorted(class_to_ind))})'
                             + class_name_hint(obj['name'], class_to_ind))
        result['kind'] = 'class'
    elif xmax < xmin or ymax < ymin:
        result['problem'] = f'inverted box ({values}: xmax < xmin or ymax < ymin)'
        result['kind'] = 'inverted'
    elif (box < 0).any() or (box > limits).any():
        if (box >= -border_slack).all() and (box <= limits + border_slack).all():
            result['box'] = np.clip(box, 0, limits)
            result['clipped'] = True
        else:
            first = int(base)
            result['problem'] = (f'box outside the image ({values}; {first}-based coordinates must lie in '
                                 f'{first}..{width - 1 + first} x {first}..{height - 1 + first})')
            result['kind'] = 'outside'
    return result


def parse_annotation(filename, class_to_ind, on_bad_box='raise', *, base=1.0, border_slack=0.0,
                     image_size=None):
    """Read one VOC XML into 0-based arrays.

    Returns ``{'width', 'height', 'boxes' (N x 4 float32, 0-based), 'gt_classes' (N int32),
    'difficult' (N bool), 'clipped' (number of boxes clipped within ``border_slack``)}``. A malformed file,
    a missing or non-numeric field, or a bad ``difficult`` flag always raises ``BadAnnotationError``. An
    object whose class is unknown, whose box leaves the image (beyond ``border_slack``) or has x2 < x1 /
    y2 < y1 raises under ``on_bad_box='raise'``; ``'clip'`` clips boxes into the image (and skips what
    stays invalid or has an unknown class), ``'skip'`` drops the object; both warn naming the file.
    ``base``: see ``convert_object``. ``image_size``: a callable giving ``(width, height)`` from the image
    for a file without ``<size>`` (None: such a file is an error).
    """
    raw = read_annotation_xml(filename)
    if raw['size'] is None:
        if image_size is None:
            raise BadAnnotationError(f'{filename}: image size: missing field <size/width>')
        raw['size'] = image_size()
    width, height = raw['size']
    boxes, classes, difficult, clipped = [], [], [], 0
    for k, obj in enumerate(raw['objects']):
        converted = convert_object(obj, width, height, class_to_ind, base, border_slack)
        box = _apply_policy(converted, f'{filename}: object {k} ({obj["name"]!r})', width, height, base,
                            on_bad_box)
        if box is not None:
            boxes.append(box)
            classes.append(converted['cls'])
            difficult.append(obj['difficult'])
            clipped += converted['clipped']
    return {
        'width': width,
        'height': height,
        'boxes': np.array(boxes, dtype=np.float32).reshape(-1, 4),
        'gt_classes': np.array(classes, dtype=np.int32),
        'difficult': np.array(difficult, dtype=bool),
        'clipped': clipped,
    }


def _apply_policy(converted, where, width, height, base, on_bad_box):
    """The 0-based box to keep for a ``convert_object`` result, or None to skip it (``on_bad_box``)."""
    problem = converted['problem']
    if problem is None:
        return converted['box']
    if on_bad_box == 'raise':
        raise BadAnnotationError(f'{where}: {problem}')
    if on_bad_box == 'clip' and converted['kind'] == 'outside':
        box = np.clip(converted['box'], 0, [width - 1, height - 1, width - 1, height - 1])
        warnings.warn(f'{where}: {problem}; clipped to {int(base)}-based {(box + base).tolist()}',
                      stacklevel=3)
        return box
    warnings.warn(f'{where}: {problem}; object skipped', stacklevel=3)
    return None


def _read_number(element, path, filename, what):
    """The number at ``element.findtext(path)``, or ``BadAnnotationError`` naming file and field."""
    text = element.findtext(path)
    if text is None or not text.strip():
        raise BadAnnotationError(f'{filename}: {what}: missing field <{path}>')
    try:
        value = float(text)
    except ValueError:
        raise BadAnnotationError(f'{filename}: {what}: field <{path}> is not a number: '
                                 f'{text.strip()!r}') from None
    if not np.isfinite(value):
        raise BadAnnotationError(f'{filename}: {what}: field <{path}> is not finite: {text.strip()!r}')
    return value


_ANNOTATION_KEYS = ('widths', 'heights', 'boxes', 'gt_classes', 'difficult', 'offsets')


def _read_annotation_cache(cache_file, key):
    """``(warnings, annotations)`` from the cache when it holds ``key``; None when absent or stale. A
    corrupt cache (unreadable, keys missing) is reported and ignored, so it is rebuilt."""
    if not osp.isfile(cache_file):
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as data:
            if str(data['key']) != key:
                return None
            return [str(m) for m in data['warnings']], {k: data[k] for k in _ANNOTATION_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        warnings.warn(f'{cache_file}: corrupt annotation cache ({type(exc).__name__}: {exc}); rebuilding it',
                      stacklevel=4)
        return None


class pascal_voc(imdb):
    """A VOC-format image set, e.g. ``pascal_voc('trainval', '2007')`` named ``voc_2007_trainval``.

    ``classes``: class names with ``'__background__'`` first (default: the 20 VOC classes).
    ``dataset_dir``: the directory under ``devkit_path`` (default ``VOC<year>``). ``name``: the imdb name
    (default ``voc_<year>_<image_set>``). ``max_images``: keep only the first that many ids of the image set.
    ``use_07_metric``: VOC07 11-point AP (default for years before 2010 and for non-VOC data) or the area
    metric; stored in ``config['use_07_metric']``, which ``evaluate_detections`` reads.
    ``on_bad_box``: ``'raise'`` | ``'clip'`` | ``'skip'`` (see ``parse_annotation``).
    ``missing_hint``: what the missing-data error tells the user to do (default: the VOC archives).

    The rules of other exporters (dataset files, ``datasets.dataset_file``; the defaults are the devkit's):
    ``image_ids``: the ids (instead of ``ImageSets/Main/<image_set>.txt``); ``image_set_file``: another
    split file; ``image_exts``: image extensions tried in order (then the XML's ``<filename>``);
    ``base``: 1 (1-based XML) or 0 (0-based); ``border_slack``: pixels a box may pass the border by and be
    clipped (counted in one warning); ``negatives``: ids without an XML are images without objects
    instead of an error; ``split_file_exts``: extensions dropped from the ids of the split file (files
    that list file names). ``use_difficult``: keep difficult objects in the gt roidb
    (``cfg.TRAIN.USE_DIFFICULT`` at the tool boundary). ``cache_dir``: see ``imdb``. ``data_dir``: where the
    default devkit path and the released Selective Search boxes are (``get_imdb`` passes cfg.DATA_DIR; when
    None it is read from cfg here, the boundary of a directly constructed loader).
    """

    def __init__(self, image_set, year, devkit_path=None, classes=None, *, dataset_dir=None, name=None,
                 max_images=None, use_07_metric=None, on_bad_box='raise', missing_hint=None,
                 image_ids=None, image_set_file=None, image_exts=('.jpg',), base=1.0, border_slack=0.0,
                 negatives=False, split_file_exts=(), use_difficult=False, cache_dir=None, data_dir=None):
        year = None if year is None else str(year)
        if year is None and not (devkit_path and dataset_dir and name):
            raise ValueError('pascal_voc without a year needs devkit_path, dataset_dir and name')
        super().__init__(name or f'voc_{year}_{image_set}', VOC_CLASSES if classes is None else classes,
                         cache_dir=cache_dir)
        if on_bad_box not in BAD_BOX_POLICIES:
            raise ValueError(f'on_bad_box must be one of {BAD_BOX_POLICIES}, got {on_bad_box!r}')
        self._image_exts = tuple(image_exts)
        self._base = float(base)
        self._border_slack = float(border_slack)
        self._negatives = bool(negatives)
        self._use_difficult = bool(use_difficult)
        self._image_set = image_set
        self._year = year
        self._data_dir = cfg.DATA_DIR if data_dir is None else data_dir
        self._devkit_path = devkit_path or osp.join(self._data_dir, f'VOCdevkit{year}')
        self._data_path = osp.join(self._devkit_path, dataset_dir or f'VOC{year}')
        self._on_bad_box = on_bad_box
        # objects are never background
        self._class_to_ind = {c: i for i, c in enumerate(self.classes) if i > 0}
        self._annotations = None
        self._has_annotations = None
        if use_07_metric is None:
            use_07_metric = year is None or not year.isdigit() or int(year) < 2010
        self.config['use_07_metric'] = bool(use_07_metric)
        if image_ids is not None:
            self._image_index = list(image_ids)
        else:
            imageset_file = image_set_file or osp.join(self._data_path, 'ImageSets', 'Main',
                                                       f'{image_set}.txt')
            if not osp.isfile(imageset_file):
                hint = missing_hint or voc_missing_hint(year, self._devkit_path)
                raise DatasetNotFoundError(f'{self.name}: image set file not found: {imageset_file}\n{hint}')
            self._image_index = read_image_set(imageset_file, split_file_exts)
        if max_images is not None:
            self._image_index = self._image_index[:max_images]

    @property
    def data_path(self):
        """``<devkit_path>/<dataset_dir>``."""
        return self._data_path

    def image_path_at(self, i):
        return self.image_path_from_index(self._image_index[i])

    def image_path_from_index(self, index):
        """Path of the image of id ``index``: ``JPEGImages/<id><ext>`` for the first of the image extensions
        that exists, else ``JPEGImages/<filename>`` of its XML; raises naming the path when none exists."""
        path = find_image(self._data_path, index, self._image_exts, self.annotation_path(index))
        if path is None:
            tried = osp.join(self._data_path, 'JPEGImages', f'{index}{self._image_exts[0]}')
            raise DatasetNotFoundError(f'{self.name}: image not found: {tried}')
        return path

    def released_selective_search_file(self):
        """``<data_dir>/selective_search_data/<name>.mat`` for a VOC year (the released Fast R-CNN boxes),
        None for datasets without a year (custom and embedded sets compute theirs with OpenCV)."""
        if self._year is None:
            return None
        return osp.join(self._data_dir, 'selective_search_data', f'{self.name}.mat')

    def annotation_path(self, index):
        """Path of the annotation XML of image id ``index``."""
        return osp.join(self._data_path, 'Annotations', f'{index}.xml')

    def image_size_at(self, i):
        """``(width, height)`` of image ``i`` from its annotation."""
        ann = self.annotations()
        return int(ann['widths'][i]), int(ann['heights'][i])

    @property
    def has_annotations(self):
        """False for an image set published without annotations (VOC 2012 test, evaluated by the server):
        its ``Annotations/`` holds none of its images."""
        if self._has_annotations is None:
            self._has_annotations = any(osp.isfile(self.annotation_path(index))
                                        for index in self._image_index)
        return self._has_annotations

    def annotations(self):
        """All objects (difficult ones included) of the image set, from the cache when valid (first loaded
        by ``gt_roidb``, hence always before flipped images are appended).

        Returns a dict of arrays: ``widths``, ``heights`` (num_images int32), ``boxes`` (M x 4 float32,
        0-based), ``gt_classes`` (M int32), ``difficult`` (M bool), ``offsets`` (num_images + 1 int64);
        image i owns rows ``offsets[i]:offsets[i+1]``.
        """
        if self._annotations is None:
            ann = self._load_annotations(self._image_index)
            self._check_image_sizes(ann)
            self._annotations = ann
        return self._annotations

    def _check_image_sizes(self, ann):
        """Every JPEG's header size must equal its annotation's ``<size>`` (``BadImageError`` naming
        both); the pixels are read as stored, so an EXIF rotation does not count."""
        for i, index in enumerate(self._image_index):
            path = self.image_path_from_index(index)
            width, height = stored_image_size(path)
            if (width, height) != (int(ann['widths'][i]), int(ann['heights'][i])):
                raise BadImageError(f'image {path} is {width} x {height} pixels but its annotation '
                                    f'{self.annotation_path(index)} says <size> {ann["widths"][i]} x '
                                    f'{ann["heights"][i]}')

    def _load_annotations(self, ids):
        """Parse (or read from the cache) the annotations of ``ids``; see ``annotations``. An image set
        without annotations has no objects and the sizes of its images."""
        if not self.has_annotations:
            sizes = [imdb.image_size_at(self, i) for i in range(len(ids))]
            return {'widths': np.array([w for w, _ in sizes], dtype=np.int32),
                    'heights': np.array([h for _, h in sizes], dtype=np.int32),
                    'boxes': np.zeros((0, 4), np.float32), 'gt_classes': np.zeros(0, np.int32),
                    'difficult': np.zeros(0, bool), 'offsets': np.zeros(len(ids) + 1, dtype=np.int64)}
        paths = [self.annotation_path(index) for index in ids]
        if self._negatives:
            paths = [path if osp.isfile(path) else None for path in paths]
        key = self._cache_key(ids, paths)
        cache_file = osp.join(self.cache_path, f'{self.name}_gt_annotations.npz')
        cached = _read_annotation_cache(cache_file, key)
        if cached is not None:
            cached_warnings, ann = cached
            # clipped / skipped objects are reported on every load, not only when parsing
            for message in cached_warnings:
                warnings.warn(message, stacklevel=3)
            return ann
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            parsed = [self._parse_one(index, path) for index, path in zip(ids, paths)]
            clipped = [(path, p['clipped']) for path, p in zip(paths, parsed) if p['clipped']]
            if clipped:
                warnings.warn(f'{self.name}: {sum(n for _, n in clipped)} boxes passed the image border by '
                              f'at most {self._border_slack:g} px and were clipped (first: {clipped[0][0]})',
                              stacklevel=2)
        messages = [str(w.message) for w in caught]
        for message in messages:
            warnings.warn(message, stacklevel=3)
        offsets = np.zeros(len(parsed) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([p['boxes'].shape[0] for p in parsed])
        ann = {
            'widths': np.array([p['width'] for p in parsed], dtype=np.int32),
            'heights': np.array([p['height'] for p in parsed], dtype=np.int32),
            'boxes': np.concatenate([p['boxes'] for p in parsed] or [np.zeros((0, 4), np.float32)]),
            'gt_classes': np.concatenate([p['gt_classes'] for p in parsed] or [np.zeros(0, np.int32)]),
            'difficult': np.concatenate([p['difficult'] for p in parsed] or [np.zeros(0, bool)]),
            'offsets': offsets,
        }
        with atomic_write(cache_file) as f:
            np.savez(f, key=np.array(key), warnings=np.array(messages, dtype=str), **ann)
        return ann

    def _parse_one(self, index, path):
        """``parse_annotation`` of one image under this dataset's rules; a negative (``path`` None) has no
        objects and its image's size."""
        def size_from_image():
            return stored_image_size(self.image_path_from_index(index))
        if path is None:
            width, height = size_from_image()
            return {'width': width, 'height': height, 'boxes': np.zeros((0, 4), np.float32),
                    'gt_classes': np.zeros(0, np.int32), 'difficult': np.zeros(0, bool), 'clipped': 0}
        return parse_annotation(path, self._class_to_ind, self._on_bad_box, base=self._base,
                                border_slack=self._border_slack, image_size=size_from_image)

    def _rules(self):
        """The loading rules that differ from the devkit's (they enter the cache key; an empty dict keeps
        the key of caches written before dataset files existed)."""
        rules = {'image_exts': list(self._image_exts), 'base': self._base,
                 'border_slack': self._border_slack, 'negatives': self._negatives}
        defaults = {'image_exts': ['.jpg'], 'base': 1.0, 'border_slack': 0.0, 'negatives': False}
        return {k: v for k, v in rules.items() if v != defaults[k]}

    def _cache_key(self, ids, paths):
        """SHA-256 over the cache version, classes, bad-box policy, the other loading rules (and the folder)
        when they are not the devkit's, ids and every annotation file's bytes (a negative hashes as no
        file)."""
        header = [_CACHE_VERSION, self.classes, self._on_bad_box]
        if self._rules():
            # the folder too: the cached warnings name its files, and same-named datasets may differ
            header.append(dict(self._rules(), data_path=self._data_path))
        digest = hashlib.sha256(json.dumps(header).encode())
        for index, path in zip(ids, paths):
            if path is None:
                digest.update(index.encode() + b'\0<negative>\0')
                continue
            try:
                with open(path, 'rb') as f:
                    content = f.read()
            except FileNotFoundError:
                raise DatasetNotFoundError(f'{self.name}: annotation file not found: {path}') from None
            digest.update(index.encode() + b'\0' + content + b'\0')
        return digest.hexdigest()

    def gt_roidb(self):
        """Ground-truth roidb; difficult objects are left out unless ``use_difficult``."""
        ann = self.annotations()
        roidb = []
        for i in range(len(ann['widths'])):
            rows = slice(ann['offsets'][i], ann['offsets'][i + 1])
            keep = np.ones(rows.stop - rows.start, dtype=bool) if self._use_difficult \
                else ~ann['difficult'][rows]
            boxes = ann['boxes'][rows][keep]
            gt_classes = ann['gt_classes'][rows][keep]
            overlaps = np.zeros((boxes.shape[0], self.num_classes), dtype=np.float32)
            overlaps[np.arange(boxes.shape[0]), gt_classes] = 1.0
            roidb.append({
                'image': self.image_path_at(i),
                'width': int(ann['widths'][i]),
                'height': int(ann['heights'][i]),
                'boxes': boxes.copy(),
                'gt_classes': gt_classes.copy(),
                'gt_overlaps': overlaps,
                'flipped': False,
                'seg_areas': ((boxes[:, 2] - boxes[:, 0] + 1)
                              * (boxes[:, 3] - boxes[:, 1] + 1)).astype(np.float32),
            })
        return roidb

    def evaluate_detections(self, all_boxes, output_dir):
        """Write comp4 result files, run ``voc_eval`` per class, save a JSON summary, print the AP table.

        ``all_boxes[class][image]``: N x 5 ``[x1, y1, x2, y2, score]`` (0-based) for every class index
        (index 0, background, is ignored) and every image of ``image_index``. Writes to ``output_dir``:
        ``<name>_image_ids.txt``, ``comp4_det_<image_set>_<class>.txt`` (1-based like the devkit),
        ``<class>_pr.npz`` (rec, prec, ap) and ``<name>_eval.json`` (per-class AP and mAP). Returns mAP
        (classes without gt count with AP 0). An image set without annotations (VOC 2012 test) gets the
        server's submission files instead (``write_server_results``) and returns None.
        """
        if self._flipped_appended:
            raise RuntimeError(f'{self.name}: cannot evaluate an imdb with flipped images appended')
        _check_all_boxes(all_boxes, self.num_classes, self.num_images)
        os.makedirs(output_dir, exist_ok=True)
        if not self.has_annotations:
            archive = self.write_server_results(all_boxes, output_dir)
            print(f'{self.name} has no public annotations: its mAP comes from the PASCAL VOC evaluation '
                  f'server. Upload {archive} (comp4: trained on any data).', flush=True)
            return None
        use_07_metric = bool(self.config['use_07_metric'])
        ids_file = osp.join(output_dir, f'{self.name}_image_ids.txt')
        with atomic_write(ids_file, 'w') as f:
            f.writelines(f'{index}\n' for index in self._image_index)
        annopath = self._eval_annotation_path()
        aps = {}
        for cls_ind, cls in enumerate(self.classes):
            if cls_ind == 0:
                continue
            detfile = osp.join(output_dir, f'comp4_det_{self._image_set}_{cls}.txt')
            write_comp4_file(detfile, self._image_index, all_boxes[cls_ind])
            rec, prec, ap = voc_eval(detfile, annopath, ids_file, cls, osp.join(self.cache_path, 'voc_eval'),
                                     ovthresh=VOC_IOU_THRESH, use_07_metric=use_07_metric)
            with atomic_write(osp.join(output_dir, f'{cls}_pr.npz')) as f:
                np.savez(f, rec=rec, prec=prec, ap=np.float64(ap))
            aps[cls] = ap
        mean_ap = float(np.mean(list(aps.values())))
        metric = 'VOC07 11-point' if use_07_metric else 'VOC2010+ area'
        write_json_atomic(osp.join(output_dir, f'{self.name}_eval.json'),
                          {'imdb': self.name, 'metric': metric, 'iou_thresh': VOC_IOU_THRESH,
                           'num_images': self.num_images, 'ap': aps, 'mAP': mean_ap}, indent=2)
        print(format_ap_table(self.name, metric, aps, mean_ap))
        return mean_ap


    def _eval_annotation_path(self):
        """``voc_eval``'s annotation path pattern: the dataset's own XMLs under the devkit's rules; under
        other rules (0-based, clipped boxes, negatives, other image names) the loaded annotations rewritten
        as devkit XMLs (1-based, clipped) in ``<cache>/<name>_eval_annotations/``, so evaluation sees the
        boxes training saw."""
        if not self._rules():
            return osp.join(self._data_path, 'Annotations', '{}.xml')
        ann = self.annotations()
        out_dir = osp.join(self.cache_path, f'{self.name}_eval_annotations')
        os.makedirs(out_dir, exist_ok=True)
        for i, index in enumerate(self._image_index):
            rows = slice(ann['offsets'][i], ann['offsets'][i + 1])
            write_text_atomic(osp.join(out_dir, f'{index}.xml'), devkit_xml(
                self.classes, ann['boxes'][rows], ann['gt_classes'][rows], ann['difficult'][rows]))
        return osp.join(out_dir, '{}.xml')

    def write_server_results(self, all_boxes, output_dir):
        """The evaluation server's submission: ``results/VOC<year>/Main/comp4_det_<set>_<class>.txt`` (one
        file per class, 1-based ``<id> <score> <x1> <y1> <x2> <y2>``) under ``output_dir``, packed into
        ``<output_dir>/<name>_comp4_results.tar.gz``. Returns the archive's path."""
        year = self._year or osp.basename(self._data_path)
        rel_dir = osp.join('results', f'VOC{year}', 'Main')
        os.makedirs(osp.join(output_dir, rel_dir), exist_ok=True)
        for cls_ind, cls in enumerate(self.classes[1:], start=1):
            write_comp4_file(osp.join(output_dir, rel_dir, f'comp4_det_{self._image_set}_{cls}.txt'),
                             self._image_index, all_boxes[cls_ind])
        archive = osp.join(output_dir, f'{self.name}_comp4_results.tar.gz')
        tmp = f'{archive}.tmp{os.getpid()}'
        with tarfile.open(tmp, 'w:gz') as tar:
            tar.add(osp.join(output_dir, 'results'), arcname='results')
        os.replace(tmp, archive)
        return archive


def _check_all_boxes(all_boxes, num_classes, num_images):
    """Raise ``ValueError`` unless ``all_boxes`` is num_classes lists of num_images N x 5 arrays (or
    empty)."""
    if len(all_boxes) != num_classes:
        raise ValueError(f'all_boxes has {len(all_boxes)} classes, expected {num_classes}')
    for cls_ind in range(1, num_classes):
        if len(all_boxes[cls_ind]) != num_images:
            raise ValueError(f'all_boxes[{cls_ind}] has {len(all_boxes[cls_ind])} images, '
                             f'expected {num_images}')
        for i, dets in enumerate(all_boxes[cls_ind]):
            shape = np.shape(dets)
            if np.size(dets) > 0 and (len(shape) != 2 or shape[1] != 5):
                raise ValueError(f'all_boxes[{cls_ind}][{i}] must be N x 5 [x1, y1, x2, y2, score], '
                                 f'got shape {shape}')


def write_comp4_file(path, image_index, class_dets):
    """Write one class's detections: ``<id> <score %.3f> <x1> <y1> <x2> <y2>`` (1-based, %.1f), as the
    released code did; ``class_dets[i]`` is N x 5 (0-based boxes + score) for ``image_index[i]``."""
    with atomic_write(path, 'w') as f:
        for index, dets in zip(image_index, class_dets):
            for x1, y1, x2, y2, score in np.asarray(dets, dtype=np.float64).reshape(-1, 5):
                f.write(f'{index} {score:.3f} {x1 + 1:.1f} {y1 + 1:.1f} {x2 + 1:.1f} {y2 + 1:.1f}\n')


def format_ap_table(name, metric, aps, mean_ap):
    """The per-class AP table printed after evaluation (``aps``: class name -> AP)."""
    width = max([len(c) for c in aps] + [len('mAP')])
    lines = [f'AP for {name} ({metric} metric, IoU > {VOC_IOU_THRESH}):']
    lines += [f'  {cls:<{width}}  {ap:.4f}' for cls, ap in aps.items()]
    lines.append(f'  {"mAP":<{width}}  {mean_ap:.4f}')
    return '\n'.join(lines)
