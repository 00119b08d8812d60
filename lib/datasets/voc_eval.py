"""PASCAL VOC detection average precision, following the devkit's rules (VOCevaldet).

Files use the devkit's 1-based pixel coordinates: annotation XMLs as distributed, detection files in the
comp4 format, one line per detection: ``<image id> <score> <x1> <y1> <x2> <y2>``.

Rules: only non-difficult gt objects count as positives. Detections are taken in decreasing score order
(ties keep file order: a stable sort). A detection is compared with the gt boxes of its class in its image;
if the best IoU (areas with the +1) is > ``ovthresh`` (strict): a difficult best gt makes the detection
ignored (neither TP nor FP), an untaken one makes it a TP and takes it, a taken one makes it an FP. Otherwise
it is an FP. There is no fallback to the second-best gt.

Choices where the devkit is silent or degenerate (documented, never a crash):
- a class with no non-difficult gt has recall 0 everywhere and AP 0 (the released Python port divides by
  zero and gives NaN);
- no detections give AP 0;
- the VOC07 thresholds are MATLAB's ``0:0.1:1`` as VOCevaldet builds them (``VOC07_THRESHOLDS``), the
  values the paper's numbers were computed with. MATLAB's colon operator computes the first half as
  ``k*0.1`` and the second half as ``1-(10-k)*0.1`` (the middle, 0.5, exactly). So the fourth threshold is
  ``3*0.1``, one ulp above 0.3, and a recall of exactly 3/10 does not reach it, while 0.6 and 0.7 are the
  nearest doubles and a recall of 6/10 or 7/10 does. (The released Python port used
  ``np.arange(0., 1.1, 0.1)``, which also puts 0.6 and 0.7 one ulp high.)
"""

import hashlib
import json
import os.path as osp
import warnings
import xml.etree.ElementTree as ET

import numpy as np

from utils.cython_bbox import bbox_overlaps
from utils.fileio import write_json_atomic

# Bumped whenever the annotation cache layout changes, so old caches are rebuilt.
_CACHE_VERSION = 1


def matlab_colon(start, step, stop):
    """The doubles MATLAB's ``start:step:stop`` yields (its colon operator, as documented by MathWorks):
    ``n = round((stop - start) / step)``; element k is ``start + k*step`` in the first half and
    ``stop - (n-k)*step`` in the second; for even n the middle element is ``(start + stop) / 2``."""
    n = int(round((stop - start) / step))
    values = [start + k * step if 2 * k < n else stop - (n - k) * step for k in range(n + 1)]
    if n % 2 == 0:
        values[n // 2] = (start + stop) / 2
    return np.array(values, dtype=np.float64)


# VOCevaldet's 11 recall thresholds, ``t = 0:0.1:1`` in MATLAB.
VOC07_THRESHOLDS = matlab_colon(0.0, 0.1, 1.0)


def parse_rec(filename):
    """Objects of one VOC annotation XML: a list of ``{'name', 'difficult', 'bbox'}`` with the bbox
    ``[xmin, ymin, xmax, ymax]`` as written (1-based). A missing ``difficult`` tag reads as 0."""
    tree = ET.parse(filename)
    objects = []
    for k, obj in enumerate(tree.findall('object')):
        name = obj.findtext('name')
        bndbox = obj.find('bndbox')
        if name is None or bndbox is None:
            raise ValueError(f'{filename}: object {k} lacks <name> or <bndbox>')
        try:
            bbox = [float(bndbox.findtext(tag)) for tag in ('xmin', 'ymin', 'xmax', 'ymax')]
        except (TypeError, ValueError) as err:
            raise ValueError(f'{filename}: object {k} ({name}): bad or missing bndbox coordinate') from err
        objects.append({'name': name.strip(), 'difficult': int(obj.findtext('difficult') or 0),
                        'bbox': bbox})
    return objects


def read_image_ids(imagesetfile):
    """Image ids of an ImageSets file (one per line; blank lines skipped)."""
    with open(imagesetfile, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip()]


def load_annotations(annopath, image_ids, cachedir):
    """``{image_id: parse_rec(...)}`` for ``annopath.format(image_id)``, cached as JSON in ``cachedir``.

    The cache key hashes the ids and every annotation file's bytes, so an edited annotation is re-parsed.
    """
    digest = hashlib.sha256(f'v{_CACHE_VERSION}\n{annopath}\n'.encode())
    for image_id in image_ids:
        with open(annopath.format(image_id), 'rb') as f:
            digest.update(image_id.encode() + b'\0' + f.read() + b'\0')
    cachefile = osp.join(cachedir, f'annots_{digest.hexdigest()[:20]}.json')
    if osp.isfile(cachefile):
        try:
            with open(cachefile, encoding='utf-8') as f:
                return json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            warnings.warn(f'{cachefile}: corrupt annotation cache ({exc}); rebuilding it', stacklevel=2)
    recs = {image_id: parse_rec(annopath.format(image_id)) for image_id in image_ids}
    write_json_atomic(cachefile, recs)
    return recs


def read_detections(detpath, known_ids):
    """Parse a comp4 detection file. Returns ``(image_ids list, scores N float64, boxes N x 4 float64)``.

    Raises ``ValueError`` naming the file and line for a malformed line or an id not in ``known_ids``.
    """
    image_ids, scores, boxes = [], [], []
    with open(detpath, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 6:
                raise ValueError(f'{detpath}:{lineno}: expected "id score x1 y1 x2 y2", got {line.strip()!r}')
            if fields[0] not in known_ids:
                raise ValueError(f'{detpath}:{lineno}: image id {fields[0]!r} is not in the image set')
            try:
                values = [float(v) for v in fields[1:]]
            except ValueError as err:
                raise ValueError(f'{detpath}:{lineno}: non-numeric value in {line.strip()!r}') from err
            image_ids.append(fields[0])
            scores.append(values[0])
            boxes.append(values[1:])
    return image_ids, np.array(scores, dtype=np.float64), np.array(boxes, dtype=np.float64).reshape(-1, 4)


def voc_ap(rec, prec, use_07_metric=False):
    """Average precision from a recall / precision curve (arrays in detection order).

    ``use_07_metric``: VOC2007 11-point: mean over t in ``VOC07_THRESHOLDS`` (MATLAB's 0:0.1:1) of the
    maximum precision at
    recall >= t (0 when no recall reaches t). Otherwise (VOC2010+): the area under the precision envelope
    (precision made monotonically non-increasing), summed where recall changes.
    """
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        # summed, then divided once: 11 x (1 / 11) would not add up to exactly 1
        maxima = [prec[rec >= t].max() if (rec >= t).any() else 0.0 for t in VOC07_THRESHOLDS]
        return float(np.sum(maxima) / 11.0)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    changes = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))


