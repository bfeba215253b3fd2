"""Image IO of rgfl split: PNG writers decode to the same pixels, bad files are refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from rgfl.dota.images import encode_image, encode_png, png_encoder_name, read_image
from rgfl.errors import InputError

try:
    import isal  # noqa: F401

    ENCODERS = ["opencv", "isal"]
except ImportError:
    ENCODERS = ["opencv", pytest.param("isal", marks=pytest.mark.skip(reason="isal not installed"))]


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("level", [0, 1, 3])
def test_png_round_trip_on_a_strided_view(dota_sample, encoder, level):
    image = cv2.imread(str(dota_sample / "images" / "P1888.png"))
    view = image[13:400, 5:611]  # not contiguous: a crop as split cuts it
    data = encode_png(view, level, encoder)
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), view)
    # Another decoder (Pillow, RGB) agrees: the file is a standard PNG.
    import io

    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[..., ::-1], view)


def test_encoder_name_and_jpeg():
    assert png_encoder_name(9) == "opencv"
    assert png_encoder_name(1) in ("isal", "opencv")
    image = np.full((64, 80, 3), 120, np.uint8)
    decoded = cv2.imdecode(np.frombuffer(encode_image(image, "jpg"), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (64, 80, 3) and np.abs(decoded.astype(int) - 120).max() <= 2
    with pytest.raises(ValueError, match="png or jpg"):
        encode_image(image, "gif")


def test_read_image_refuses_bad_files(tmp_path):
    good = np.zeros((50, 60, 3), np.uint8)
    png = cv2.imencode(".png", good)[1].tobytes()
    jpg = cv2.imencode(".jpg", good)[1].tobytes()
    cases = {
        "empty.png": (b"", "empty"),
        "cut.png": (png[:-20], "truncated"),
        "cut.jpg": (jpg[: len(jpg) // 2], "truncated"),
        "text.png": (b"not an image at all", "cannot decode"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=message) as error:
            read_image(tmp_path / name)
        assert name in str(error.value)
    with pytest.raises(InputError, match="cannot read"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "ok.jpg").write_bytes(jpg)
    assert read_image(tmp_path / "ok.jpg").shape == (50, 60, 3)


def test_read_image_converts_grey_alpha_and_16_bit(tmp_path):
    grey = np.arange(60 * 50, dtype=np.uint8).reshape(50, 60)
    bgra = np.dstack([grey, grey // 2, grey // 3, np.full_like(grey, 7)])
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    cv2.imwrite(str(tmp_path / "alpha.png"), bgra)
    cv2.imwrite(str(tmp_path / "deep.png"), grey.astype(np.uint16) * 257)
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png"), np.dstack([grey] * 3))
    np.testing.assert_array_equal(read_image(tmp_path / "alpha.png"), bgra[..., :3])
    deep = read_image(tmp_path / "deep.png")
    assert deep.dtype == np.uint8 and deep.shape == (50, 60, 3)
    np.testing.assert_array_equal(deep[..., 0], grey)
