"""Drawing rotated boxes on aerial images: ground truth, detections, class colours and a legend.

Everything here works on numpy arrays (``uint8 [H, W, 3]`` RGB) and DOTA polygons
(``float [N, 8]``: ``x1 y1 ... x4 y4`` in image pixels), so it serves both ``rgfl show`` (label
and Task1 files) and ``rgfl predict --draw`` (detector output converted to polygons).

Conventions of the pictures:
- one colour per class, fixed by the class index so that a class has the same colour in every
  picture of a run (a hand-picked palette of 20 well-separated colours, then golden-ratio hues);
- ground truth is drawn with thin dashed outlines, detections with solid outlines and a
  ``class score`` tag; a small dot marks the first vertex (the "head" of the object in DOTA);
- a legend lists each class shown with its count, in the corner that covers the fewest boxes
  (top-left when that one is free).

Line widths and text sizes grow with the image so that a 20000 px image stays readable when
scaled down and a 512 px patch is not smothered.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["class_color", "DrawStyle", "draw_polygons", "draw_legend", "draw_scene", "read_image_rgb", "write_image_rgb"]

# RGB; chosen for contrast against vegetation, water, asphalt and roofs.
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (255, 255, 255),
)


def class_color(index: int) -> tuple[int, int, int]:
    """RGB colour of class ``index``; distinct for the first 20 classes, then golden-ratio hues."""
    if index < len(_PALETTE):
        return _PALETTE[index]
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


@dataclass
class DrawStyle:
    """Sizes derived from the image size (pixels); override any of them by hand."""

    thickness: int = 2
    font_scale: float = 0.5
    dash: int = 8
    show_text: bool = True

    @classmethod
    def for_image(cls, height: int, width: int) -> "DrawStyle":
        side = max(height, width)
        thickness = max(1, round(side / 1000))
        return cls(thickness=thickness, font_scale=max(0.4, side / 2500), dash=max(4, 4 * thickness))


@dataclass
class _LegendEntry:
    name: str
    color: tuple[int, int, int]
    counts: dict[str, int] = field(default_factory=dict)


def read_image_rgb(path) -> np.ndarray:
    """Read an image file as ``uint8 [H, W, 3]`` RGB; raises InputError when it cannot be decoded."""
    import cv2

    from rgfl.errors import InputError

    data = np.fromfile(str(path), dtype=np.uint8)  # np.fromfile + imdecode copes with non-ASCII paths
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise InputError("cannot decode the image (unreadable, truncated or not an image)", path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image_rgb(path, image: np.ndarray) -> None:
    """Write ``uint8 [H, W, 3]`` RGB to ``path`` (format from the suffix), atomically."""
    import cv2

    from rgfl.fileio import atomic_write_bytes

    suffix = str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else "png"
    ok, encoded = cv2.imencode(f".{suffix}", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode an image as .{suffix}")
    atomic_write_bytes(path, encoded.tobytes())


def _dashed_polygon(canvas: np.ndarray, points: np.ndarray, color, thickness: int, dash: int) -> None:
    import cv2

    for k in range(4):
        p, q = points[k], points[(k + 1) % 4]
        length = float(np.hypot(*(q - p)))
        steps = max(1, int(length // dash))
        for s in range(0, steps, 2):
            a = p + (q - p) * (s / steps)
            b = p + (q - p) * (min(s + 1, steps) / steps)
            cv2.line(canvas, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), color, thickness, cv2.LINE_AA)


def _text_with_box(canvas: np.ndarray, text: str, origin: tuple[int, int], color, style: DrawStyle) -> None:
    """Write ``text`` on a filled box of ``color`` with its bottom-left corner at ``origin``."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    text_thickness = max(1, style.thickness // 2)
    (tw, th), baseline = cv2.getTextSize(text, font, style.font_scale, text_thickness)
    height, width = canvas.shape[:2]
    x = int(min(max(origin[0], 0), max(width - tw - 2, 0)))
    y = int(min(max(origin[1], th + baseline + 2), height - 1))
    cv2.rectangle(canvas, (x, y - th - baseline - 2), (x + tw + 2, y), color, -1)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(canvas, text, (x + 1, y - baseline - 1), font, style.font_scale, ink, text_thickness, cv2.LINE_AA)


