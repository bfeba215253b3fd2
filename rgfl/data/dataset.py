"""A torch Dataset over a DOTA-format folder (batches: :func:`rgfl.data.collate.collate_batch`).

A DOTA-format folder holds ``images/<name>.<ext>`` and ``labelTxt/<name>.txt`` (the layout of the
original DOTA release and of ``rgfl split`` output). A folder without ``labelTxt/`` is a test set:
every image gets an empty target.

Difficulty handling. DOTA marks hard objects ``difficult 1``; ``rgfl split`` (like mmrotate and the
DOTA development kit) marks objects cut by a patch border ``difficult 2``. Each can be kept as a
normal object (``keep``), kept but marked ignore (``ignore``: neither positive nor negative when
training) or removed (``drop``: the detector then learns its pixels as background).
Defaults, and why:

- ``difficult="keep"``: the reference recipe (reference notes 7.1) and mmrotate train on
  difficult-1 objects; they are real, fully visible objects.
- ``truncated="ignore"``: the reference recipe drops difficult-2 objects, but its devkit split
  marks only objects that are mostly outside the patch. With rgfl's default split a
  difficult-2 object is 70% to 100% inside the patch, so dropping it would teach the detector
  that a visible object is background; ignoring it avoids that without asking for a box that
  reaches outside the patch. The same object is whole in the neighbouring patch (overlap 200).
  The reference configs use ``drop`` on a ``rgfl split --clip`` (DOTA devkit) split, where
  difficulty 2 marks only fragments with IoF <= 0.7: that is exactly the reference's loader
  (difficulty <= 1 trained, 2 left out); see docs/reproduce.md.

Ground-truth boxes. ``box_from="min_area_rect"`` (default) takes the minimum-area rectangle of each
label quad; ``"edges"`` reads the box off the quad's first two edges as the reference recipe does
(:func:`rgfl.geometry.boxes.poly2obb_edges`). ``min_edge`` drops objects whose edge ``p1p2`` or
``p2p3`` is shorter than that many label pixels (the reference: 2), before any difficulty rule (the
reference's order). :attr:`DotaDataset.object_counts` says how many objects each rule kept, ignored
or dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rgfl.data.collate import collate_batch
from rgfl.data.transforms import Compose, Sample, Transform
from rgfl.dota.annotations import read_label_file
from rgfl.dota.classes import resolve_classes
from rgfl.errors import InputError, ProblemLog
from rgfl.structures import Target

__all__ = ["DotaDataset", "collate_batch", "read_image", "IMAGE_EXTENSIONS", "DIFFICULTY_MODES", "BOX_SOURCES"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DIFFICULTY_MODES = ("keep", "ignore", "drop")
BOX_SOURCES = ("min_area_rect", "edges")
# OpenCV >= 4.10 decodes straight to RGB; older versions decode BGR and we convert.
_DECODES_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)
_DECODE_FLAG = _DECODES_RGB if _DECODES_RGB is not None else cv2.IMREAD_COLOR


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to a uint8 RGB array [H, W, 3] (grey and 16-bit images converted).

    Raises:
        InputError: the file is missing, unreadable or not a decodable image.
    """
    path = Path(path)
    # imdecode on bytes (not imread) so that non-ASCII paths work and I/O errors are reported.
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise InputError(f"cannot read image ({error.strerror or error})", path) from None
    image = cv2.imdecode(data, _DECODE_FLAG) if data.size else None
    if image is None:
        raise InputError("cannot decode image (empty, truncated or not an image file)", path)
    return image if _DECODE_FLAG == _DECODES_RGB else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class DotaDataset(Dataset):
    """DOTA-format folder -> ``(image uint8 Tensor[3, H, W] RGB, Target)``.

    ``Target.boxes`` are float32 [M, 5] le135 ``(cx, cy, w, h, theta)`` (from each label polygon
    after the transforms, by ``box_from``), ``labels`` int64 indices into ``class_names``,
    ``ignore`` bool, ``image_id`` the file stem, ``scale`` from the transforms' resizes.

    Args:
        root: folder with ``images/`` and optionally ``labelTxt/``.
        class_names: class list, or a spec for :func:`rgfl.dota.classes.resolve_classes`
            (``"dota1.0"``, a comma list, a file); objects of other classes are reported as bad
            lines.
        transforms: a callable ``(Sample, torch.Generator | None) -> Sample`` (see
            :mod:`rgfl.data.transforms`), applied to every sample.
        filter_empty: leave out images with no object that is kept and not ignored (for
            training; counts in :attr:`num_filtered`).
        difficult, truncated: what to do with ``difficult 1`` and ``difficult 2`` objects:
            ``keep``, ``ignore`` or ``drop`` (see the module docstring for the defaults).
        box_from: ``"min_area_rect"`` or ``"edges"`` (the reference rule), see the module docstring.
        min_edge: drop objects whose first or second quad edge is shorter (pixels of the label
            file, before any resize); 0 keeps all.
        problems: where bad label lines and label files without an image are reported (skip
            and warn by default; a strict log raises :class:`InputError` instead).
        seed: when given, sample ``i`` of epoch ``e`` is augmented with a torch Generator
            seeded from ``(seed, e, i)``, so augmentation does not depend on worker count or
            order and a resumed run sees the same samples (call :meth:`set_epoch`). When None,
            transforms draw from torch's global RNG.

    Attributes:
        image_ids: file stems in dataset order (sorted).
        num_images: images found (with and without labels), before ``filter_empty``.
        object_counts: over the images in the dataset (after ``filter_empty``): ``positive``
            (trained on), ``ignored`` (neither positive nor negative) and ``dropped``, a dict by
            reason: ``small`` (``min_edge``), ``difficult`` (difficulty 1 with ``drop``),
            ``truncated`` (difficulty 2 with ``drop``).
        problems: the :class:`ProblemLog` used while indexing.
    """

    def __init__(
        self,
        root: str | Path,
        class_names: Sequence[str] | str,
        transforms: Transform | Sequence[Transform] | None = None,
        filter_empty: bool = False,
        difficult: str = "keep",
        truncated: str = "ignore",
        problems: ProblemLog | None = None,
        seed: int | None = None,
        box_from: str = "min_area_rect",
        min_edge: float = 0.0,
    ):
        for name, mode in (("difficult", difficult), ("truncated", truncated)):
            if mode not in DIFFICULTY_MODES:
                raise ValueError(f"{name} must be one of {DIFFICULTY_MODES}, got {mode!r}")
        if box_from not in BOX_SOURCES:
            raise ValueError(f"box_from must be one of {BOX_SOURCES}, got {box_from!r}")
        if not min_edge >= 0:
            raise ValueError(f"min_edge must be >= 0, got {min_edge}")
        self.box_from = box_from
        self.min_edge = float(min_edge)
        self.root = Path(root)
        self.class_names = resolve_classes(class_names) if isinstance(class_names, (str, Path)) else tuple(class_names)
        if transforms is not None and not callable(transforms):
            transforms = Compose(list(transforms))
        self.transforms = transforms
        self.difficult = difficult
        self.truncated = truncated
        self.problems = problems if problems is not None else ProblemLog()
        self.seed = seed
        self.epoch = 0

        image_dir, label_dir = self.root / "images", self.root / "labelTxt"
        if not image_dir.is_dir():
            raise InputError(f"no images/ folder; expected {image_dir}/<name>.png (DOTA layout)", self.root)
        images: dict[str, Path] = {}
        for path in sorted(image_dir.iterdir()):
            if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
                images.setdefault(path.stem, path)
        self.has_labels = label_dir.is_dir()
        labelled: dict[str, Path] = {}
        if self.has_labels:
            for path in sorted(label_dir.glob("*.txt")):
                if path.name.startswith("."):
                    continue  # temporary files of an interrupted write
                if path.stem not in images:
                    self.problems.report(f"label file has no image {path.stem}.* in {image_dir}", path)
                    continue
                labelled[path.stem] = path

        self.image_ids: list[str] = []
        self.image_paths: list[Path] = []
        self._objects: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.num_filtered = 0
        self.num_images = len(images)
        self.object_counts: dict = {"positive": 0, "ignored": 0, "dropped": {"small": 0, "difficult": 0, "truncated": 0}}
        for stem, image_path in images.items():
            polygons, labels, ignore, dropped = self._load_objects(labelled.get(stem))
            if filter_empty and not (~ignore).any():
                self.num_filtered += 1
                continue
            self.image_ids.append(stem)
            self.image_paths.append(image_path)
            self._objects.append((polygons, labels, ignore))
            self.object_counts["positive"] += int((~ignore).sum())
            self.object_counts["ignored"] += int(ignore.sum())
            for reason, count in dropped.items():
                self.object_counts["dropped"][reason] += count
        logger.info(
            "%s: %d images (%d left out as empty), %d skipped label problems",
            self.root, len(self.image_ids), self.num_filtered, len(self.problems),
        )

    def _load_objects(self, label_path: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
        """Polygons float64 [M, 8], labels int64 [M], ignore bool [M] after the size and difficulty
        rules, and the number of objects each rule dropped."""
        dropped = {"small": 0, "difficult": 0, "truncated": 0}
        if label_path is None:
            return np.zeros((0, 8)), np.zeros(0, np.int64), np.zeros(0, bool), dropped
        objects = read_label_file(label_path, self.class_names, self.problems)
        keep = np.ones(len(objects), bool)
        ignore = np.zeros(len(objects), bool)
        if self.min_edge > 0 and len(objects):
            from rgfl.geometry.boxes import quad_edge_lengths

            small = (quad_edge_lengths(objects.polygons) < self.min_edge).any(axis=1)
            dropped["small"] = int(small.sum())
            keep &= ~small
        for flag, mode, reason in ((1, self.difficult, "difficult"), (2, self.truncated, "truncated")):
            hit = (objects.difficult == flag) & keep
            if mode == "drop":
                dropped[reason] = int(hit.sum())
                keep &= ~hit
            elif mode == "ignore":
                ignore |= hit
        return objects.polygons[keep], objects.labels(self.class_names)[keep], ignore[keep], dropped

    def __len__(self) -> int:
        return len(self.image_ids)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (only matters with ``seed``)."""
        self.epoch = int(epoch)

    def generator_for(self, index: int) -> torch.Generator | None:
        """The torch Generator sample ``index`` is augmented with (None without a seed)."""
        if self.seed is None:
            return None
        state = np.random.SeedSequence([int(self.seed), self.epoch, int(index)]).generate_state(2, np.uint32)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        polygons, labels, ignore = self._objects[index]
        sample = Sample(read_image(self.image_paths[index]), polygons, labels, ignore, self.image_ids[index])
        if self.transforms is not None:
            sample = self.transforms(sample, self.generator_for(index))
        boxes = self.polygons_to_boxes(sample.polygons)
        target = Target(
            boxes=boxes,
            labels=torch.from_numpy(np.ascontiguousarray(sample.labels, dtype=np.int64)),
            ignore=torch.from_numpy(np.ascontiguousarray(sample.ignore, dtype=bool)),
            image_id=sample.image_id,
            scale=float(sample.scale),
        )
        image = torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1)
        return image, target

    def polygons_to_boxes(self, polygons: np.ndarray) -> Tensor:
        """Label polygons float64 [M, 8] -> float32 [M, 5] le135 boxes by ``box_from``.

        Converting after the transforms is the same as converting first and transforming the
        box: flips, quarter turns, rotations and uniform resizes keep the quad's edges, vertex
        order and diagonal.
        """
        from rgfl.geometry.boxes import poly2obb, poly2obb_edges

        tensor = torch.from_numpy(np.ascontiguousarray(polygons, dtype=np.float64))
        boxes = poly2obb_edges(tensor) if self.box_from == "edges" else poly2obb(tensor, "le135")
        return boxes.to(torch.float32).reshape(-1, 5)

    def objects(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Untransformed polygons [M, 8], labels [M], ignore [M] of image ``index`` (no decode)."""
        return self._objects[index]

    def __repr__(self) -> str:
        return (
            f"DotaDataset(root={str(self.root)!r}, images={len(self)}, classes={len(self.class_names)}, "
            f"difficult={self.difficult!r}, truncated={self.truncated!r}, box_from={self.box_from!r}, min_edge={self.min_edge:g})"
        )
