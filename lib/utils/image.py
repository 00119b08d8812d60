"""Reading dataset images exactly as stored, or not at all.

``cv2.imread``'s default applies the EXIF orientation tag, so a photo a camera stored rotated comes back
turned while its annotated boxes (and the VOC devkit, which reads raw pixels) are not. A truncated JPEG
decodes with the missing rows filled in grey and only a libjpeg warning on stderr. ``read_image`` reads
the stored pixels (EXIF ignored), refuses an incomplete JPEG and, given the annotation's size, a
mismatch; ``jpeg_size`` reads a JPEG's size from its header without decoding it.
"""

import struct

import cv2
import numpy as np

# Stored pixels, BGR, 8 bit; the EXIF orientation tag is not applied (as the VOC devkit reads images).
IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
_SOI, _SOS, _EOI = b'\xff\xd8', b'\xff\xda', b'\xff\xd9'
# Start-of-frame markers (baseline, extended, progressive, lossless, ...; not DHT C4, JPG C8, DAC CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class BadImageError(ValueError):
    """An image cannot be used as stored; the message names the file."""


def is_jpeg(data):
    """True when ``data`` (bytes) starts with the JPEG start-of-image marker."""
    return data[:2] == _SOI


def jpeg_complete(data):
    """True when the JPEG ``data`` has an end-of-image marker after its last start-of-scan marker.

    In entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so ``FF D9`` after
    the last ``FF DA`` can only be the real end of the image; a truncated file has none (bytes a camera
    appends after the end of the image are allowed).
    """
    sos = data.rfind(_SOS)
    return sos >= 0 and data.rfind(_EOI) > sos


def jpeg_size(path):
    """``(width, height)`` from the start-of-frame header of the JPEG ``path``; ``BadImageError`` when the
    file is not a JPEG or its header is cut short."""
    cut = BadImageError(f'{path}: JPEG header cut short or without a frame header (truncated file?)')
    with open(path, 'rb') as f:
        if f.read(2) != _SOI:
            raise BadImageError(f'{path}: not a JPEG file (no start-of-image marker)')
        while True:
            byte = f.read(1)
            if not byte:
                raise cut
            if byte != b'\xff':
                raise BadImageError(f'{path}: corrupt JPEG header (expected a marker)')
            code = 0xFF
            while code == 0xFF:  # fill bytes before the marker code
                byte = f.read(1)
                if not byte:
                    raise cut
                code = byte[0]
            if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:  # markers without a length
                continue
            if code in (0xD9, 0xDA):  # end of image / scan data before any frame header
                raise cut
            length_bytes = f.read(2)
            if len(length_bytes) < 2:
                raise cut
            if code in _SOF_MARKERS:
                header = f.read(5)
                if len(header) < 5:
                    raise cut
                _, height, width = struct.unpack('>BHH', header)
                return width, height
            f.seek(struct.unpack('>H', length_bytes)[0] - 2, 1)


_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def png_size(head):
    """``(width, height)`` from the first 24 bytes of a PNG (signature, then the IHDR chunk), or None when
    ``head`` is not the start of a PNG."""
    if len(head) < 24 or head[:8] != _PNG_SIGNATURE or head[12:16] != b'IHDR':
        return None
    return struct.unpack('>II', head[16:24])


def stored_image_size(path):
    """``(width, height)`` of the image at ``path`` as stored: a JPEG's or PNG's from its header (no
    decoding), any other format's by decoding it (``BadImageError`` when that fails)."""
    with open(path, 'rb') as f:
        head = f.read(24)
    if is_jpeg(head):
        return jpeg_size(path)
    if png_size(head) is not None:
        return png_size(head)
    im = read_image(path)
    return im.shape[1], im.shape[0]


def read_image(path, expected_size=None):
    """The image at ``path`` as stored: H x W x 3 BGR uint8, EXIF orientation not applied.

    Raises ``BadImageError`` naming the file when it is missing, cannot be decoded, is a JPEG that does
    not decode completely, or (given ``expected_size`` = ``(width, height)``, e.g. the annotation's
    ``<size>``) has another size.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as exc:
        raise BadImageError(f'cannot read image {path}: {exc.strerror or exc}') from None
    if is_jpeg(data) and not jpeg_complete(data):
        raise BadImageError(f'image {path}: the JPEG data ends before the end-of-image marker '
                            f'({len(data)} bytes): the file is truncated')
    im = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), IMREAD_FLAGS) if data else None
    if im is None:
        raise BadImageError(f'cannot decode image {path} ({len(data)} bytes)')
    if expected_size is not None:
        width, height = (int(v) for v in expected_size)
        if (im.shape[1], im.shape[0]) != (width, height):
            raise BadImageError(f'image {path} is {im.shape[1]} x {im.shape[0]} pixels but its annotation '
                                f'says {width} x {height}')
    return im
