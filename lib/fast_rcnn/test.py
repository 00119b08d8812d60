"""Detection with a trained Faster R-CNN / Fast R-CNN net, post-processing and VOC evaluation.

Boxes are ``[x1, y1, x2, y2]``, 0-based, pixel-inclusive, in original-image coordinates unless a name
says otherwise. ``im_detect`` returns raw per-class scores and decoded boxes; ``test_net`` applies the
released post-processing (per-class score threshold, per-class NMS, a cap per image) and evaluates.

Timing: each forward pass is split into three segments run with ``net.forward(start=..., end=...)``:
*conv+RPN* (every layer before the proposal layer), *proposal* (the proposal layer alone) and
*region-wise* (the proposal layer's successors: RoI pooling and the head). For a net without an RPN the
split point is the RoI pooling layer and the proposal segment is empty. Splitting a forward pass this way
computes exactly what one ``net.forward()`` computes.
"""

import dataclasses
import os
import os.path as osp
import time

import cv2
import numpy as np

from fast_rcnn.bbox_transform import bbox_transform_inv, clip_boxes
from fast_rcnn.config import cfg, get_output_dir
from fast_rcnn.models import ROI_POOLING_TYPE
from fast_rcnn.nms_wrapper import nms, nms_gpu_id
from utils.blob import im_list_to_blob, prep_im_for_blob
from utils.fileio import atomic_write, write_json_atomic
from utils.image import read_image
from utils.timer import Timer, format_eta

# The released models' blob names.
PROPOSAL_TOP = 'rois'
# Segment names of a timed forward pass, in execution order.
SEGMENTS = ('conv+RPN', 'proposal', 'region-wise')
# Multi-scale Fast R-CNN testing maps each RoI to the scale where its area is closest to 224² (released).
_CANONICAL_ROI_AREA = 224 * 224
# Hash weights for de-duplicating RoIs on the DEDUP_BOXES grid (five coordinates incl. the batch index).
_DEDUP_HASH = np.array([1, 1e3, 1e6, 1e9, 1e12])


@dataclasses.dataclass(frozen=True)
class DetectSettings:
    """What detection reads from the configuration, read once (``detect_settings``) and passed down.

    ``scales`` / ``max_size``: test image pyramid (``cfg.TEST.SCALES`` / ``MAX_SIZE``); ``pixel_means``:
    1×1×3 BGR means; ``has_rpn``: the net makes its own proposals; ``bbox_reg``: decode ``bbox_pred``;
    ``svm``: score with ``cls_score`` instead of ``cls_prob``; ``dedup_boxes``: the RoI de-duplication
    grid (0: off); ``nms``: post-processing NMS threshold; ``gpu_id``: the device tested on (-1: CPU);
    ``nms_gpu_id``: where NMS runs (-1: CPU).
    """
    scales: tuple
    max_size: int
    pixel_means: np.ndarray
    has_rpn: bool
    bbox_reg: bool
    svm: bool
    dedup_boxes: float
    nms: float
    gpu_id: int
    nms_gpu_id: int


def detect_settings(config):
    """``DetectSettings`` from ``config`` (``cfg``, with its ``TEST`` section)."""
    return DetectSettings(scales=tuple(config.TEST.SCALES), max_size=config.TEST.MAX_SIZE,
                          pixel_means=config.PIXEL_MEANS, has_rpn=bool(config.TEST.HAS_RPN),
                          bbox_reg=bool(config.TEST.BBOX_REG), svm=bool(config.TEST.SVM),
                          dedup_boxes=config.DEDUP_BOXES, nms=config.TEST.NMS, gpu_id=config.GPU_ID,
                          nms_gpu_id=nms_gpu_id(config))


def get_image_blob(im, scales, max_size, pixel_means):
    """Build the image pyramid blob.

    ``im``: H×W×3 BGR uint8. Returns ``(blob, im_scales)``: blob N×3×H'×W' float32 (one image per
    entry of ``scales``, mean-subtracted with ``pixel_means``, 1×1×3 BGR) and an array of the N scale
    factors.
    """
    processed, im_scales = [], []
    for target_size in scales:
        im_scaled, im_scale = prep_im_for_blob(im, pixel_means, target_size, max_size)
        processed.append(im_scaled)
        im_scales.append(im_scale)
    return im_list_to_blob(processed), np.array(im_scales)


