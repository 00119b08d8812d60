"""Scene rendering for the embedded synthetic detection dataset (used by make_synth_dataset.py).

An image is a textured, noisy background with distractor clutter (lines, strokes) and
0-6 objects of six shape classes drawn with OpenCV in random colours. Objects are drawn in order, later ones
over earlier ones. Boxes are 0-based, pixel-inclusive ``[x1, y1, x2, y2]``, the tight box of an object's
VISIBLE pixels (as VOC annotates the visible extent).

Annotation rule (per object, after all objects are drawn):
- visible fraction = visible pixels / pixels of the full shape;
- visible fraction < DROP_VISIBLE_FRACTION: the object is not annotated (what shows is a small fragment);
- visible fraction < DIFFICULT_VISIBLE_FRACTION (more than 40 % occluded) or the visible box's shorter side
  < DIFFICULT_MIN_SIDE pixels: annotated with difficult = 1 (ignored by VOC evaluation);
- otherwise annotated as a normal object.
Placement tries a few positions and keeps the one that hides the least of the objects already drawn (the
first hiding at most ACCEPTED_OCCLUSION of any), so heavy occlusion happens but is not the rule.

Version 5 made the scenes cleaner than version 3 (at most 6 objects instead of 8, aspect ratios 1/2-2
instead of 1/3-3, occlusion accepted up to 25 % instead of 50 %, fewer distractors and no filled blobs
among them, difficult below 60 % visible instead of 40 %): the embedded dataset exists to show that the
pipeline learns within minutes on a CPU, and on version 3 the TINY detector was limited by ambiguous,
heavily occluded fragments (see experiments/README.md for both).
"""

import cv2
import numpy as np

# Shape classes in the order of datasets.synth.SYNTH_CLASSES (without the background).
SHAPES = ('circle', 'ring', 'triangle', 'rectangle', 'cross', 'star')

IMAGE_SIDE_RANGE = (300, 500)          # each of width and height, uniform
NO_OBJECT_PROBABILITY = 0.05           # images without objects
MAX_OBJECTS = 6                        # otherwise 1..MAX_OBJECTS, uniform
OBJECT_SCALE_MIN = 22                  # sqrt(w * h) of the full shape box, log-uniform from here ...
OBJECT_SCALE_MAX_FRACTION = 0.8        # ... up to this fraction of the image's shorter side
ASPECT_RANGE = (1 / 2, 2)              # w / h, log-uniform
PLACEMENT_TRIES = 12
ACCEPTED_OCCLUSION = 0.25              # a placement hiding at most this much of an object is taken
CLUTTER_BELOW = (1, 5)                 # distractors drawn before the objects (count, uniform) ...
CLUTTER_ABOVE = (0, 1)                 # ... and after them, crossing objects
DROP_VISIBLE_FRACTION = 0.15
DIFFICULT_VISIBLE_FRACTION = 0.6
DIFFICULT_MIN_SIDE = 14
MIN_COLOUR_CONTRAST = 90               # BGR distance between an object and the background under it
POLY_SHIFT = 4                         # fractional bits of polygon vertices (sub-pixel accuracy)


def unit_polygons(shape, rng):
    """Outline(s) of ``shape`` in the unit square, stretched to touch all four sides.

    Returns ``(fill, holes)``: lists of K x 2 float arrays of (u, v) in [0, 1]; holes are cut out of fill.
    """
    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    ellipse = np.stack([0.5 + 0.5 * np.cos(theta), 0.5 + 0.5 * np.sin(theta)], axis=1)
    if shape == 'circle':
        return [ellipse], []
    if shape == 'ring':
        inner = 0.5 + (ellipse - 0.5) * rng.uniform(0.45, 0.62)
        return [ellipse], [inner]
    if shape == 'triangle':
        tri = np.array([[0.5, 0.0], [1.0, 1.0], [0.0, 1.0]])
        orientation = rng.integers(4)  # apex up / down / left / right
        if orientation == 1:
            tri[:, 1] = 1 - tri[:, 1]
        elif orientation >= 2:
            tri = tri[:, ::-1].copy()
            if orientation == 3:
                tri[:, 0] = 1 - tri[:, 0]
        return [tri], []
    if shape == 'rectangle':
        return [np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])], []
    if shape == 'cross':
        a = rng.uniform(0.3, 0.4) / 2  # half arm thickness, relative to each side
        lo, hi = 0.5 - a, 0.5 + a
        plus = np.array([[lo, 0], [hi, 0], [hi, lo], [1, lo], [1, hi], [hi, hi], [hi, 1], [lo, 1],
                         [lo, hi], [0, hi], [0, lo], [lo, lo]], dtype=np.float64)
        return [plus], []
    if shape == 'star':
        angles = rng.uniform(0, 2 * np.pi) + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
        star = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        star = (star - star.min(axis=0)) / (star.max(axis=0) - star.min(axis=0))
        return [star], []
    raise ValueError(f'unknown shape {shape!r}')


