"""Build training minibatches (blobs) from roidb entries.

Boxes are ``[x1, y1, x2, y2]``, 0-based, pixel-inclusive. Random draws use numpy's global RNG (the training
driver seeds it with ``cfg.RNG_SEED``), so a minibatch sequence is reproducible.
"""

import numpy as np

from fast_rcnn.config import cfg
from utils.blob import im_list_to_blob, prep_im_for_blob
from utils.image import read_image


def sample_fg_bg_inds(max_overlaps, rois_per_image, fg_rois_per_image, fg_thresh, bg_thresh_hi,
                      bg_thresh_lo):
    """Sample foreground and background RoIs of one image, without replacement.

    ``max_overlaps``: N max IoU of each RoI with the gt boxes. Foreground: IoU ≥ ``fg_thresh``, at most
    ``fg_rois_per_image``. Background: IoU in [``bg_thresh_lo``, ``bg_thresh_hi``), filling up to
    ``rois_per_image`` (fewer when there are not enough). Returns ``(keep_inds, num_fg)``: int64 indices,
    the ``num_fg`` foreground ones first.
    """
    fg_inds = np.where(max_overlaps >= fg_thresh)[0]
    num_fg = int(min(fg_rois_per_image, fg_inds.size))
    if fg_inds.size > 0:
        fg_inds = np.random.choice(fg_inds, size=num_fg, replace=False)

    bg_inds = np.where((max_overlaps < bg_thresh_hi) & (max_overlaps >= bg_thresh_lo))[0]
    num_bg = int(min(rois_per_image - num_fg, bg_inds.size))
    if bg_inds.size > 0:
        bg_inds = np.random.choice(bg_inds, size=num_bg, replace=False)
    return np.concatenate([fg_inds, bg_inds]).astype(np.int64), num_fg


def expand_bbox_targets(bbox_target_data, num_classes, inside_weights):
    """Expand compact targets to the class-specific 4-of-4K layout of the ``bbox_pred`` output.

    ``bbox_target_data``: N×5 ``[class, dx, dy, dw, dh]``. Returns ``(bbox_targets, bbox_inside_weights)``,
    both N×4K float32: row i holds its 4 targets and ``inside_weights`` in columns 4c..4c+3 of its class c;
    background rows (c = 0) and all other columns are 0.
    """
    clss = bbox_target_data[:, 0].astype(np.int64)
    bbox_targets = np.zeros((clss.size, 4 * num_classes), dtype=np.float32)
    bbox_inside_weights = np.zeros_like(bbox_targets)
    for i in np.where(clss > 0)[0]:
        start = 4 * clss[i]
        bbox_targets[i, start:start + 4] = bbox_target_data[i, 1:]
        bbox_inside_weights[i, start:start + 4] = inside_weights
    return bbox_targets, bbox_inside_weights


def get_image_blob(roidb, scale_inds, scales, max_size, pixel_means):
    """Load, flip (for flipped entries), mean-subtract and scale the images of ``roidb``.

    Image i is scaled to ``scales[scale_inds[i]]`` on its short side (long side ≤ ``max_size``).
    Returns ``(blob N×3×H×W float32, im_scales list of N floats)``.
    """
    processed_ims = []
    im_scales = []
    for entry, scale_ind in zip(roidb, scale_inds):
        # As stored (no EXIF rotation), complete, and of the annotated size (else BadImageError).
        im = read_image(entry['image'], (entry['width'], entry['height']))
        if entry['flipped']:
            im = im[:, ::-1, :]
        im, im_scale = prep_im_for_blob(im, pixel_means, scales[scale_ind], max_size)
        processed_ims.append(im)
        im_scales.append(im_scale)
    return im_list_to_blob(processed_ims), im_scales


def sample_image_rois(entry, rois_per_image, fg_rois_per_image, num_classes, fg_thresh, bg_thresh_hi,
                      bg_thresh_lo, inside_weights):
    """Sample one image's RoIs from its roidb ``entry`` (needs ``max_overlaps``, ``max_classes``,
    ``bbox_targets``). Returns ``(labels S int, rois S×4 float32 original-image pixels,
    bbox_targets S×4K float32, bbox_inside_weights S×4K float32)``, foreground first, background labels 0.
    """
    keep_inds, num_fg = sample_fg_bg_inds(entry['max_overlaps'], rois_per_image, fg_rois_per_image,
                                          fg_thresh, bg_thresh_hi, bg_thresh_lo)
    labels = entry['max_classes'][keep_inds].copy()
    labels[num_fg:] = 0
    bbox_targets, bbox_inside_weights = expand_bbox_targets(entry['bbox_targets'][keep_inds],
                                                            num_classes, inside_weights)
    return labels, entry['boxes'][keep_inds], bbox_targets, bbox_inside_weights