def voc_eval(detpath, annopath, imagesetfile, classname, cachedir, ovthresh=0.5, use_07_metric=True):
    """AP of one class, devkit rules (see the module docstring).

    ``detpath``: comp4 file of this class (``detpath.format(classname)`` when it holds ``{}``/``{:s}``);
    ``annopath``: annotation path template, ``annopath.format(image_id)``; ``imagesetfile``: image ids;
    ``cachedir``: where the parsed-annotation JSON cache goes.
    Returns ``(rec, prec, ap)``: recall and precision after each detection (N float64) and the AP.
    """
    detfile = detpath.format(classname)
    image_ids = read_image_ids(imagesetfile)
    recs = load_annotations(annopath, image_ids, cachedir)

    class_recs = {}
    npos = 0
    for image_id in image_ids:
        objects = [obj for obj in recs[image_id] if obj['name'] == classname]
        difficult = np.array([bool(obj['difficult']) for obj in objects], dtype=bool)
        class_recs[image_id] = {
            'bbox': np.array([obj['bbox'] for obj in objects], dtype=np.float64).reshape(-1, 4),
            'difficult': difficult,
            'taken': np.zeros(len(objects), dtype=bool),
        }
        npos += int((~difficult).sum())

    det_ids, scores, det_boxes = read_detections(detfile, class_recs)
    order = np.argsort(-scores, kind='stable')
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    for d, k in enumerate(order):
        gts = class_recs[det_ids[k]]
        if gts['bbox'].shape[0] == 0:
            fp[d] = 1.0
            continue
        overlaps = bbox_overlaps(det_boxes[k:k + 1], gts['bbox'])[0]
        jmax = int(overlaps.argmax())
        if overlaps[jmax] > ovthresh:
            if gts['difficult'][jmax]:
                continue
            if gts['taken'][jmax]:
                fp[d] = 1.0
            else:
                tp[d] = 1.0
                gts['taken'][jmax] = True
        else:
            fp[d] = 1.0

    tp = np.cumsum(tp)
    fp = np.cumsum(fp)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if npos == 0:
        return np.zeros_like(tp), prec, 0.0
    rec = tp / float(npos)
    return rec, prec, voc_ap(rec, prec, use_07_metric)
