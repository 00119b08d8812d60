"""COCO detection evaluation through pycocotools (AP@[.5:.95] and the rest of the 12-number summary).

Box conventions. The toolkit's boxes are ``[x1, y1, x2, y2]``, 0-based, pixel-inclusive (width =
x2 - x1 + 1). COCO boxes are ``[x, y, w, h]`` with ``(x, y)`` the top-left corner in the same 0-based pixel
coordinates and ``w``, ``h`` the extent, so a box covering pixels x1..x2 has ``w = x2 - x1 + 1``. The two
directions, as the released toolkit has them:

- ground truth -> roidb (``coco_box_to_roidb``): ``x1 = x``, ``x2 = x1 + max(0, w - 1)``, clipped into the
  image;
- detections -> COCO results (``roidb_box_to_coco``): ``x = x1``, ``w = x2 - x1 + 1``.

A gt box with integer ``w >= 1`` goes there and back unchanged, and pycocotools' IoU of two COCO boxes then
equals the toolkit's pixel-inclusive IoU of the corresponding ``[x1, y1, x2, y2]`` boxes.

VOC-format datasets are converted on the fly (``voc_ground_truth``): each image becomes a COCO image (its
position in ``image_index`` is its id), each class a category (its class index is its id), and difficult
objects become crowd regions (``iscrowd`` 1): pycocotools ignores detections on crowd regions, as the VOC
evaluation ignores detections on difficult objects (it measures a detection's overlap with a crowd region as
the share of the detection inside it).
"""

import os
import os.path as osp

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from utils.fileio import write_json_atomic

# The 12 numbers of COCOeval.summarize(), in its order: AP over IoU .5:.05:.95, at .5 and .75, for small /
# medium / large objects; AR with at most 1, 10, 100 detections per image, and for small / medium / large.
SUMMARY_NAMES = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100', 'ARs', 'ARm', 'ARl')


def coco_box_to_roidb(bbox, width, height):
    """COCO ``[x, y, w, h]`` -> 0-based pixel-inclusive ``[x1, y1, x2, y2]`` clipped into a ``width`` x
    ``height`` image (floats)."""
    x, y, w, h = (float(v) for v in bbox)
    x1 = min(max(0.0, x), width - 1.0)
    y1 = min(max(0.0, y), height - 1.0)
    x2 = min(max(0.0, x1 + max(0.0, w - 1.0)), width - 1.0)
    y2 = min(max(0.0, y1 + max(0.0, h - 1.0)), height - 1.0)
    return [x1, y1, x2, y2]


def roidb_box_to_coco(boxes):
    """N x 4 ``[x1, y1, x2, y2]`` (0-based, pixel-inclusive) -> N x 4 COCO ``[x, y, w, h]`` (float64)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0] + 1,
                     boxes[:, 3] - boxes[:, 1] + 1], axis=1)


def coco_results(all_boxes, image_ids, category_ids):
    """Detections as a COCO results list.

    ``all_boxes[class][image]``: N x 5 ``[x1, y1, x2, y2, score]`` (class 0, background, is skipped);
    ``image_ids[i]``: the COCO image id of image ``i``; ``category_ids[k]``: the COCO category id of class
    ``k`` (entry 0 unused). Returns ``[{'image_id', 'category_id', 'bbox': [x, y, w, h], 'score'}]`` with
    plain Python numbers (JSON-ready).
    """
    results = []
    for cls_ind in range(1, len(all_boxes)):
        category = int(category_ids[cls_ind])
        for image_id, dets in zip(image_ids, all_boxes[cls_ind]):
            dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
            for bbox, score in zip(roidb_box_to_coco(dets[:, :4]), dets[:, 4]):
                results.append({'image_id': int(image_id), 'category_id': category,
                                'bbox': [round(float(v), 2) for v in bbox], 'score': round(float(score), 5)})
    return results


def ground_truth_index(dataset):
    """A pycocotools ``COCO`` object over a COCO-format dict (``images``, ``annotations``, ``categories``)."""
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def _detections_index(coco_gt, results):
    """pycocotools' index of the detections (``loadRes`` cannot take an empty list)."""
    if results:
        return coco_gt.loadRes(results)
    return ground_truth_index({'images': coco_gt.dataset['images'],
                               'categories': coco_gt.dataset['categories'], 'annotations': []})


