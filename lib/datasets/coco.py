"""COCO-format image databases: any COCO-format JSON and its image folder.

``coco_from_files(name, annotation_file, image_dir)`` makes an imdb of any COCO-format detection JSON
(``images``, ``categories`` and, unless the set is unannotated, ``annotations``) and its image folder
(``<image_dir>/<images[].file_name>``). Dataset files with ``format: coco`` (``datasets.dataset_file``)
make them: MS COCO as the released toolkit names it is ``data/datasets/coco_2014.yml`` /
``coco_2015.yml`` (``coco_2014_train`` ... ``coco_2015_test-dev``; annotations
``<cfg.DATA_DIR>/coco/annotations/instances_<split><year>.json``, ``image_info_<split>2015.json`` for the
unannotated 2015 test sets; images ``<cfg.DATA_DIR>/coco/images/<split><year>/``, ``val2014`` for minival
and valminusminival, ``test2015`` for test-dev), the embedded set's COCO view ``synth_coco.yml``.

Classes: the categories sorted by id become class indices 1..K (0 is the background), so non-contiguous
category ids (COCO's 1..90 for 80 categories) map to contiguous indices; ``category_ids[k]`` maps back.
Image ids: ``image_index`` holds ``str(images[].id)``; ``coco_image_ids`` the integer ids.

Boxes: COCO ``[x, y, w, h]`` become 0-based pixel-inclusive ``[x1, y1, x2, y2]`` with
``x2 = x1 + max(0, w - 1)``, clipped into the image (``coco_eval.coco_box_to_roidb``); an annotation whose
``area`` is not positive or whose clipped box is empty is dropped, as released. Crowd regions
(``iscrowd`` 1) never enter the training roidb; the evaluation (pycocotools, ``coco_eval``) reads the JSON
itself and matches them as COCO does. ``seg_areas`` is the annotation's ``area``. Images without
annotations have empty ``boxes``.
"""

import json
import os
import os.path as osp

import numpy as np

from datasets import coco_eval
from datasets.imdb import imdb
from datasets.pascal_voc import BadAnnotationError, DatasetNotFoundError, image_id_problem
from utils.fileio import write_json_atomic
from utils.image import BadImageError, stored_image_size


def _field(obj, key, where, path, kinds):
    """``obj[key]`` of one of ``kinds``, or ``BadAnnotationError`` naming the file, entry and field."""
    if not isinstance(obj, dict) or key not in obj:
        raise BadAnnotationError(f'{path}: {where}: missing field {key!r}')
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise BadAnnotationError(f'{path}: {where}: field {key!r} has the wrong type '
                                 f'({type(value).__name__}: {value!r})')
    return value


def _number(obj, key, where, path):
    """A finite number field."""
    value = _field(obj, key, where, path, (int, float))
    if not np.isfinite(value):
        raise BadAnnotationError(f'{path}: {where}: field {key!r} is not finite ({value!r})')
    return value


def read_coco_json(path):
    """Parse a COCO-format JSON (``BadAnnotationError`` naming the file when it is not JSON or not an
    object with ``images`` and ``categories`` lists)."""
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise BadAnnotationError(f'{path}: not valid JSON ({err})') from err
    for key in ('images', 'categories'):
        _field(data, key, 'top level', path, list)
    if 'annotations' in data:
        _field(data, 'annotations', 'top level', path, list)
    return data


def parse_categories(categories, path):
    """``(class names with '__background__' first, category ids by class index (entry 0: None))`` from
    the categories sorted by id."""
    by_id = {}
    for k, cat in enumerate(categories):
        where = f'categories[{k}]'
        cat_id = _field(cat, 'id', where, path, int)
        name = _field(cat, 'name', where, path, str)
        if cat_id in by_id:
            raise BadAnnotationError(f'{path}: {where}: category id {cat_id} repeats')
        by_id[cat_id] = name
    if not by_id:
        raise BadAnnotationError(f'{path}: no categories')
    ids = sorted(by_id)
    names = [by_id[i] for i in ids]
    if len(set(names)) != len(names) or '__background__' in names:
        raise BadAnnotationError(f'{path}: category names must be unique and not "__background__"')
    return ('__background__', *names), [None, *ids]