def _project_rois(im_rois, im_scales):
    """Map original-image RoIs (R×4) onto the pyramid.

    Returns ``(rois, levels)``: R×4 float scaled boxes and R int pyramid levels (one level when there is
    one scale; otherwise the level where the scaled area is closest to 224², as released).
    """
    im_rois = im_rois.astype(np.float64, copy=False)
    if len(im_scales) > 1:
        widths = im_rois[:, 2] - im_rois[:, 0] + 1
        heights = im_rois[:, 3] - im_rois[:, 1] + 1
        scaled_areas = (widths * heights)[:, np.newaxis] * (im_scales[np.newaxis, :] ** 2)
        levels = np.argmin(np.abs(scaled_areas - _CANONICAL_ROI_AREA), axis=1)
    else:
        levels = np.zeros(len(im_rois), dtype=np.int64)
    return im_rois * im_scales[levels][:, np.newaxis], levels


def _get_blobs(im, rois, settings):
    """Input blobs for ``im`` (H×W×3 BGR) and optional proposals ``rois`` (R×4, original image), with the
    pyramid of ``settings`` (``DetectSettings``).

    Returns ``(blobs, im_scales)``; ``blobs`` holds ``data`` and either ``im_info`` (1×3: height, width,
    scale of the scaled image; RPN nets) or ``rois`` (R×5: level, x1, y1, x2, y2; Fast R-CNN nets).
    """
    data, im_scales = get_image_blob(im, settings.scales, settings.max_size, settings.pixel_means)
    blobs = {'data': data}
    if rois is None:
        if len(im_scales) != 1:
            raise ValueError(f'an RPN net is tested at one scale; TEST.SCALES = {settings.scales}')
        blobs['im_info'] = np.array([[data.shape[2], data.shape[3], im_scales[0]]], dtype=np.float32)
    else:
        scaled, levels = _project_rois(rois, im_scales)
        blobs['rois'] = np.hstack((levels[:, np.newaxis], scaled)).astype(np.float32)
    return blobs, im_scales


def _segment_bounds(net):
    """Layer-index ranges ``[(start, end), ...]`` (inclusive) for the three SEGMENTS of ``net``.

    The split point is the Python layer producing ``rois`` (an RPN net's proposal layer), else the first RoI
    pooling layer (the proposal segment is then empty: ``None``).
    """
    names = list(net._layer_names)
    tops = net.top_names
    proposal = next((i for i, name in enumerate(names)
                     if net.layers[i].type == 'Python' and PROPOSAL_TOP in tops[name]), None)
    if proposal is not None:
        return [(0, proposal - 1), (proposal, proposal), (proposal + 1, len(names) - 1)]
    pool = next((i for i, layer in enumerate(net.layers) if layer.type == ROI_POOLING_TYPE), None)
    if pool is None:
        raise ValueError(f'net {net.name!r} has neither a layer producing {PROPOSAL_TOP!r} nor RoI pooling')
    return [(0, pool - 1), None, (pool, len(names) - 1)]


def forward_timed(net, blobs, timers=None):
    """Run one forward pass of ``net`` on input ``blobs`` (name → array) in the three SEGMENTS.

    ``timers``: optional dict segment name → ``Timer``; each segment's wall time is added to its timer.
    Returns nothing: read results from ``net.blobs``. A net of another engine (``fast_rcnn.deploy.OpenCVNet``)
    runs and times the segments itself (``net.forward_segments``).
    """
    if hasattr(net, 'forward_segments'):
        net.forward_segments(blobs, timers)
        return
    for name, value in blobs.items():
        net.blobs[name].reshape(*value.shape)
        net.blobs[name].data[...] = value
    names = list(net._layer_names)
    for segment, bounds in zip(SEGMENTS, _segment_bounds(net)):
        if bounds is None or bounds[0] > bounds[1]:
            continue
        if timers is not None:
            timers[segment].tic()
        net.forward(start=names[bounds[0]], end=names[bounds[1]])
        if timers is not None:
            timers[segment].toc()


def im_detect(net, im, boxes=None, timers=None, settings=None):
    """Detect object classes in an image.

    ``net``: a test net with a ``cls_prob`` (or, with ``settings.svm``, ``cls_score``) blob and, when
    ``settings.bbox_reg``, a ``bbox_pred`` blob (raw deltas: the saved models fold the target
    normalisation into their weights). ``im``: H×W×3 BGR uint8. ``boxes``: R×4 proposals in
    original-image coordinates for a Fast R-CNN net; None for an RPN net (``settings.has_rpn``).
    ``timers``: optional dict as for ``forward_timed``. ``settings``: ``DetectSettings``; by default
    read from ``cfg`` at this call (callers detecting many images pass them, read once).

    Returns ``(scores, pred_boxes)``: R×K class scores and R×4K boxes (class j in columns 4j..4j+3),
    decoded from each RoI with ``bbox_transform_inv`` and clipped to the image.
    """
    settings = settings or detect_settings(cfg)
    blobs, im_scales = _get_blobs(im, None if settings.has_rpn else boxes, settings)
    inv_index = None
    if not settings.has_rpn and settings.dedup_boxes > 0:
        # Proposals that coincide on the feature grid give identical outputs: compute each once.
        hashes = np.round(blobs['rois'] * settings.dedup_boxes).dot(_DEDUP_HASH)
        _, index, inv_index = np.unique(hashes, return_index=True, return_inverse=True)
        blobs['rois'] = blobs['rois'][index]
        boxes = boxes[index]
    forward_timed(net, blobs, timers)

    if settings.has_rpn:
        # Proposals are in scaled-image pixels; one scale only.
        boxes = net.blobs[PROPOSAL_TOP].data[:, 1:5] / im_scales[0]
    scores = net.blobs['cls_score' if settings.svm else 'cls_prob'].data.copy()
    scores = scores.reshape(scores.shape[0], -1)
    if settings.bbox_reg:
        deltas = net.blobs['bbox_pred'].data.reshape(scores.shape[0], -1)
        pred_boxes = clip_boxes(bbox_transform_inv(boxes, deltas), im.shape)
    else:
        pred_boxes = np.tile(boxes, (1, scores.shape[1]))
    if inv_index is not None:
        scores, pred_boxes = scores[inv_index], pred_boxes[inv_index]
    return scores, pred_boxes


