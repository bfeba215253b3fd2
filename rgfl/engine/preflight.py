"""Checks before training for settings that run without error but do something else than meant.

- ``--data DOTA/train``: unsplit full-size images (thousands of pixels a side) are refused; they
  must be cut into patches by ``rgfl split`` first. Smaller images of many sizes in a folder
  without ``split_manifest.json`` get a warning (patches of a split share one size).
- ``data.input_size`` smaller than the patches: every patch is scaled down (a warning says by how
  much; inference scales the same way, but small objects shrink with it).
- ``schedule.warmup_iters`` longer than the whole run: the learning rate never reaches its value
  (a warning says how far it gets).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rgfl.dota.split_manifest import MANIFEST_NAME
from rgfl.engine.config import Config
from rgfl.errors import InputError

__all__ = ["check_training_setup", "image_sizes"]

logger = logging.getLogger(__name__)

SAMPLE = 256  # images whose size is read (headers only, ~1 ms each): patches of a split share one size


def image_sizes(paths: Sequence[Path], sample: int = SAMPLE) -> list[tuple[Path, int, int]]:
    """``(path, width, height)`` of up to ``sample`` images spread over ``paths``, read from the
    file headers. Unreadable files are left out (the data loader reports them)."""
    from PIL import Image

    step = max(1, len(paths) // sample)
    sizes = []
    for path in list(paths)[::step][:sample]:
        try:
            with Image.open(path) as image:
                width, height = image.size
        except Image.DecompressionBombError:
            width = height = 1 << 16  # over 178 million pixels: certainly no patch
        except (OSError, ValueError, SyntaxError):
            continue
        sizes.append((Path(path), width, height))
    return sizes


def check_training_setup(cfg: Config, dataset: Any, total_iters: int, warn: bool = True) -> None:
    """Refuse unsplit full-size training images; warn (when ``warn``) about the other traps.

    ``dataset`` needs ``image_paths`` (a :class:`rgfl.data.DotaDataset`); without it only the
    schedule is checked.

    Raises:
        InputError: the training images look like unsplit full-size images.
    """
    paths = getattr(dataset, "image_paths", None)
    sizes = image_sizes(paths) if paths else []
    root = Path(cfg.data.root) if cfg.data.root is not None else None
    _check_unsplit(cfg, root, sizes, warn)
    if warn:
        _check_input_size(cfg, sizes)
        _check_warmup(cfg, total_iters)


def _check_unsplit(cfg: Config, root: Path | None, sizes: list[tuple[Path, int, int]], warn: bool) -> None:
    limit = cfg.data.max_image_side
    if limit is None or root is None or (root / MANIFEST_NAME).is_file() or not sizes:
        return
    path, width, height = max(sizes, key=lambda item: max(item[1], item[2]))
    if max(width, height) <= limit:
        if warn and len({(w, h) for _, w, h in sizes}) > 1:
            smallest = min(sizes, key=lambda item: max(item[1], item[2]))
            logger.warning(
                "%s: images of different sizes (%d x %d to %d x %d px) and no %s: if these are full-size images rather "
                "than patches, cut them into patches with `rgfl split` first",
                root, smallest[1], smallest[2], width, height, MANIFEST_NAME,
            )  # fmt: skip
        return
    raise InputError(
        f"{path.name} is {width} x {height} px: this folder looks like unsplit full-size images "
        f"(no {MANIFEST_NAME}, images larger than data.max_image_side = {limit}). Cut them into patches "
        f"first, e.g. `rgfl split {root} split/{root.name}_1024_512 --preset dota-1024-512`, and train on "
        f"that folder; to train on these images as they are, --set data.max_image_side=null",
        root,
    )


def _check_input_size(cfg: Config, sizes: list[tuple[Path, int, int]]) -> None:
    target = cfg.data.input_size
    if target is None or not sizes:
        return
    side, count = Counter(max(w, h) for _, w, h in sizes).most_common(1)[0]
    if side <= target:
        return
    logger.warning(
        "data.input_size = %d is smaller than the patches (%d px, %d of %d sampled): every patch is scaled by %.2f "
        "before the detector sees it (inference scales the same way), so objects shrink with it; "
        "--set data.input_size=null trains at full resolution",
        target, side, count, len(sizes), target / side,
    )  # fmt: skip


def _check_warmup(cfg: Config, total_iters: int) -> None:
    schedule = cfg.schedule
    if schedule.warmup == "none" or schedule.warmup_iters <= total_iters or total_iters <= 0:
        return
    if schedule.warmup == "linear":
        reached = 1.0 - (1.0 - (total_iters - 1) / schedule.warmup_iters) * (1.0 - schedule.warmup_ratio)
    else:
        reached = schedule.warmup_ratio
    logger.warning(
        "schedule.warmup_iters = %d is longer than the whole run (%d iterations): the learning rate never reaches "
        "its value (it ends at %.0f%% of it); lower schedule.warmup_iters or train longer",
        schedule.warmup_iters, total_iters, 100 * reached,
    )  # fmt: skip