def evaluate(coco_gt, results):
    """Run COCOeval (bbox) of ``results`` (a ``coco_results`` list) against ``coco_gt`` (a ``COCO``); prints
    pycocotools' summary and returns ``{name: value}`` for ``SUMMARY_NAMES`` (-1 where the ground truth
    has no object of that size)."""
    evaluator = COCOeval(coco_gt, _detections_index(coco_gt, results), iouType='bbox')
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return {name: float(value) for name, value in zip(SUMMARY_NAMES, evaluator.stats)}


def save_evaluation(path, imdb_name, summary, results_file):
    """Write the summary JSON: imdb, metric, the 12 numbers, and where the results JSON is."""
    write_json_atomic(path, {'imdb': imdb_name, 'metric': 'COCO bbox (pycocotools)', 'summary': summary,
                             'results_file': results_file}, indent=2)


def voc_ground_truth(annotations, classes):
    """COCO ground truth of a VOC-format image set (see the module doc).

    ``annotations``: ``pascal_voc.annotations()`` (``widths``, ``heights``, ``boxes`` M x 4 0-based,
    ``gt_classes``, ``difficult``, ``offsets``); ``classes``: the imdb's class names. Image ids are
    positions 0..N-1, category ids the class indices 1..K-1.
    """
    images = [{'id': i, 'width': int(w), 'height': int(h)}
              for i, (w, h) in enumerate(zip(annotations['widths'], annotations['heights']))]
    offsets = annotations['offsets']
    bboxes = roidb_box_to_coco(annotations['boxes'])
    anns = []
    for i in range(len(images)):
        for row in range(int(offsets[i]), int(offsets[i + 1])):
            x, y, w, h = (float(v) for v in bboxes[row])
            anns.append({'id': len(anns) + 1, 'image_id': i,
                         'category_id': int(annotations['gt_classes'][row]), 'bbox': [x, y, w, h],
                         'area': w * h, 'iscrowd': int(annotations['difficult'][row])})
    categories = [{'id': k, 'name': name} for k, name in enumerate(classes) if k > 0]
    return {'images': images, 'annotations': anns, 'categories': categories}


def is_coco_format(imdb):
    """True for imdbs read from COCO JSON (their own evaluation is COCO's): they have
    ``coco_ground_truth()``."""
    return hasattr(imdb, 'coco_ground_truth')


def coco_view(imdb):
    """``(COCO ground truth, image ids, category ids)`` of an imdb: a COCO-format imdb's own
    (``coco_ground_truth()``), a VOC-format one's converted by ``voc_ground_truth``. ``image_ids[i]`` is
    image ``i``'s COCO id, ``category_ids[k]`` class ``k``'s."""
    if is_coco_format(imdb):
        return imdb.coco_ground_truth()
    gt = voc_ground_truth(imdb.annotations(), imdb.classes)
    return ground_truth_index(gt), list(range(imdb.num_images)), list(range(imdb.num_classes))


def evaluate_imdb(imdb, all_boxes, output_dir):
    """COCO evaluation of ``all_boxes`` (``all_boxes[class][image]``: N x 5 ``[x1, y1, x2, y2, score]``)
    on ``imdb``. Writes ``<output_dir>/detections_<name>_results.json`` (COCO results) and
    ``<output_dir>/<name>_coco_eval.json`` (the 12 numbers); prints pycocotools' summary; returns
    ``{name: value}`` for ``SUMMARY_NAMES``."""
    coco_gt, image_ids, category_ids = coco_view(imdb)
    results = coco_results(all_boxes, image_ids, category_ids)
    os.makedirs(output_dir, exist_ok=True)
    results_file = osp.join(output_dir, f'detections_{imdb.name}_results.json')
    write_json_atomic(results_file, results)
    print(f'COCO evaluation of {len(results)} detections on {imdb.name} (pycocotools):', flush=True)
    summary = evaluate(coco_gt, results)
    save_evaluation(osp.join(output_dir, f'{imdb.name}_coco_eval.json'), imdb.name, summary, results_file)
    return summary
