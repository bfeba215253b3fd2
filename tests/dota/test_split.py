"""rgfl split on small synthetic folders and on the real DOTA sample: objects per window in both
truncation modes, multi-scale round trip, pixels, padding, test sets, bad input, restart."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely

from rgfl.dota.annotations import read_label_file
from rgfl.dota.patches import parse_patch_name
from rgfl.dota.split import (
    MANIFEST_NAME,
    SplitConfig,
    assign_objects,
    devkit_label_polygons,
    read_manifest,
    sliding_windows,
    split_dataset,
)
from rgfl.errors import InputError


def make_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth random BGR texture (compresses fast, shows any misalignment)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def make_dataset(root: Path, images: dict[str, np.ndarray], labels: dict[str, str] | None) -> Path:
    (root / "images").mkdir(parents=True)
    for stem, image in images.items():
        cv2.imwrite(str(root / "images" / f"{stem}.png"), image)
    if labels is not None:
        (root / "labelTxt").mkdir()
        for stem, text in labels.items():
            (root / "labelTxt" / f"{stem}.txt").write_text(text)
    return root


def rect(x1, y1, x2, y2, name="small-vehicle", difficult=0) -> str:
    return f"{x1} {y1} {x2} {y1} {x2} {y2} {x1} {y2} {name} {difficult}\n"


class Warnings(logging.Handler):
    """Collects the messages logged to the ``rgfl`` logger (the CLI turns its propagation off,
    so pytest's caplog on the root logger would miss them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture()
def warnings_logged():
    logger = logging.getLogger("rgfl")
    handler, level = Warnings(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def patch_labels(out: Path, name: str):
    return read_label_file(out / "labelTxt" / f"{name}.txt")


# --------------------------------------------------------------------------------------------
# Objects across window borders
# --------------------------------------------------------------------------------------------

# A 2048 x 1024 image, size 1024, overlap 200: windows start at x = 0, 824, 1024.
WINDOWS = np.array([[0, 0, 1024, 1024], [824, 0, 1848, 1024], [1024, 0, 2048, 1024]])
POLYS = np.array(
    [
        [100, 100, 200, 100, 200, 150, 100, 150],  # wholly in window 0 only
        [1000, 500, 1100, 500, 1100, 540, 1000, 540],  # 24 % in window 0, all in window 1, 76 % in window 2
        [950, 300, 1050, 300, 1050, 340, 950, 340],  # 74 % in window 0, all in window 1, 26 % in window 2
    ],
    dtype=np.float64,
)


def test_default_mode_keeps_full_polygons_and_marks_cut_objects():
    out = assign_objects(POLYS, ["plane", "ship", "bridge"], np.array([0, 1, 0]), WINDOWS, (2048, 1024))
    w0, w1, w2 = out
    assert w0.classes == ["plane", "bridge"] and w0.difficult.tolist() == [0, 2]
    # Full polygon, shifted into the window, sticking out of the patch.
    np.testing.assert_array_equal(w0.polygons[1], POLYS[2])
    assert (w0.truncated, w0.dropped) == (1, 1)  # the ship (IoF 0.24 < 0.7) is dropped
    assert w1.classes == ["ship", "bridge"] and w1.difficult.tolist() == [1, 0]  # wholly inside: kept as is
    np.testing.assert_array_equal(w1.polygons, POLYS[1:] - np.array([824, 0] * 4))
    # Window 2 (x >= 1024): the ship is 76 % inside (kept, truncated), the bridge 26 % (dropped).
    assert w2.classes == ["ship"] and w2.difficult.tolist() == [2] and (w2.truncated, w2.dropped) == (1, 1)


def test_default_mode_threshold_is_inclusive():
    # Exactly 70 % of the object inside window 0: kept (mmrotate uses >=).
    poly = np.array([[954, 0, 1054, 0, 1054, 10, 954, 10]], dtype=np.float64)
    (w0,) = assign_objects(poly, ["ship"], np.array([0]), WINDOWS[:1], (2048, 1024))
    assert w0.classes == ["ship"] and w0.difficult.tolist() == [2]


def test_clip_mode_like_the_devkit():
    out = assign_objects(POLYS, ["plane", "ship", "bridge"], np.array([0, 1, 0]), WINDOWS, (2048, 1024), clip=True)
    w0, w1, w2 = out
    # Everything overlapping is written; clipped to the window, 4 points, clockwise like DOTA.
    assert w0.classes == ["plane", "ship", "bridge"]
    np.testing.assert_array_equal(w0.polygons[1], [1000, 500, 1024, 500, 1024, 540, 1000, 540])
    np.testing.assert_array_equal(w0.polygons[2], [950, 300, 1024, 300, 1024, 340, 950, 340])
    # Difficulty kept above the threshold (74 %), 2 at or below it (24 %).
    assert w0.difficult.tolist() == [0, 2, 0]
    assert w0.truncated == 2 and w0.dropped == 0
    # Window 2: the ship (76 %, difficulty kept) and the bridge's 26 % sliver (2), clamped into
    # [1, 1024] like the devkit.
    assert w2.classes == ["ship", "bridge"] and w2.difficult.tolist() == [1, 2]
    np.testing.assert_array_equal(w2.polygons, [[1, 500, 76, 500, 76, 540, 1, 540], [1, 300, 26, 300, 26, 340, 1, 340]])
    assert w1.classes == ["ship", "bridge"] and w1.difficult.tolist() == [1, 0]


def test_clip_mode_reduces_five_points_and_drops_more():
    # A diamond whose right corner is cut by x = 1024: 5 vertices -> the shortest edge collapses.
    kite = np.array([[900, 500, 1000, 400, 1100, 510, 1000, 600]], dtype=np.float64)
    (w0,) = assign_objects(kite, ["plane"], np.array([0]), WINDOWS[:1], (2048, 1024), clip=True)
    clipped = shapely.intersection(shapely.Polygon(kite[0].reshape(4, 2)), shapely.box(0, 0, 1024, 1024))
    assert len(clipped.exterior.coords) - 1 == 5
    # Clipped: (900,500) (1000,400) (1024,426.4) (1024,578.4) (1000,600); the shortest edge,
    # (1024,578.4)-(1000,600) (32.3 px), becomes its midpoint (1012, 589.2); int() truncates.
    np.testing.assert_array_equal(w0.polygons, [[900, 500, 1000, 400, 1024, 426, 1012, 589]])
    assert w0.difficult.tolist() == [0]  # IoF 0.96 > 0.7: difficulty kept
    # Cut by two borders into 6 vertices: dropped, as the devkit does.
    octagon_cut = np.array([[974, 974, 1074, 974, 1074, 1074, 974, 1074]], dtype=np.float64)
    rotated = np.array([[1024, 950, 1100, 1024, 1024, 1100, 950, 1024]], dtype=np.float64)
    (w0,) = assign_objects(rotated, ["plane"], np.array([0]), np.array([[0, 0, 1024, 1024]]), (2048, 2048), clip=True)
    assert w0.classes == [] and w0.dropped == 1
    (w0,) = assign_objects(octagon_cut, ["plane"], np.array([0]), np.array([[0, 0, 1024, 1024]]), (2048, 2048), clip=True)
    assert w0.polygons.tolist() == [[974, 974, 1024, 974, 1024, 1024, 974, 1024]]


def test_clip_mode_five_to_four_tie_collapses_the_first_shortest_edge_in_devkit_order():
    # A diamond cut by x = 1024 gives a pentagon with two equally short edges (24, 24): which one
    # collapses depends on the vertex order. The devkit takes shapely's intersection, orients it
    # (orient(sign=1) reverses the closed ring, the start vertex stays) and picks the first minimum
    # of the lengths of edges 0-1, 1-2, 2-3, 3-4, 4-0.
    diamond = [(950, 500), (1000, 450), (1050, 500), (1000, 550)]
    ring_ = shapely.Polygon([(0, 0), (1024, 0), (1024, 1024), (0, 1024)])
    devkit_ring = shapely.geometry.polygon.orient(shapely.Polygon(diamond).intersection(ring_), 1.0)
    # The vertex order the kit's loop sees (this is shapely's, the library the kit calls):
    assert list(devkit_ring.exterior.coords)[:-1] == [(1000, 450), (1024, 474), (1024, 526), (1000, 550), (950, 500)]
    # By hand: edge lengths 33.94, 52, 33.94, 70.71, 70.71 -> edge 0 (first minimum) collapses to
    # (1012, 462): (1012,462) (1024,526) (1000,550) (950,500). Best start against the original
    # (950,500) (1000,450) (1050,500) (1000,550): squared distances of the 4 rotations 21640,
    # 34040, 14040, 1640 -> start at (950,500). IoF = (5000 - 676) / 5000 = 0.86 > 0.7: difficulty kept.
    # (Collapsing the other tied edge would give ... 1000 450 1024 474 1012 538.)
    polygon = np.array([sum(diamond, ())], dtype=np.float64)
    window = np.array([[0, 0, 1024, 1024]])
    (w0,) = assign_objects(polygon, ["plane"], np.array([1]), window, (2048, 2048), clip=True)
    assert w0.polygons.tolist() == [[950, 500, 1012, 462, 1024, 526, 1000, 550]]
    assert w0.difficult.tolist() == [1] and w0.truncated == 1


def test_clip_mode_truncates_like_the_devkit(tmp_path):
    """The devkit's int() on parsed labels and on shifted output, on a 1100 x 900 image (windows
    x = 0 and 76, clip window ends at x = min(x + 1024, 1099), y = 899). Expected values by hand."""
    labels = (
        "1000 100 1050 130 1040 150 990 120 plane 0\n"
        "73.1 500 83.1 500 83.1 520 73.1 520 small-vehicle 0\n"
        "300.9 0.6 340.9 0.6 340.9 20.6 300.9 20.6 ship 0\n"
    )
    src = make_dataset(tmp_path / "src", {"mini": make_image(1100, 900)}, {"mini": labels})
    out = tmp_path / "out"
    split_dataset(src, out, SplitConfig(size=1024, step=824, clip=True, classes=None), workers=1)

    def lines(name):
        return (out / "labelTxt" / f"{name}.txt").read_text().splitlines()

    # Window x = 0:
    # plane: clipped at x = 1024 to (1000,100) (1024,114.4) (1024,140.4) (990,120); int() -> 114, 140;
    #   IoF = 754 / 1300 = 0.58 <= 0.7 -> 2.
    # small-vehicle: parsed as 73 500 83 500 83 520 73 520, wholly inside.
    # ship: parsed as 300 0 340 0 340 20 300 20, wholly inside, written unclamped (y = 0 stays).
    assert lines("mini__1024__0___0") == [
        "1000 100 1024 114 1024 140 990 120 plane 2",
        "73 500 83 500 83 520 73 520 small-vehicle 0",
        "300 0 340 0 340 20 300 20 ship 0",
    ]
    # Window x = 76 (x2 = 1099): plane wholly inside, shifted by 76.
    # small-vehicle: 76..83 of 73..83 -> IoF 140 / 200 = 0.7 exactly -> 2 (0.71 with float labels);
    #   x = 76 - 76 = 0 clamped to 1, 83 - 76 = 7.
    # ship: wholly inside, 300 - 76 = 224.
    assert lines("mini__1024__76___0") == [
        "924 100 974 130 964 150 914 120 plane 0",
        "1 500 7 500 7 520 1 520 small-vehicle 2",
        "224 0 264 0 264 20 224 20 ship 0",
    ]


def test_clip_mode_rate_truncates_then_scales_then_truncates(tmp_path):
    """Rate 0.5 on a 2200 x 1800 image (resized 1100 x 900, windows x = 0 and 76). The devkit
    parses int(), multiplies by the rate, shifts by the window and applies int() again."""
    labels = (
        "101.7 51.3 141.9 51.3 141.9 71.8 101.7 71.8 ship 0\n"  # -> 101 51 141 51 ... -> x 0.5
        "2001.9 201 2101 201 2101 301.9 2001.9 301.9 plane 1\n"  # -> 2001 201 2101 201 2101 301 2001 301
        "153.8 1000 171.2 1000 171.2 1020 153.8 1020 small-vehicle 0\n"  # -> 153 .. 171, x 0.5: 76.5 .. 85.5
    )
    src = make_dataset(tmp_path / "src", {"big": make_image(2200, 1800)}, {"big": labels})
    out = tmp_path / "out"
    split_dataset(src, out, SplitConfig(size=1024, step=824, rates=(0.5,), clip=True, classes=None), workers=1)

    def lines(name):
        return (out / "labelTxt" / f"{name}.txt").read_text().splitlines()

    # Window x = 0 (clip window x 0..1024, y 0..899):
    # ship: 50.5 25.5 70.5 25.5 70.5 35.5 50.5 35.5, wholly inside -> int: 50 25 70 25 70 35 50 35.
    # plane: 1000.5 100.5 1050.5 100.5 1050.5 150.5 1000.5 150.5; clipped at x = 1024 (IoF 23.5 / 50
    #   = 0.47 -> 2): (1000.5,100.5) (1024,100.5) (1024,150.5) (1000.5,150.5) -> 1000 100 1024 100 1024 150 1000 150.
    # small-vehicle: 76.5 500 85.5 500 85.5 510 76.5 510, wholly inside -> 76 500 85 500 85 510 76 510.
    assert lines("big__1024__0___0__r0.5") == [
        "50 25 70 25 70 35 50 35 ship 0",
        "1000 100 1024 100 1024 150 1000 150 plane 2",
        "76 500 85 500 85 510 76 510 small-vehicle 0",
    ]
    # Window x = 76 (x2 = 1099): ship: 50.5..70.5 is left of 76: not written.
    # plane: wholly inside: 1000.5 - 76 = 924.5 -> 924, 1050.5 - 76 = 974.5 -> 974.
    # small-vehicle: wholly inside (76.5 >= 76): 0.5 -> 0 (no clamp for whole objects), 9.5 -> 9.
    assert lines("big__1024__76___0__r0.5") == [
        "924 100 974 100 974 150 924 150 plane 1",
        "0 500 9 500 9 510 0 510 small-vehicle 0",
    ]


def test_clip_mode_skips_objects_without_area_after_truncation():
    # 10.2..10.8 truncates to a zero-width polygon: the devkit skips it (area <= 0).
    sliver = np.array([[10.2, 10, 10.8, 10, 10.8, 30, 10.2, 30]])
    polygons = devkit_label_polygons(sliver)
    np.testing.assert_array_equal(polygons, [[10, 10, 10, 10, 10, 30, 10, 30]])
    (w0,) = assign_objects(polygons, ["ship"], np.array([0]), np.array([[0, 0, 1024, 1024]]), (2048, 2048), clip=True)
    assert w0.classes == [] and w0.dropped == 1
    # Truncation is toward zero (Python int()), not floor, and the rate multiplies the integers.
    negative = np.array([[-0.5, 1.9, -1.5, 2.5, 3, 4, 5, 6]])
    np.testing.assert_array_equal(devkit_label_polygons(negative, 0.5), [[0, 0.5, -0.5, 1, 1.5, 2, 2.5, 3]])


# --------------------------------------------------------------------------------------------
# Whole folders
# --------------------------------------------------------------------------------------------


def random_objects(rng, count, width, height, margin=20):
    """Rotated rectangles fully inside the image."""
    centers = rng.uniform([margin + 40, margin + 40], [width - margin - 40, height - margin - 40], (count, 2))
    w, h, t = rng.uniform(8, 70, count), rng.uniform(6, 40, count), rng.uniform(0, np.pi, count)
    lines = []
    polys = []
    for (cx, cy), a, b, theta in zip(centers, w, h, t):
        c, s = np.cos(theta), np.sin(theta)
        pts = [(cx + c * dx - s * dy, cy + s * dx + c * dy) for dx, dy in ((-a / 2, -b / 2), (a / 2, -b / 2), (a / 2, b / 2), (-a / 2, b / 2))]
        pts = [(round(x, 1), round(y, 1)) for x, y in pts]
        polys.append([v for p in pts for v in p])
        lines.append(" ".join(f"{v:g}" for v in polys[-1]) + " small-vehicle 0\n")
    return np.array(polys), "".join(lines)


def test_multi_scale_round_trip(tmp_path):
    rng = np.random.default_rng(11)
    image = make_image(1300, 900, seed=1)
    polys, text = random_objects(rng, 150, 1300, 900)
    src = make_dataset(tmp_path / "src", {"A__b": image}, {"A__b": "gsd:0.5\n" + text})
    out = tmp_path / "out"
    config = SplitConfig(size=512, step=412, rates=(0.5, 1.0, 1.5), iof_thr=0.7)
    summary = split_dataset(src, out, config, workers=1)
    manifest = read_manifest(out)
    patches = manifest["images"][0]["patches"]
    assert summary.patches == len(patches) == len(list((out / "images").glob("*.png")))
    found = np.zeros(len(polys), dtype=int)
    resized_images = {}
    for patch in patches:
        origin = parse_patch_name(patch["name"])
        assert (origin.stem, origin.x, origin.y, origin.rate, origin.size) == ("A__b", patch["x"], patch["y"], patch["rate"], 512)
        labels = patch_labels(out, patch["name"])
        for poly, flag in zip(labels.polygons, labels.difficult):
            back = np.array([origin.to_source(x, y) for x, y in poly.reshape(4, 2)]).reshape(8)
            error = np.abs(polys - back).max(axis=1)
            best = int(np.argmin(error))
            assert error[best] <= 1e-3
            found[best] += flag == 0
        # Pixels: the patch equals the image resized by the rate, cut at the window (to 1 grey level).
        if origin.rate not in resized_images:
            resized_images[origin.rate] = cv2.resize(image, None, fx=origin.rate, fy=origin.rate, interpolation=cv2.INTER_CUBIC)
        resized = resized_images[origin.rate]
        pixels = cv2.imread(str(out / "images" / f"{patch['name']}.png"))
        x1, y1, x2, y2 = patch["window"]
        diff = np.abs(pixels[: y2 - y1, : x2 - x1].astype(int) - resized[y1:y2, x1:x2])
        assert diff.max() <= 1 and diff.mean() < 1e-2
    # Every object lies wholly inside some window at every rate (size 512 > objects).
    assert (found >= 3).all()


def test_real_sample_split_1024_512_against_shapely(dota_sample, tmp_path, warnings_logged):
    out = tmp_path / "out"
    config = SplitConfig(size=1024, step=512, classes=None)
    summary = split_dataset(dota_sample, out, config, workers=1)
    # Five label files have no image in the sample: skipped with one warning each.
    assert summary.images == 2 and summary.skipped_images == 5 and summary.bad_input == 5
    warned = [m for m in warnings_logged if "has no image" in m]
    assert len(warned) == 5 and any("P0770.txt" in w for w in warned)
    manifest = read_manifest(out)
    sizes = {im["stem"]: (im["width"], im["height"]) for im in manifest["images"]}
    assert sizes == {"P0706": (1111, 1182), "P1888": (712, 557)}
    names = sorted(p["name"] for im in manifest["images"] for p in im["patches"])
    assert names == ["P0706__1024__0___0", "P0706__1024__0___158", "P0706__1024__87___0", "P0706__1024__87___158", "P1888__1024__0___0"]
    kept = 0
    for stem in sizes:
        source = read_label_file(dota_sample / "labelTxt" / f"{stem}.txt")
        shapes = shapely.polygons(source.polygons.reshape(-1, 4, 2))
        for patch in next(im for im in manifest["images"] if im["stem"] == stem)["patches"]:
            x, y = patch["x"], patch["y"]
            iof = shapely.area(shapely.intersection(shapes, shapely.box(x, y, x + 1024, y + 1024))) / shapely.area(shapes)
            labels = patch_labels(out, patch["name"])
            expected = np.flatnonzero(iof >= 0.7)
            assert len(labels) == len(expected)
            np.testing.assert_allclose(labels.polygons, source.polygons[expected] - [x, y] * 4)
            assert labels.classes == [source.classes[i] for i in expected]
            whole = iof[expected] > 1 - 1e-12
            assert (labels.difficult == np.where(whole, source.difficult[expected], 2)).all()
            kept += len(labels)
            image = cv2.imread(str(out / "images" / f"{patch['name']}.png"))
            assert image.shape == (1024, 1024, 3)
    assert summary.objects == kept
    # P1888 (712 x 557) is padded bottom/right with the B,G,R pad value; pixels kept top-left.
    padded = cv2.imread(str(out / "images" / "P1888__1024__0___0.png"))
    original = cv2.imread(str(dota_sample / "images" / "P1888.png"))
    np.testing.assert_array_equal(padded[:557, :712], original)
    assert (padded[600:, :] == [104, 116, 124]).all() and (padded[:, 800:] == [104, 116, 124]).all()


def test_no_pad_and_jpg(tmp_path):
    src = make_dataset(tmp_path / "src", {"small": make_image(700, 650)}, {"small": rect(10, 10, 50, 50)})
    out = tmp_path / "out"
    split_dataset(src, out, SplitConfig(pad_value=None, ext="jpg"), workers=1)
    patch = cv2.imread(str(out / "images" / "small__1024__0___0.jpg"))
    assert patch.shape == (650, 700, 3)
    assert read_manifest(out)["images"][0]["patches"][0]["width"] == 700


def test_test_set_without_labels_writes_patches_only(tmp_path):
    src = make_dataset(tmp_path / "src", {"T1": make_image(1500, 900), "T2": make_image(600, 600, 2)}, None)
    out = tmp_path / "out"
    summary = split_dataset(src, out, SplitConfig(), workers=1)
    images = sorted(p.stem for p in (out / "images").glob("*.png"))
    assert images == ["T1__1024__0___0", "T1__1024__476___0", "T2__1024__0___0"]
    assert not (out / "labelTxt").exists()  # no empty label files pretending to be ground truth
    assert summary.bad_input == 0 and summary.objects == 0
    assert split_dataset(src, out, SplitConfig(), workers=1).resumed == 2


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def bad_folder(tmp_path) -> Path:
    good = rect(10, 10, 60, 40) + rect(100, 100, 150, 140, "plane")
    bad_lines = (
        "imagesource:GoogleEarth\r\n"
        + rect(10, 10, 60, 40)
        + "10 10 60 10 60 40 small-vehicle 0\n"  # line 3: 7 coordinates
        + rect(20, 20, 90, 80, "spaceship")  # line 4: unknown class
        + "5 5 5 5 9 9 5 5 plane 0\n"  # line 5: zero area
        + "1 2 x 4 5 6 7 8 ship 0\n"  # line 6: not a number
    )
    src = make_dataset(
        tmp_path / "src",
        {"good": make_image(600, 600), "lines": make_image(600, 600, 1)},
        {"good": good, "lines": bad_lines, "orphan": good},
    )
    # A truncated PNG and a file that is no image at all.
    data = cv2.imencode(".png", make_image(600, 600, 3))[1].tobytes()
    (src / "images" / "cut.png").write_bytes(data[: len(data) // 2])
    (src / "labelTxt" / "cut.txt").write_text(good)
    (src / "images" / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10 + b"IEND\xaeB`\x82")
    (src / "labelTxt" / "junk.txt").write_text(good)
    return src


def test_bad_input_is_skipped_with_one_warning_each(bad_folder, tmp_path, warnings_logged):
    out = tmp_path / "out"
    summary = split_dataset(bad_folder, out, SplitConfig(classes=("plane", "small-vehicle", "ship")), workers=1)
    messages = warnings_logged
    expected = {
        "lines.txt:3": "9 or 10 fields",
        "lines.txt:4": "unknown class 'spaceship'",
        "lines.txt:5": "zero area",
        "lines.txt:6": "'x' is not a number",
        "orphan.txt": "no image",
        "cut.png": "truncated",
        "junk.png": "cannot decode",
    }
    for where, what in expected.items():
        hits = [m for m in messages if where in m and what in m]
        assert len(hits) == 1, (where, messages)
    assert summary.bad_input == len(expected) == len(messages)
    assert summary.images == 2 and summary.skipped_images == 3
    assert patch_labels(out, "lines__1024__0___0").classes == ["small-vehicle"]
    assert patch_labels(out, "good__1024__0___0").classes == ["small-vehicle", "plane"]
    assert not list((out / "images").glob("cut*")) and not list((out / "images").glob("junk*"))
    skipped = {entry["stem"] for entry in read_manifest(out)["skipped"]}
    assert skipped == {"cut", "junk", "orphan"}


def test_strict_stops_at_the_first_bad_input_naming_it(bad_folder, tmp_path):
    with pytest.raises(InputError, match=r"cut\.png: PNG file is truncated"):
        split_dataset(bad_folder, tmp_path / "out", SplitConfig(), workers=1, strict=True)
    (bad_folder / "images" / "cut.png").unlink()
    (bad_folder / "labelTxt" / "cut.txt").unlink()
    (bad_folder / "images" / "junk.png").unlink()
    (bad_folder / "labelTxt" / "junk.txt").unlink()
    with pytest.raises(InputError, match=r"lines\.txt:3: expected"):
        split_dataset(bad_folder, tmp_path / "out2", SplitConfig(), workers=1, strict=True)


def test_missing_images_folder_and_foreign_output(tmp_path):
    with pytest.raises(InputError, match="no images/ folder"):
        split_dataset(tmp_path, tmp_path / "out", SplitConfig(), workers=1)
    src = make_dataset(tmp_path / "src", {"a": make_image(300, 300)}, None)
    split_dataset(src, tmp_path / "out", SplitConfig(), workers=1)
    with pytest.raises(InputError, match="other parameters.*size"):
        split_dataset(src, tmp_path / "out", SplitConfig(size=512, step=312), workers=1)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not an rgfl split folder"):
        split_dataset(src, tmp_path / "foreign", SplitConfig(), workers=1)


# --------------------------------------------------------------------------------------------
# Restart, determinism, workers
# --------------------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_restart_after_interruption_is_byte_identical(tmp_path):
    rng = np.random.default_rng(5)
    images, labels = {}, {}
    for k in range(4):
        images[f"P{k}"] = make_image(700, 560, seed=k)
        labels[f"P{k}"] = random_objects(rng, 40, 700, 560)[1]
    src = make_dataset(tmp_path / "src", images, labels)
    config = SplitConfig(size=320, step=220, rates=(1.0, 0.5))
    reference = tmp_path / "reference"
    split_dataset(src, reference, config, workers=1)
    expected = snapshot(reference)

    out = tmp_path / "out"
    done = []

    def interrupt_after_two(result, total):
        done.append(result.stem)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        split_dataset(src, out, config, workers=1, progress=interrupt_after_two)
    assert not (out / MANIFEST_NAME).exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    # Simulate a kill in the middle of the next image: some of its patches, no done marker.
    partial = sorted(p for p in (reference / "images").glob("P2__*"))[:2]
    for path in partial:
        (out / "images" / path.name).write_bytes(path.read_bytes())
    (out / "images" / ".P2__320__0___0.png.0a1b2c3d.tmp").write_bytes(b"half")

    summary = split_dataset(src, out, config, workers=1)
    assert summary.resumed == 2 and summary.images == 4
    assert snapshot(out) == expected
    # A third run only reads the markers and still writes the same bytes.
    again = split_dataset(src, out, config, workers=1)
    assert again.resumed == 4 and again.patches == summary.patches and snapshot(out) == expected


def test_workers_give_the_same_bytes_as_one_process(tmp_path):
    rng = np.random.default_rng(9)
    images = {f"W{k}": make_image(700, 600, seed=k) for k in range(3)}
    labels = {stem: random_objects(rng, 30, 700, 600)[1] for stem in images}
    src = make_dataset(tmp_path / "src", images, labels)
    one, two = tmp_path / "one", tmp_path / "two"
    config = SplitConfig(size=400, step=300)
    split_dataset(src, one, config, workers=1)
    summary = split_dataset(src, two, config, workers=2)
    assert summary.images == 3
    assert snapshot(one) == snapshot(two)
    manifest = json.loads((two / MANIFEST_NAME).read_text())
    assert [im["stem"] for im in manifest["images"]] == ["W0", "W1", "W2"]
