"""Generated VOC-layout datasets that mimic what annotation tools export (no third-party files).

``write_quirks_dataset(base)``: a 0-based exporter's output (``coordinates: auto`` must find 0-based),
classes apple / pear, no ImageSets (split rule), negatives allowed:

  id      image              size  written     objects (as written, 0-based)
  a01     a01.jpg  40 x 30   yes   ints        apple [0, 0, 10, 10] (a coordinate of 0), pear [20, 5, 40, 30]
                                               (reaches width and height: 1 px past the last pixel, clipped)
  a02     a02.JPG  40 x 30   no    floats      apple [81.0 ...]-style floats: [5.0, 6.5, 20.5, 25.0]
  a03     a03.jpeg 40 x 30   yes   no <difficult>/<truncated>/<pose>: pear [1, 2, 30, 20]
  a04     a04.png  32 x 24   yes   apple [3, 3, 12, 12] difficult, truncated
  a05     photo_5.jpg        yes   <filename> photo_5.jpg differs from the XML's name: pear [2, 2, 9, 9]
  neg1    neg1.jpg 40 x 30   (no XML: a negative)

``write_broken_dataset(base)``: split files (with extensions and errors) and every error the checker
reports; ``write_clean_dataset(base, n)``: ``n`` plain images with rectangles, for the smoke run.
"""

import cv2
import numpy as np

QUIRK_CLASSES = ('apple', 'pear')


def xml_text(objects, size=None, filename=None, tags=True):
    """An exporter-style XML. ``objects``: (name, (xmin, ymin, xmax, ymax) as strings or numbers,
    difficult, truncated); ``size``: (width, height) or None for no ``<size>``; ``tags``: write
    ``<pose>``, ``<truncated>`` and ``<difficult>``."""
    head = f'<filename>{filename}</filename>' if filename else ''
    if size is not None:
        head += f'<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>'
    body = ''
    for name, box, difficult, truncated in objects:
        extra = (f'<pose>Unspecified</pose><truncated>{truncated}</truncated>'
                 f'<difficult>{difficult}</difficult>' if tags else '')
        body += (f'<object><name>{name}</name>{extra}<bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>'
                 f'<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>')
    return f'<annotation><folder>export</folder>{head}{body}</annotation>\n'


def write_image(path, width, height, boxes=()):
    """A grey image with white rectangles at 0-based ``boxes``."""
    im = np.full((height, width, 3), 90, np.uint8)
    for x1, y1, x2, y2 in boxes:
        im[int(y1):int(y2) + 1, int(x1):int(x2) + 1] = 255
    assert cv2.imwrite(str(path), im)


def _layout(base):
    for sub in ('Annotations', 'JPEGImages'):
        (base / sub).mkdir(parents=True, exist_ok=True)


def write_quirks_dataset(base, yml_extra=''):
    """The quirks dataset under ``base`` and its dataset file ``base/quirks.yml`` (returned)."""
    _layout(base)
    ann, img = base / 'Annotations', base / 'JPEGImages'
    write_image(img / 'a01.jpg', 40, 30)
    (ann / 'a01.xml').write_text(xml_text([('apple', (0, 0, 10, 10), 0, 0), ('pear', (20, 5, 40, 30), 0, 0)],
                                          (40, 30), 'a01.jpg'))
    write_image(img / 'a02.JPG', 40, 30)
    (ann / 'a02.xml').write_text(xml_text([('apple', ('5.0', '6.5', '20.5', '25.0'), 0, 0)], None, 'a02.JPG'))
    write_image(img / 'a03.jpeg', 40, 30)
    (ann / 'a03.xml').write_text(xml_text([('pear', (1, 2, 30, 20), 0, 0)], (40, 30), 'a03.jpeg', tags=False))
    write_image(img / 'a04.png', 32, 24)
    (ann / 'a04.xml').write_text(xml_text([('apple', (3, 3, 12, 12), 1, 1)], (32, 24), 'a04.png'))
    write_image(img / 'photo_5.jpg', 40, 30)
    (ann / 'a05.xml').write_text(xml_text([('pear', (2, 2, 9, 9), 0, 0)], (40, 30), 'photo_5.jpg'))
    write_image(img / 'neg1.jpg', 40, 30)
    yml = base / 'quirks.yml'
    yml.write_text(f'root: {base}\nimage_ext: [.jpg, .JPG, .jpeg, .png]\ncoordinates: auto\nnegatives: true\n'
                   f'split: {{test: 0.34, seed: 1}}\n{yml_extra}')
    return yml


