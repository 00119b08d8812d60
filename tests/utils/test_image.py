"""utils.image: images read as stored (no EXIF rotation), truncated JPEGs and size mismatches refused."""

import struct

import cv2
import numpy as np
import pytest

from utils.image import BadImageError, jpeg_size, read_image, stored_image_size


def exif_orientation_segment(orientation):
    """An APP1 EXIF segment holding only the orientation tag (0x0112, SHORT)."""
    tiff = b'MM\x00\x2a' + struct.pack('>I', 8) + struct.pack('>H', 1) \
        + struct.pack('>HHIHH', 0x0112, 3, 1, orientation, 0) + struct.pack('>I', 0)
    payload = b'Exif\x00\x00' + tiff
    return b'\xff\xe1' + struct.pack('>H', len(payload) + 2) + payload


@pytest.fixture
def image():
    """A 40 x 24 (W x H) image with a bright top-left corner, so a rotation is visible."""
    im = np.zeros((24, 40, 3), np.uint8)
    im[:6, :10] = 255
    return im


def write_jpeg(path, im, orientation=None):
    ok, data = cv2.imencode('.jpg', im)
    assert ok
    data = data.tobytes()
    if orientation is not None:
        data = data[:2] + exif_orientation_segment(orientation) + data[2:]
    path.write_bytes(data)
    return path


def test_exif_rotation_is_not_applied(tmp_path, image):
    path = write_jpeg(tmp_path / 'rotated.jpg', image, orientation=6)  # "rotate 90 CW to display"
    # Plain cv2.imread turns it (this is what the loader must not do) ...
    assert cv2.imread(str(path)).shape[:2] == (40, 24)
    # ... read_image returns the stored pixels, matching the header and the annotated size.
    im = read_image(str(path), expected_size=(40, 24))
    assert im.shape == (24, 40, 3) and im[:6, :10].mean() > 200
    assert jpeg_size(str(path)) == stored_image_size(str(path)) == (40, 24)


def test_truncated_jpeg_is_refused_naming_the_file(tmp_path, image):
    data = write_jpeg(tmp_path / 'full.jpg', image).read_bytes()
    cut = tmp_path / 'cut.jpg'
    cut.write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(BadImageError, match=f'image {cut}: .* the file is truncated'):
        read_image(str(cut))
    # Bytes a camera appends after the end-of-image marker are fine.
    trailer = tmp_path / 'trailer.jpg'
    trailer.write_bytes(data + b'\x00vendor trailer')
    assert read_image(str(trailer)).shape == (24, 40, 3)


def test_header_cut_short_and_non_jpeg(tmp_path, image):
    data = write_jpeg(tmp_path / 'full.jpg', image).read_bytes()
    head = tmp_path / 'head.jpg'
    head.write_bytes(data[:30])
    with pytest.raises(BadImageError, match='cut short'):
        jpeg_size(str(head))
    png = tmp_path / 'image.png'
    cv2.imwrite(str(png), image)
    with pytest.raises(BadImageError, match='not a JPEG'):
        jpeg_size(str(png))
    assert stored_image_size(str(png)) == (40, 24)
    empty = tmp_path / 'empty.jpg'
    empty.write_bytes(b'')
    with pytest.raises(BadImageError, match='cannot decode image'):
        read_image(str(empty))
    with pytest.raises(BadImageError, match='cannot read image'):
        read_image(str(tmp_path / 'missing.jpg'))


def test_size_mismatch_names_both_sizes(tmp_path, image):
    path = write_jpeg(tmp_path / 'a.jpg', image)
    with pytest.raises(BadImageError, match=r'is 40 x 24 pixels but its annotation says 24 x 40'):
        read_image(str(path), expected_size=(24, 40))