def gt_boxes_blob(entry, im_scale):
    """The gt boxes of ``entry`` scaled by ``im_scale``: G×5 float32 ``[x1, y1, x2, y2, class]``
    (G = 0 for an image without objects)."""
    gt_inds = np.where(entry['gt_classes'] != 0)[0]
    gt_boxes = np.empty((len(gt_inds), 5), dtype=np.float32)
    gt_boxes[:, :4] = entry['boxes'][gt_inds] * im_scale
    gt_boxes[:, 4] = entry['gt_classes'][gt_inds]
    return gt_boxes


def shuffled_image_order(widths, heights, ims_per_batch, aspect_grouping):
    """A random visiting order of the images, as an int64 permutation of range(N).

    With ``aspect_grouping`` (released behaviour), landscape (w ≥ h) and portrait images are shuffled
    separately, concatenated and cut into consecutive groups of ``ims_per_batch``, and the groups are
    shuffled: every group holds one orientation except at most one mixed group at the seam. A trailing
    incomplete group stays last (the data layer never starts a batch it cannot fill). Uses numpy's global RNG.
    """
    num_images = len(widths)
    if not aspect_grouping:
        return np.random.permutation(num_images)
    landscape = np.asarray(widths) >= np.asarray(heights)
    inds = np.concatenate([np.random.permutation(np.where(landscape)[0]),
                           np.random.permutation(np.where(~landscape)[0])])
    num_full = num_images // ims_per_batch
    groups = inds[:num_full * ims_per_batch].reshape(num_full, ims_per_batch)
    groups = groups[np.random.permutation(num_full)]
    return np.concatenate([groups.ravel(), inds[num_full * ims_per_batch:]]).astype(np.int64)


def get_minibatch(roidb, num_classes):
    """Blobs for one minibatch of the images in ``roidb``, using ``cfg.TRAIN``.

    Each image gets a random scale from ``cfg.TRAIN.SCALES``. RPN mode (``cfg.TRAIN.HAS_RPN``, one image):
    ``data``, ``im_info`` (1×3: height, width, scale), ``gt_boxes`` (G×5). Fast R-CNN mode: ``data``,
    ``rois`` (R×5 ``[image index, x1, y1, x2, y2]`` scaled), ``labels`` (R), and with
    ``cfg.TRAIN.BBOX_REG`` ``bbox_targets``, ``bbox_inside_weights``, ``bbox_outside_weights`` (R×4K);
    each image contributes up to BATCH_SIZE / len(roidb) RoIs, at most FG_FRACTION of them foreground.
    Returns a dict of float32 arrays.
    """
    num_images = len(roidb)
    scale_inds = np.random.randint(0, high=len(cfg.TRAIN.SCALES), size=num_images)
    im_blob, im_scales = get_image_blob(roidb, scale_inds, cfg.TRAIN.SCALES, cfg.TRAIN.MAX_SIZE,
                                        cfg.PIXEL_MEANS)
    blobs = {'data': im_blob}

    if cfg.TRAIN.HAS_RPN:
        if num_images != 1:
            raise ValueError(f'RPN training takes one image per minibatch, got {num_images}')
        blobs['gt_boxes'] = gt_boxes_blob(roidb[0], im_scales[0])
        blobs['im_info'] = np.array([[im_blob.shape[2], im_blob.shape[3], im_scales[0]]], dtype=np.float32)
        return blobs

    if cfg.TRAIN.BATCH_SIZE % num_images != 0:
        raise ValueError(f'TRAIN.BATCH_SIZE ({cfg.TRAIN.BATCH_SIZE}) must be a multiple of the number of '
                         f'images per batch ({num_images})')
    rois_per_image = cfg.TRAIN.BATCH_SIZE // num_images
    fg_rois_per_image = int(np.round(cfg.TRAIN.FG_FRACTION * rois_per_image))

    rois, labels, bbox_targets, bbox_inside_weights = [], [], [], []
    for im_i, entry in enumerate(roidb):
        im_labels, im_rois, im_targets, im_inside = sample_image_rois(
            entry, rois_per_image, fg_rois_per_image, num_classes, cfg.TRAIN.FG_THRESH,
            cfg.TRAIN.BG_THRESH_HI, cfg.TRAIN.BG_THRESH_LO, cfg.TRAIN.BBOX_INSIDE_WEIGHTS)
        batch_ind = np.full((im_rois.shape[0], 1), im_i, dtype=np.float32)
        rois.append(np.hstack([batch_ind, im_rois * im_scales[im_i]]))
        labels.append(im_labels)
        bbox_targets.append(im_targets)
        bbox_inside_weights.append(im_inside)

    blobs['rois'] = np.vstack(rois).astype(np.float32, copy=False)
    blobs['labels'] = np.concatenate(labels).astype(np.float32)
    if cfg.TRAIN.BBOX_REG:
        blobs['bbox_targets'] = np.vstack(bbox_targets)
        blobs['bbox_inside_weights'] = np.vstack(bbox_inside_weights)
        blobs['bbox_outside_weights'] = (blobs['bbox_inside_weights'] > 0).astype(np.float32)
    return blobs