def shape_mask(shape, width, height, rng):
    """Binary mask (height x width uint8, 0/1) of ``shape`` stretched over a width x height box."""
    fill, holes = unit_polygons(shape, rng)
    scale = np.array([width - 1, height - 1]) * (1 << POLY_SHIFT)
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(p * scale).astype(np.int32) for p in fill], 1, cv2.LINE_8, POLY_SHIFT)
    if holes:
        cv2.fillPoly(mask, [np.round(p * scale).astype(np.int32) for p in holes], 0, cv2.LINE_8, POLY_SHIFT)
    return mask


def random_colour(rng, saturation=(0.35, 1.0), value=(0.3, 1.0)):
    """A random BGR colour (float64, 0..255) from HSV ranges."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(*value) * 255]]],
                   dtype=np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0].astype(np.float64)


def background(width, height, rng):
    """Textured noisy background (height x width x 3 float32): a base colour, a smooth colour field,
    sometimes stripes, and pixel noise."""
    base = random_colour(rng, saturation=(0.0, 0.6), value=(0.2, 0.9))
    gw, gh = rng.integers(3, 9, size=2)
    field = rng.normal(0, 28, size=(gh, gw, 3)).astype(np.float32)
    im = base.astype(np.float32) + cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.3:
        period = rng.uniform(6, 30)
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:height, 0:width]
        stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        im += (stripes * rng.uniform(5, 18)).astype(np.float32)[:, :, None]
    im += rng.normal(0, rng.uniform(3, 10), size=im.shape).astype(np.float32)
    return im


def draw_clutter(im, rng, count):
    """Draw ``count`` distractors (straight lines, curvy strokes) into ``im`` in place.

    Thin structures only: filled blobs (version 3 had them) were too often read as small circles.
    """
    height, width = im.shape[:2]
    for _ in range(count):
        colour = random_colour(rng).tolist()
        if rng.random() < 0.5:
            p, q = rng.integers(0, [width, height], size=(2, 2))
            cv2.line(im, tuple(int(v) for v in p), tuple(int(v) for v in q), colour, int(rng.integers(1, 4)),
                     cv2.LINE_AA)
        else:
            n = int(rng.integers(3, 7))
            start = rng.uniform([0, 0], [width, height])
            pts = start + np.cumsum(rng.normal(0, 25, size=(n, 2)), axis=0)
            cv2.polylines(im, [np.round(pts).astype(np.int32)], False, colour, int(rng.integers(1, 5)),
                          cv2.LINE_AA)


def contrasting_colour(rng, region_mean):
    """A random colour at least MIN_COLOUR_CONTRAST away from ``region_mean`` (best of 20 draws)."""
    best, best_dist = None, -1.0
    for _ in range(20):
        colour = random_colour(rng)
        dist = float(np.linalg.norm(colour - region_mean))
        if dist > best_dist:
            best, best_dist = colour, dist
        if dist >= MIN_COLOUR_CONTRAST:
            break
    return best


def sample_shape_box(rng, width, height):
    """Full shape box size ``(w, h)`` in pixels: log-uniform scale and aspect, kept inside the image."""
    smax = OBJECT_SCALE_MAX_FRACTION * min(width, height)
    scale = np.exp(rng.uniform(np.log(OBJECT_SCALE_MIN), np.log(smax)))
    aspect = np.exp(rng.uniform(np.log(ASPECT_RANGE[0]), np.log(ASPECT_RANGE[1])))
    w = int(np.clip(round(scale * np.sqrt(aspect)), 8, width - 2))
    h = int(np.clip(round(scale / np.sqrt(aspect)), 8, height - 2))
    return w, h


def place(mask, idmap, visible, rng):
    """Top-left ``(x0, y0)`` for ``mask`` that hides the smallest fraction of any drawn object.

    ``idmap``: H x W int32 (0 background, k + 1 = object k on top), ``visible``: visible pixels per object.
    """
    height, width = idmap.shape
    h, w = mask.shape
    best, best_cost = None, np.inf
    for _ in range(PLACEMENT_TRIES):
        x0 = int(rng.integers(0, width - w + 1))
        y0 = int(rng.integers(0, height - h + 1))
        covered = np.bincount(idmap[y0:y0 + h, x0:x0 + w][mask > 0], minlength=len(visible) + 1)[1:]
        cost = float((covered / np.maximum(visible, 1)).max()) if len(visible) else 0.0
        if cost < best_cost:
            best, best_cost = (x0, y0), cost
        if cost <= ACCEPTED_OCCLUSION:
            break
    return best


def render_scene(rng):
    """Render one image. Returns ``(image H x W x 3 uint8 BGR, objects, num_dropped)`` with ``objects`` a
    list of ``{'name', 'box' [x1, y1, x2, y2] 0-based ints, 'difficult' bool}`` in drawing order."""
    width, height = (int(v) for v in rng.integers(IMAGE_SIDE_RANGE[0], IMAGE_SIDE_RANGE[1] + 1, size=2))
    im = background(width, height, rng)
    draw_clutter(im, rng, int(rng.integers(CLUTTER_BELOW[0], CLUTTER_BELOW[1] + 1)))
    num_objects = 0 if rng.random() < NO_OBJECT_PROBABILITY else int(rng.integers(1, MAX_OBJECTS + 1))

    idmap = np.zeros((height, width), dtype=np.int32)
    names, areas, visible = [], [], np.zeros(0, dtype=np.int64)
    for k in range(num_objects):
        name = SHAPES[rng.integers(len(SHAPES))]
        w, h = sample_shape_box(rng, width, height)
        mask = shape_mask(name, w, h, rng)
        x0, y0 = place(mask, idmap, visible, rng)
        region = (slice(y0, y0 + h), slice(x0, x0 + w))
        on = mask > 0
        colour = contrasting_colour(rng, im[region][on].mean(axis=0))
        # a mild brightness ramp across the object, so surfaces are not perfectly flat
        ramp = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.2), w if rng.random() < 0.5 else h)
        shade = ramp[None, :] if ramp.size == w else ramp[:, None]
        im[region][on] = (colour[None, :] * np.broadcast_to(shade, (h, w))[on][:, None]).astype(np.float32)
        covered = np.bincount(idmap[region][on], minlength=k + 1)[1:]
        visible = np.append(visible - covered, on.sum())
        idmap[region][on] = k + 1
        names.append(name)
        areas.append(int(on.sum()))

    # a few thin lines over everything: clutter that also crosses objects
    draw_clutter(im, rng, int(rng.integers(CLUTTER_ABOVE[0], CLUTTER_ABOVE[1] + 1)))
    objects, dropped = annotate(idmap, names, areas)
    im += rng.normal(0, 3, size=im.shape).astype(np.float32)
    return np.clip(im, 0, 255).astype(np.uint8), objects, dropped


def annotate(idmap, names, areas):
    """Apply the annotation rule (module docstring) to the final ``idmap``. Returns ``(objects, dropped)``."""
    objects, dropped = [], 0
    for k, (name, area) in enumerate(zip(names, areas)):
        ys, xs = np.nonzero(idmap == k + 1)
        fraction = xs.size / area
        if fraction < DROP_VISIBLE_FRACTION:
            dropped += 1
            continue
        box = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
        short_side = min(box[2] - box[0] + 1, box[3] - box[1] + 1)
        objects.append({'name': name, 'box': box,
                        'difficult': bool(fraction < DIFFICULT_VISIBLE_FRACTION
                                          or short_side < DIFFICULT_MIN_SIDE)})
    return objects, dropped