def write_broken_dataset(base):
    """A dataset with split files and one of each error; returns its dataset file ``base/broken.yml``.

    trainval.txt lists: b1.jpg (extension, fine), b2 (class 'Apple': case), b3 (box outside), b4 (inverted),
    b5 (<size> 50 x 30 but the image is 40 x 30), b6 (image is not an image), b1 again (duplicate),
    b7 (no XML), b8 (clipped: 1 px past, a warning only). test.txt lists b9 (fine).
    """
    _layout(base)
    (base / 'ImageSets' / 'Main').mkdir(parents=True)
    ann, img = base / 'Annotations', base / 'JPEGImages'
    objects = {'b1': [('apple', (1, 1, 10, 10), 0, 0)], 'b2': [('Apple', (1, 1, 10, 10), 0, 0)],
               'b3': [('pear', (1, 1, 45, 10), 0, 0)], 'b4': [('pear', (12, 1, 10, 10), 0, 0)],
               'b5': [('pear', (1, 1, 10, 10), 0, 0)], 'b6': [('pear', (1, 1, 10, 10), 0, 0)],
               'b8': [('pear', (1, 1, 41, 10), 0, 0)], 'b9': [('apple', (2, 2, 20, 20), 0, 0)]}
    for index, objs in objects.items():
        (ann / f'{index}.xml').write_text(xml_text(objs, (50, 30) if index == 'b5' else (40, 30)))
        if index == 'b6':
            (img / 'b6.jpg').write_bytes(b'not an image')
        else:
            write_image(img / f'{index}.jpg', 40, 30)
    write_image(img / 'b7.jpg', 40, 30)
    (base / 'ImageSets/Main/trainval.txt').write_text('b1.jpg\nb2\nb3\nb4\nb5\nb6\nb1\nb7\nb8\n')
    (base / 'ImageSets/Main/test.txt').write_text('b9\n')
    yml = base / 'broken.yml'
    yml.write_text(f'root: {base}\nclasses: [apple, pear]\n')
    return yml


def write_clean_dataset(base, num_images, seed=0):
    """``num_images`` 160 x 120 images with 1-2 white rectangles (classes apple = wide, pear = tall),
    1-based XML, split rule (a third for test); returns the dataset file ``base/clean.yml``."""
    _layout(base)
    rng = np.random.default_rng(seed)
    for k in range(num_images):
        boxes, objects = [], []
        for _ in range(int(rng.integers(1, 3))):
            name = QUIRK_CLASSES[int(rng.integers(2))]
            w, h = (50, 25) if name == 'apple' else (25, 50)
            x1, y1 = int(rng.integers(0, 160 - w)), int(rng.integers(0, 120 - h))
            boxes.append((x1, y1, x1 + w - 1, y1 + h - 1))
            objects.append((name, (x1 + 1, y1 + 1, x1 + w, y1 + h), 0, 0))
        write_image(base / 'JPEGImages' / f'img{k:03d}.jpg', 160, 120, boxes)
        (base / 'Annotations' / f'img{k:03d}.xml').write_text(xml_text(objects, (160, 120)))
    yml = base / 'clean.yml'
    yml.write_text(f'root: {base}\nclasses: [apple, pear]\nsplit: {{test: 0.34, seed: 3}}\n')
    return yml
