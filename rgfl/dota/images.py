"""Read and write the images of a DOTA folder (OpenCV, BGR uint8 arrays).

Reading refuses what OpenCV would silently get wrong: a PNG or JPEG cut short (OpenCV decodes a
truncated JPEG with a grey bottom and only a warning) is detected from its missing end marker, and
an undecodable file raises :class:`~rgfl.errors.InputError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from rgfl.errors import InputError

__all__ = ["IMAGE_EXTENSIONS", "read_image", "encode_image", "check_image_complete"]

# Extensions looked for in ``images/`` (lower case; matched case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"


def check_image_complete(path: str | Path) -> None:
    """Raise InputError when a PNG or JPEG file does not end with its end marker.

    Only the first and last bytes are read, so this costs nothing next to decoding.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(size - 64, 0))
            tail = handle.read()
    except OSError as error:
        raise InputError(f"cannot read image ({error.strerror})", path) from None
    if size == 0:
        raise InputError("image file is empty", path)
    if head.startswith(_PNG_SIGNATURE):
        if _PNG_IEND not in tail:
            raise InputError("PNG file is truncated (no IEND chunk at the end)", path)
    elif head.startswith(_JPEG_SOI):
        # Some writers append padding after the end-of-image marker; look near the end.
        if _JPEG_EOI not in tail:
            raise InputError("JPEG file is truncated (no end-of-image marker)", path)


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image as BGR uint8 [H, W, 3] (grey and RGBA inputs are converted).

    Raises:
        InputError: the file is missing, truncated, or not an image OpenCV can decode.
    """
    path = Path(path)
    check_image_complete(path)
    # IMREAD_COLOR decodes straight into a 3-channel buffer: no second full-size copy.
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError("cannot decode image (corrupt or unsupported format)", path)
    if image.dtype != np.uint8:
        raise InputError(f"expected an 8-bit image, got {image.dtype}", path)
    return image


def encode_image(image: np.ndarray, ext: str, png_compression: int = 1, jpeg_quality: int = 95) -> bytes:
    """Encode BGR uint8 [h, w, 3] (any strides) as PNG or JPEG bytes.

    Args:
        ext: ``png`` or ``jpg``.
        png_compression: zlib level 0-9 (1 = fastest that still compresses; see docs/split.md).
        jpeg_quality: 0-100.
    """
    if ext == "png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, int(png_compression)]
        ok, buffer = cv2.imencode(".png", image, params)
    elif ext in ("jpg", "jpeg"):
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        raise ValueError(f"unsupported image extension {ext!r}: use png or jpg")
    if not ok:
        raise RuntimeError(f"OpenCV failed to encode a {image.shape} image as {ext}")
    return buffer.tobytes()
