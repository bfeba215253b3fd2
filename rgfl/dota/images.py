"""Read and write the images of a DOTA folder (OpenCV, BGR uint8 arrays).

Reading refuses what OpenCV would silently get wrong: a PNG or JPEG cut short (OpenCV decodes a
truncated JPEG with a grey bottom and only a warning) is detected from its missing end marker, and
an undecodable file raises :class:`~rgfl.errors.InputError` naming the file.

PNG writing is most of the cost of ``rgfl split``. When the optional ``isal`` package (Intel ISA-L's
deflate, MIT licence, wheels for all major platforms) is installed, PNGs are written here: the
"up" filter in numpy, then ISA-L deflate; about 2.2x less CPU than OpenCV's fastest setting with
files as small (benchmarks/split.py). Without it OpenCV writes them (zlib, RLE strategy, "up"
filter). Both are standard 8-bit RGB PNGs that every reader decodes to the same pixels; their bytes
differ, so the encoder in use is part of a split's parameters (:func:`png_encoder_name`).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from rgfl.errors import InputError

try:  # optional fast deflate
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - depends on the environment
    _isal_zlib = None

__all__ = ["IMAGE_EXTENSIONS", "read_image", "encode_image", "encode_png", "check_image_complete", "png_encoder_name"]

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
    """Decode an image as BGR uint8 [H, W, 3] (grey, alpha and 16-bit inputs are converted).

    Raises:
        InputError: the file is missing, truncated, or not an image OpenCV can decode.
    """
    path = Path(path)
    check_image_complete(path)
    if path.suffix.lower() == ".png":
        # As stored: about 20 % faster than IMREAD_COLOR for an 8-bit RGB PNG (no conversion pass).
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is not None and image.dtype == np.uint8:
            if image.ndim == 2:
                image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            elif image.shape[2] == 4:
                image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
            elif image.shape[2] == 2:  # grey + alpha
                image = cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2BGR)
            return image
    # Other formats and depths: OpenCV converts to 8-bit BGR (and applies EXIF orientation).
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError("cannot decode image (corrupt or unsupported format)", path)
    return image


def png_encoder_name(png_compression: int = 1) -> str:
    """Which encoder :func:`encode_png` uses at this level: ``isal`` or ``opencv``."""
    return "isal" if _isal_zlib is not None and png_compression <= 3 else "opencv"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_png(image: np.ndarray, png_compression: int = 1, encoder: str | None = None) -> bytes:
    """BGR uint8 [h, w, 3] (any strides) -> PNG bytes (8-bit RGB).

    Args:
        png_compression: deflate level 0-9 (ISA-L levels 0-3 are used for 0-3 when available).
        encoder: ``isal`` or ``opencv``; None picks :func:`png_encoder_name`.
    """
    encoder = encoder or png_encoder_name(png_compression)
    if encoder == "opencv":
        params = [
            cv2.IMWRITE_PNG_COMPRESSION, int(png_compression),
            cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
            cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
        ]  # fmt: skip
        ok, buffer = cv2.imencode(".png", image, params)
        if not ok:
            raise RuntimeError(f"OpenCV failed to encode a {image.shape} image as PNG")
        return buffer.tobytes()
    if _isal_zlib is None:
        raise RuntimeError("the isal package is not installed")
    height, width = image.shape[:2]
    rgb = image[..., ::-1].reshape(height, width * 3) if image.ndim == 3 else None
    if rgb is None or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 [h, w, 3] image, got {image.shape} {image.dtype}")
    # Scanlines with the "up" filter (type 2): each row minus the row above, modulo 256.
    rows = np.empty((height, width * 3 + 1), dtype=np.uint8)
    rows[:, 0] = 2
    rows[0, 1:] = rgb[0]
    np.subtract(rgb[1:], rgb[:-1], out=rows[1:, 1:])
    data = _isal_zlib.compress(rows, min(int(png_compression), 3))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def encode_image(image: np.ndarray, ext: str, png_compression: int = 1, jpeg_quality: int = 95) -> bytes:
    """Encode BGR uint8 [h, w, 3] (any strides) as PNG or JPEG bytes.

    Args:
        ext: ``png`` or ``jpg``.
        png_compression: deflate level 0-9 (1: fast; see docs/split.md).
        jpeg_quality: 0-100.
    """
    if ext == "png":
        return encode_png(image, png_compression)
    if ext in ("jpg", "jpeg"):
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if not ok:
            raise RuntimeError(f"OpenCV failed to encode a {image.shape} image as JPEG")
        return buffer.tobytes()
    raise ValueError(f"unsupported image extension {ext!r}: use png or jpg")
