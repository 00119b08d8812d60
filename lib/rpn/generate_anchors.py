"""Reference anchors and their tiling over a feature map.

Boxes are ``[x1, y1, x2, y2]``, 0-based, pixel-inclusive (width = x2 − x1 + 1).
"""

import numpy as np


def generate_anchors(base_size=16, ratios=(0.5, 1, 2), scales=(8, 16, 32)):
    """Reference anchors centred on the base box ``(0, 0, base_size − 1, base_size − 1)``.

    For each aspect ratio r (= h / w) the base area is kept: ``w = round(sqrt(area / r))``,
    ``h = round(w · r)`` (numpy rounding, half to even), then both are multiplied by each scale about
    the base centre. Returns a (len(ratios)·len(scales))×4 float64 array, ratio-major
    (all scales of ratios[0] first). The defaults give the released 9 anchors,
    first (−84, −40, 99, 55), fifth (−120, −120, 135, 135).
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    ctr = 0.5 * (base_size - 1)
    area = float(base_size * base_size)
    ratio_ws = np.round(np.sqrt(area / ratios))
    ratio_hs = np.round(ratio_ws * ratios)
    ws = np.outer(ratio_ws, scales).ravel()
    hs = np.outer(ratio_hs, scales).ravel()
    return np.stack([ctr - 0.5 * (ws - 1), ctr - 0.5 * (hs - 1),
                     ctr + 0.5 * (ws - 1), ctr + 0.5 * (hs - 1)], axis=1)


def shifted_anchors(anchors, height, width, feat_stride):
    """Tile the reference ``anchors`` (A×4) over a ``height``×``width`` feature map.

    The anchors of cell (h, w) are shifted by (w·feat_stride, h·feat_stride) in image pixels.
    Returns an (H·W·A)×4 float64 array in (h, w, a) order, a fastest: row (h·W + w)·A + a.
    """
    shift_x, shift_y = np.meshgrid(np.arange(width) * feat_stride, np.arange(height) * feat_stride)
    shifts = np.stack([shift_x.ravel(), shift_y.ravel(), shift_x.ravel(), shift_y.ravel()], axis=1)
    all_anchors = np.asarray(anchors, dtype=np.float64)[np.newaxis, :, :] + shifts[:, np.newaxis, :]
    return all_anchors.reshape(-1, 4)


def anchors_from_layer_params(layer_params):
    """Reference anchors for a layer's parsed param_str: its optional ``scales`` / ``ratios`` entries
    override ``generate_anchors``' defaults. Returns an A×4 float64 array."""
    overrides = {key: layer_params[key] for key in ('scales', 'ratios') if key in layer_params}
    return generate_anchors(**overrides)