def draw_polygons(
    image: np.ndarray,
    polygons: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    scores: np.ndarray | None = None,
    dashed: bool = False,
    style: DrawStyle | None = None,
    copy: bool = True,
) -> np.ndarray:
    """Draw quadrilaterals onto a copy of ``image`` (onto ``image`` itself with ``copy=False``).

    Args:
        image: ``uint8 [H, W, 3]`` RGB.
        polygons: ``float [N, 8]`` DOTA polygons ``x1 y1 ... x4 y4`` in image pixels.
        labels: ``int [N]`` class indices into ``class_names``.
        scores: ``float [N]`` or None; when given, each box gets a ``class score`` tag, drawn
            from the lowest score to the highest so that the best detections stay on top.
        dashed: dashed outlines (used for ground truth).

    Returns:
        the ``uint8 [H, W, 3]`` RGB array drawn on.
    """
    import cv2

    canvas = np.ascontiguousarray(image.copy()) if copy else image
    polygons = np.asarray(polygons, dtype=np.float64).reshape(-1, 8)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if polygons.shape[0] != labels.shape[0]:
        raise ValueError(f"{polygons.shape[0]} polygons but {labels.shape[0]} labels")
    style = style or DrawStyle.for_image(*canvas.shape[:2])
    order = np.arange(len(labels)) if scores is None else np.argsort(np.asarray(scores), kind="stable")
    for i in order:
        color = class_color(int(labels[i]))
        points = polygons[i].reshape(4, 2)
        if not np.isfinite(points).all():
            continue
        if dashed:
            _dashed_polygon(canvas, points, color, style.thickness, style.dash)
        else:
            cv2.polylines(canvas, [np.round(points).astype(np.int32)], True, color, style.thickness, cv2.LINE_AA)
        head = tuple(np.round(points[0]).astype(int))
        cv2.circle(canvas, head, max(2, style.thickness + 1), color, -1, cv2.LINE_AA)
        if style.show_text and scores is not None:
            name = class_names[labels[i]] if 0 <= labels[i] < len(class_names) else str(int(labels[i]))
            top = points[np.argmin(points[:, 1])]
            _text_with_box(canvas, f"{name} {float(scores[i]):.2f}", (int(top[0]), int(top[1]) - 2), color, style)
    return canvas


