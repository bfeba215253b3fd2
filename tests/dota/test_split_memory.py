"""Peak memory of splitting one large image stays within 3x its decoded size.

Measured in a fresh process on Linux: after the imports the peak-RSS mark (VmHWM) is reset to the
current RSS through /proc/self/clear_refs, and the peak above that after the split is compared with
the decoded image size."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

CHILD = textwrap.dedent(
    """
    import sys
    import cv2, numpy, shapely
    from rgfl.dota.split import SplitConfig, split_dataset
    import rgfl.dota.images, rgfl.geometry.window_iof

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset the peak-RSS mark to the current RSS
    before = status("VmRSS")
    rates = tuple(float(r) for r in sys.argv[3].split(","))
    split_dataset(sys.argv[1], sys.argv[2], SplitConfig(rates=rates), workers=1)
    print(before, status("VmHWM"))
    """
)


def cheap_to_encode_image(width: int, height: int) -> np.ndarray:
    """A smooth gradient with a few objects: realistic size, fast to write and read."""
    row = np.linspace(0, 255, width, dtype=np.float32)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = row.astype(np.uint8)[None, :, None]
    image[::97, :, 1] = 30
    return image


def peak_extra_bytes(tmp_path, width, height, rates) -> tuple[int, int]:
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "labelTxt").mkdir()
    image = cheap_to_encode_image(width, height)
    cv2.imwrite(str(src / "images" / "big.png"), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    (src / "labelTxt" / "big.txt").write_text("10 10 60 10 60 40 10 40 plane 0\n")
    del image
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(tmp_path / "out"), rates],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    before, after = map(int, result.stdout.split())
    return after - before, width * height * 3


needs_proc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")


@needs_proc
def test_multi_scale_split_memory_stays_within_3x(tmp_path):
    # Resizing the whole image by 1.5 would alone take 2.25x the decoded size on top of it.
    extra, decoded = peak_extra_bytes(tmp_path, 3000, 2000, "1.0,1.5")
    print(f"peak {extra / 1e6:.0f} MB above start for a {decoded / 1e6:.0f} MB image")
    assert extra <= 3 * decoded, f"peak {extra / 1e6:.0f} MB above start for a {decoded / 1e6:.0f} MB image"


@needs_proc
@pytest.mark.slow
def test_20000_pixel_image_within_3x(tmp_path):
    extra, decoded = peak_extra_bytes(tmp_path, 20000, 20000, "1.0")
    print(f"peak {extra / 1e6:.0f} MB above start for a {decoded / 1e6:.0f} MB image")
    assert extra <= 3 * decoded, f"peak {extra / 1e6:.0f} MB above start for a {decoded / 1e6:.0f} MB image"