def postprocess_detections(scores, boxes, thresh, nms_thresh, max_per_image, nms_gpu_id=-1):
    """Released test-time post-processing of one image's ``im_detect`` output.

    ``scores``: R×K; ``boxes``: R×4K. Per foreground class j ≥ 1: keep RoIs with score > ``thresh``,
    apply NMS with ``nms_thresh`` (on GPU ``nms_gpu_id``, -1: the CPU); then keep the ``max_per_image``
    highest-scoring detections over all classes (ties: lower class index first, then NMS order).
    Returns a list of K float32 arrays ``[x1, y1, x2, y2, score]`` (entry 0, the background, is 0×5).
    """
    num_classes = scores.shape[1]
    dets = [np.zeros((0, 5), dtype=np.float32)]
    for j in range(1, num_classes):
        inds = np.where(scores[:, j] > thresh)[0]
        cls_dets = np.hstack((boxes[inds, 4 * j:4 * j + 4],
                              scores[inds, j, np.newaxis])).astype(np.float32, copy=False)
        # nms returns kept indices in descending score order.
        keep = nms(cls_dets, nms_thresh, nms_gpu_id) if len(cls_dets) else []
        dets.append(cls_dets[np.asarray(keep, dtype=np.int64)] if len(cls_dets) else cls_dets)
    if max_per_image > 0:
        all_scores = np.concatenate([d[:, 4] for d in dets[1:]]) if num_classes > 1 else np.zeros(0)
        if len(all_scores) > max_per_image:
            order = np.argsort(-all_scores, kind='stable')
            keep = np.zeros(len(all_scores), dtype=bool)
            keep[order[:max_per_image]] = True
            offsets = np.cumsum([0] + [len(d) for d in dets[1:]])
            dets = [dets[0]] + [d[keep[offsets[j]:offsets[j + 1]]] for j, d in enumerate(dets[1:])]
    return dets


def save_detections(path, all_boxes, image_index):
    """Write ``all_boxes[class][image]`` (N×5 float32) to a ``.npz`` (no pickle).

    The file holds ``image_index`` (str), ``dets`` (M×5 float32, all detections concatenated image-major,
    class-minor), ``classes`` (M int32) and ``images`` (M int64 image positions).
    """
    num_classes, num_images = len(all_boxes), len(image_index)
    dets, classes, images = [np.zeros((0, 5), dtype=np.float32)], [], []
    for i in range(num_images):
        for j in range(num_classes):
            d = np.asarray(all_boxes[j][i], dtype=np.float32).reshape(-1, 5)
            dets.append(d)
            classes.append(np.full(len(d), j, dtype=np.int32))
            images.append(np.full(len(d), i, dtype=np.int64))
    with atomic_write(path) as f:
        np.savez_compressed(f, image_index=np.array(image_index, dtype=str), dets=np.vstack(dets),
                            classes=np.concatenate(classes or [np.zeros(0, np.int32)]),
                            images=np.concatenate(images or [np.zeros(0, np.int64)]),
                            num_classes=np.int64(num_classes))


def load_detections(path):
    """Read a ``save_detections`` file. Returns ``(all_boxes, image_index)``."""
    with np.load(path) as f:
        image_index = [str(s) for s in f['image_index']]
        num_classes = int(f['num_classes'])
        dets, classes, images = f['dets'], f['classes'], f['images']
    all_boxes = [[dets[(classes == j) & (images == i)] for i in range(len(image_index))]
                 for j in range(num_classes)]
    return all_boxes, image_index