def draw_legend(
    image: np.ndarray,
    entries: Sequence[tuple[str, tuple[int, int, int], str]],
    style: DrawStyle | None = None,
    copy: bool = True,
    avoid: np.ndarray | None = None,
) -> np.ndarray:
    """Draw a legend box in a corner of a copy of ``image`` (of ``image`` with ``copy=False``).

    Args:
        image: ``uint8 [H, W, 3]`` RGB.
        entries: ``(class name, RGB colour, extra text such as counts)`` per line.
        avoid: ``float [K, 8]`` polygons (image pixels) the legend should not cover: of the four
            corners it takes the one whose box overlaps their bounding boxes least (top-left first
            on ties, so an empty picture keeps it there).
    """
    import cv2

    canvas = np.ascontiguousarray(image.copy()) if copy else image
    if not entries:
        return canvas
    style = style or DrawStyle.for_image(*canvas.shape[:2])
    font = cv2.FONT_HERSHEY_SIMPLEX
    text_thickness = max(1, style.thickness // 2)
    lines = [f"{name}  {extra}".rstrip() for name, _, extra in entries]
    sizes = [cv2.getTextSize(line, font, style.font_scale, text_thickness)[0] for line in lines]
    line_height = max(h for _, h in sizes) * 2
    swatch = line_height // 2 + 2
    pad = max(4, line_height // 3)
    box_w = pad * 3 + swatch + max(w for w, _ in sizes)
    box_h = pad * 2 + line_height * len(lines)
    box_w, box_h = min(box_w, canvas.shape[1]), min(box_h, canvas.shape[0])
    x0, y0 = _legend_corner(canvas.shape[1], canvas.shape[0], box_w, box_h, avoid)
    # Darken the area behind the legend instead of painting it opaque, so the image stays visible.
    region = canvas[y0 : y0 + box_h, x0 : x0 + box_w]
    region[:] = (region.astype(np.float32) * 0.35).astype(np.uint8)
    for k, ((_, color, _), line) in enumerate(zip(entries, lines)):
        y = y0 + pad + k * line_height
        cv2.rectangle(canvas, (x0 + pad, y + line_height // 4), (x0 + pad + swatch, y + line_height // 4 + swatch), color, -1)
        cv2.putText(
            canvas, line, (x0 + pad * 2 + swatch, y + line_height * 3 // 4), font, style.font_scale, (255, 255, 255), text_thickness, cv2.LINE_AA
        )
    return canvas


def _legend_corner(width: int, height: int, box_w: int, box_h: int, avoid: np.ndarray | None) -> tuple[int, int]:
    """Top-left pixel of the corner box (``box_w`` x ``box_h``) that covers the least of ``avoid``."""
    corners = [(0, 0), (width - box_w, 0), (0, height - box_h), (width - box_w, height - box_h)]
    if avoid is None or len(avoid) == 0:
        return corners[0]
    polygons = np.asarray(avoid, dtype=np.float64).reshape(-1, 8)
    x1, x2 = polygons[:, 0::2].min(1), polygons[:, 0::2].max(1)
    y1, y2 = polygons[:, 1::2].min(1), polygons[:, 1::2].max(1)

    def covered(corner: tuple[int, int]) -> float:
        cx, cy = corner
        w = np.clip(np.minimum(x2, cx + box_w) - np.maximum(x1, cx), 0, None)
        h = np.clip(np.minimum(y2, cy + box_h) - np.maximum(y1, cy), 0, None)
        return float((w * h).sum())

    return min(corners, key=covered)  # min keeps the first of equal ones


def draw_scene(
    image: np.ndarray,
    class_names: Sequence[str],
    gt_polygons: np.ndarray | None = None,
    gt_labels: np.ndarray | None = None,
    det_polygons: np.ndarray | None = None,
    det_labels: np.ndarray | None = None,
    det_scores: np.ndarray | None = None,
    legend: bool = True,
    text: bool = True,
) -> np.ndarray:
    """Ground truth (dashed) and detections (solid, with scores) plus a legend with counts.

    Args:
        image: ``uint8 [H, W, 3]`` RGB.
        gt_polygons, gt_labels: ``float [M, 8]`` and ``int [M]``, or None.
        det_polygons, det_labels, det_scores: ``float [N, 8]``, ``int [N]``, ``float [N]``, or None.

    Returns:
        a new ``uint8 [H, W, 3]`` RGB array.
    """
    style = DrawStyle.for_image(*image.shape[:2])
    style.show_text = text
    canvas = np.ascontiguousarray(image.copy())  # the only copy: a 20000 px image is 1.2 GB
    counts: dict[int, dict[str, int]] = {}
    drawn = [p for p in (gt_polygons, det_polygons) if p is not None and len(p)]
    if gt_polygons is not None and gt_labels is not None and len(gt_labels):
        draw_polygons(canvas, gt_polygons, gt_labels, class_names, dashed=True, style=style, copy=False)
        for label in np.asarray(gt_labels).tolist():
            counts.setdefault(int(label), {}).setdefault("gt", 0)
            counts[int(label)]["gt"] += 1
    if det_polygons is not None and det_labels is not None and len(det_labels):
        draw_polygons(canvas, det_polygons, det_labels, class_names, scores=det_scores, style=style, copy=False)
        for label in np.asarray(det_labels).tolist():
            counts.setdefault(int(label), {}).setdefault("det", 0)
            counts[int(label)]["det"] += 1
    if legend:
        entries = []
        for label in sorted(counts):
            name = class_names[label] if 0 <= label < len(class_names) else str(label)
            extra = "  ".join(f"{kind} {n}" for kind, n in sorted(counts[label].items(), reverse=True))
            entries.append((name, class_color(label), extra))
        avoid = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 8) for p in drawn]) if drawn else None
        draw_legend(canvas, entries, style=style, copy=False, avoid=avoid)
    return canvas