def parse_images(images, path):
    """``[{'id', 'file_name', 'width', 'height'}]`` in the file's order, validated."""
    out, seen = [], set()
    for k, img in enumerate(images):
        where = f'images[{k}]'
        image_id = _field(img, 'id', where, path, int)
        file_name = _field(img, 'file_name', where, path, str)
        width = _field(img, 'width', where, path, int)
        height = _field(img, 'height', where, path, int)
        if image_id in seen:
            raise BadAnnotationError(f'{path}: {where}: image id {image_id} repeats')
        if width <= 0 or height <= 0:
            raise BadAnnotationError(f'{path}: {where}: image size must be positive, got {width} x {height}')
        problem = image_id_problem(osp.basename(file_name)) if file_name else 'is empty'
        if problem:
            raise BadAnnotationError(f'{path}: {where}: file_name {file_name!r} {problem}')
        seen.add(image_id)
        out.append({'id': image_id, 'file_name': file_name, 'width': width, 'height': height})
    if not out:
        raise BadAnnotationError(f'{path}: the image set is empty (no images)')
    return out


def parse_annotations(annotations, images, category_to_class, path):
    """Group the annotations by image: a list (aligned with ``images``) of dicts ``boxes`` (N x 4 float32,
    0-based pixel-inclusive), ``gt_classes`` (N int32), ``crowd`` (N bool), ``areas`` (N float32).
    Annotations with a non-positive ``area`` or an empty clipped box are dropped (the released rule)."""
    position = {img['id']: i for i, img in enumerate(images)}
    rows = [[] for _ in images]
    for k, ann in enumerate(annotations):
        where = f'annotations[{k}]'
        image_id = _field(ann, 'image_id', where, path, int)
        category_id = _field(ann, 'category_id', where, path, int)
        bbox = _field(ann, 'bbox', where, path, list)
        if image_id not in position:
            raise BadAnnotationError(f'{path}: {where}: image_id {image_id} is not in images')
        if category_id not in category_to_class:
            raise BadAnnotationError(f'{path}: {where}: category_id {category_id} is not in categories')
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                     and np.isfinite(v) for v in bbox):
            raise BadAnnotationError(f'{path}: {where}: bbox must be 4 finite numbers [x, y, w, h], '
                                     f'got {bbox!r}')
        area = _number(ann, 'area', where, path)
        crowd = ann.get('iscrowd', 0)
        if crowd not in (0, 1):
            raise BadAnnotationError(f'{path}: {where}: iscrowd must be 0 or 1, got {crowd!r}')
        img = images[position[image_id]]
        box = coco_eval.coco_box_to_roidb(bbox, img['width'], img['height'])
        if area > 0 and box[2] >= box[0] and box[3] >= box[1]:
            rows[position[image_id]].append((box, category_to_class[category_id], bool(crowd), area))
    return [{'boxes': np.array([r[0] for r in image_rows], dtype=np.float32).reshape(-1, 4),
             'gt_classes': np.array([r[1] for r in image_rows], dtype=np.int32),
             'crowd': np.array([r[2] for r in image_rows], dtype=bool),
             'areas': np.array([r[3] for r in image_rows], dtype=np.float32)} for image_rows in rows]