def draw_detections(im, dets_per_class, class_names, thresh=0.5):
    """Return a copy of ``im`` (H×W×3 BGR) with labelled boxes for detections scoring ≥ ``thresh``.

    ``dets_per_class``: list over classes of N×5 ``[x1, y1, x2, y2, score]``; ``class_names`` matches it
    (entry 0 is the background and is not drawn).
    """
    out = im.copy()
    for j in range(1, len(dets_per_class)):
        level = np.array([[int(255 * j / max(1, len(class_names) - 1))]], dtype=np.uint8)
        colour = tuple(int(c) for c in cv2.applyColorMap(level, cv2.COLORMAP_JET)[0, 0])
        for x1, y1, x2, y2, score in dets_per_class[j]:
            if score < thresh:
                continue
            p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
            cv2.rectangle(out, p1, p2, colour, 2)
            label = f'{class_names[j]} {score:.2f}'
            (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
            ty = max(p1[1], th + 4)
            cv2.rectangle(out, (p1[0], ty - th - 4), (p1[0] + tw + 2, ty), colour, -1)
            cv2.putText(out, label, (p1[0] + 1, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                        cv2.LINE_AA)
    return out


def _proposals_for_testing(imdb, has_rpn):
    """Per-image proposal boxes (N×4, gt excluded) for a Fast R-CNN net, or None for an RPN net."""
    if has_rpn:
        return None
    return [entry['boxes'][entry['gt_classes'] == 0] for entry in imdb.roidb]


def test_net(net, imdb, max_per_image=100, thresh=0.05, vis=False, settings=None):
    """Detect on every image of ``imdb``, save the detections and evaluate them.

    ``settings``: ``DetectSettings`` (default: read from ``cfg`` once, here). Post-processing per
    ``postprocess_detections`` with ``settings.nms``. Detections go to
    ``<output>/detections.npz`` (see ``save_detections``) under ``get_output_dir(imdb.name, net.name)``, the
    mean milliseconds per image of each timed segment and the regions per image to ``<output>/timing.json``;
    with ``vis`` each image's detections (score ≥ 0.5) are drawn to ``<output>/vis/<image id>.png``.
    Returns ``(all_boxes, result)`` where ``result`` is what ``imdb.evaluate_detections`` returns.
    """
    settings = settings or detect_settings(cfg)
    # Annotations (training rules) and image files are checked before any detection.
    imdb.gt_roidb()
    num_images = imdb.num_images
    all_boxes = [[None] * num_images for _ in range(imdb.num_classes)]
    output_dir = get_output_dir(imdb.name, net.name)
    proposals = _proposals_for_testing(imdb, settings.has_rpn)
    timers = {name: Timer() for name in SEGMENTS + ('misc',)}
    num_regions = []
    start = time.perf_counter()
    for i in range(num_images):
        im = read_image(imdb.image_path_at(i))  # as stored, complete (else BadImageError)
        scores, boxes = im_detect(net, im, None if proposals is None else proposals[i], timers, settings)
        num_regions.append(scores.shape[0])
        timers['misc'].tic()
        dets = postprocess_detections(scores, boxes, thresh, settings.nms, max_per_image,
                                      settings.nms_gpu_id)
        for j in range(imdb.num_classes):
            all_boxes[j][i] = dets[j]
        if vis:
            vis_dir = osp.join(output_dir, 'vis')
            os.makedirs(vis_dir, exist_ok=True)
            cv2.imwrite(osp.join(vis_dir, f'{imdb.image_index[i]}.png'),
                        draw_detections(im, dets, imdb.classes))
        timers['misc'].toc()
        if (i + 1) % 50 == 0 or i + 1 == num_images:
            elapsed = time.perf_counter() - start
            per_image = ' '.join(f'{name} {timers[name].average_time:.3f}s' for name in timers)
            print(f'im_detect: {i + 1}/{num_images} ({per_image}) '
                  f'ETA {format_eta(elapsed / (i + 1) * (num_images - i - 1))}', flush=True)
    summary = ', '.join(f'{name} {timers[name].average_time * 1000:.1f} ms' for name in timers)
    print(f'Mean time per image: {summary}; {np.mean(num_regions):.1f} regions per image', flush=True)
    timing = {'device': 'cpu' if settings.gpu_id < 0 else f'gpu {settings.gpu_id}', 'num_images': num_images,
              'regions_per_image': float(np.mean(num_regions)),
              'ms_per_image': {name: timers[name].average_time * 1000 for name in timers}}
    write_json_atomic(osp.join(output_dir, 'timing.json'), timing, indent=2)
    det_file = osp.join(output_dir, 'detections.npz')
    save_detections(det_file, all_boxes, imdb.image_index)
    print(f'Wrote detections to {det_file}', flush=True)
    print('Evaluating detections', flush=True)
    return all_boxes, imdb.evaluate_detections(all_boxes, output_dir)