class coco(imdb):
    """A COCO-format image set: ``coco(name, annotation_file, image_dir)``; see the module doc.

    ``missing_hint``: what the missing-data error tells the user to do. The JSON is read when the imdb is
    made (classes come from it); image files are checked when the roidb is built.
    """

    def __init__(self, name, annotation_file, image_dir, *, missing_hint=None):
        annotation_file, image_dir = str(annotation_file), str(image_dir)
        self._annotation_file = annotation_file
        self._image_dir = image_dir
        if not osp.isfile(annotation_file):
            hint = missing_hint or 'Give the path of a COCO-format JSON (images, categories, annotations).'
            raise DatasetNotFoundError(f'{name}: annotation file not found: {annotation_file}\n{hint}')
        if not osp.isdir(image_dir):
            hint = missing_hint or 'Give the folder holding the images named by images[].file_name.'
            raise DatasetNotFoundError(f'{name}: image folder not found: {image_dir}\n{hint}')
        data = read_coco_json(annotation_file)
        classes, self._category_ids = parse_categories(data['categories'], annotation_file)
        super().__init__(name, classes)
        self._images = parse_images(data['images'], annotation_file)
        self._has_annotations = 'annotations' in data
        category_to_class = {cat_id: k for k, cat_id in enumerate(self._category_ids) if k > 0}
        self._objects = parse_annotations(data.get('annotations', []), self._images, category_to_class,
                                          annotation_file)
        self._image_index = [str(img['id']) for img in self._images]
        self._position = {index: i for i, index in enumerate(self._image_index)}
        self._sizes_checked = False

    @property
    def annotation_file(self):
        return self._annotation_file

    @property
    def category_ids(self):
        """COCO category id of each class index (entry 0, the background, is None)."""
        return list(self._category_ids)

    @property
    def coco_image_ids(self):
        """The integer COCO image ids, aligned with ``image_index``."""
        return [img['id'] for img in self._images]

    @property
    def has_annotations(self):
        """False for a set published without annotations (COCO 2015 test / test-dev)."""
        return self._has_annotations

    def _image(self, i):
        """The image record of position ``i`` (flipped copies, after the originals, map to theirs)."""
        return self._images[self._position[self._image_index[i]]]

    def image_path_at(self, i):
        path = osp.join(self._image_dir, self._image(i)['file_name'])
        if not osp.isfile(path):
            raise DatasetNotFoundError(f'{self.name}: image not found: {path}')
        return path

    def image_size_at(self, i):
        """``(width, height)`` from the JSON."""
        img = self._image(i)
        return img['width'], img['height']

    def _check_image_sizes(self):
        """Every image file's stored size must equal its JSON ``width`` x ``height``."""
        for i, img in enumerate(self._images):
            path = self.image_path_at(i)
            if stored_image_size(path) != (img['width'], img['height']):
                width, height = stored_image_size(path)
                raise BadImageError(f'image {path} is {width} x {height} pixels but {self._annotation_file} '
                                    f'says {img["width"]} x {img["height"]} (image id {img["id"]})')
        self._sizes_checked = True

    def gt_roidb(self):
        """Ground-truth roidb without crowd regions (they are matched by the COCO evaluation only)."""
        if not self._sizes_checked:
            self._check_image_sizes()
        roidb = []
        for i, (img, objects) in enumerate(zip(self._images, self._objects)):
            keep = ~objects['crowd']
            boxes = objects['boxes'][keep]
            gt_classes = objects['gt_classes'][keep]
            overlaps = np.zeros((boxes.shape[0], self.num_classes), dtype=np.float32)
            overlaps[np.arange(boxes.shape[0]), gt_classes] = 1.0
            roidb.append({'image': self.image_path_at(i), 'width': img['width'], 'height': img['height'],
                          'boxes': boxes.copy(), 'gt_classes': gt_classes.copy(), 'gt_overlaps': overlaps,
                          'flipped': False, 'seg_areas': objects['areas'][keep].copy()})
        return roidb

    def coco_ground_truth(self):
        """``(pycocotools COCO of the JSON, image ids, category ids)`` for ``coco_eval.evaluate_imdb``."""
        with open(self._annotation_file, encoding='utf-8') as f:
            dataset = json.load(f)
        return coco_eval.ground_truth_index(dataset), self.coco_image_ids, self._category_ids

    def evaluate_detections(self, all_boxes, output_dir):
        """COCO evaluation (``coco_eval.evaluate_imdb``); returns AP@[.5:.95]. A set without annotations
        gets only the results JSON for the evaluation server, and returns None.

        ``all_boxes[class][image]``: N x 5 ``[x1, y1, x2, y2, score]`` (0-based) for every class and image.
        """
        if self._flipped_appended:
            raise RuntimeError(f'{self.name}: cannot evaluate an imdb with flipped images appended')
        if not self._has_annotations:
            os.makedirs(output_dir, exist_ok=True)
            path = osp.join(output_dir, f'detections_{self.name}_results.json')
            results = coco_eval.coco_results(all_boxes, self.coco_image_ids, self._category_ids)
            write_json_atomic(path, results)
            print(f'{self.name} has no public annotations: upload {path} to the COCO evaluation server.',
                  flush=True)
            return None
        return coco_eval.evaluate_imdb(self, all_boxes, output_dir)['AP']


def coco_from_files(name, annotation_file, image_dir, missing_hint=None):
    """An imdb called ``name`` of any COCO-format JSON and its image folder (the ``format: coco`` dataset
    files); see ``coco``."""
    return coco(name, annotation_file, image_dir, missing_hint=missing_hint)
