"""rgfl split on odd input: rates that shrink an image below a pixel, labels of another (larger)
image, and an unlabelled (test) set through the rest of the chain."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rgfl.cli.main import app
from rgfl.dota.annotations import read_label_file
from rgfl.dota.split import SplitConfig, split_dataset
from rgfl.errors import InputError
from tests.dota.test_split import make_dataset, make_image, rect

runner = CliRunner()


def flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


@pytest.mark.parametrize("workers", ["1", "2"])
def test_rates_below_one_pixel_are_refused_up_front_naming_the_image(tmp_path, workers):
    src = make_dataset(tmp_path / "src", {"big": make_image(600, 500), "tiny": make_image(40, 30, 1)}, None)
    out = tmp_path / "out"
    result = runner.invoke(app, ["split", str(src), str(out), "--rates", "1,0.01", "--workers", workers])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = flat(result.output)
    assert "tiny.png: --rates 0.01 would resize this 40x30 image to less than 1 pixel" in text
    assert "use rates of at least 0.0167" in text
    assert not out.exists()  # refused before anything was written


def test_worker_refuses_too_small_rates_when_the_header_check_cannot_read_the_image(tmp_path, monkeypatch):
    # The up-front check reads headers with Pillow; an image only OpenCV reads is still refused.
    from PIL import Image

    def unreadable(*args, **kwargs):
        raise OSError("no header")

    monkeypatch.setattr(Image, "open", unreadable)
    src = make_dataset(tmp_path / "src", {"tiny": make_image(40, 30)}, None)
    with pytest.raises(InputError, match=r"tiny\.png: --rates 0\.01 would resize this 40x30 image"):
        split_dataset(src, tmp_path / "out", SplitConfig(rates=(0.01,)), workers=1)


def test_objects_wholly_outside_the_image_are_reported_and_not_written(tmp_path):
    labels = (
        rect(10, 10, 60, 40)  # line 1: inside
        + rect(700, 100, 760, 150, "plane")  # line 2: right of the 600 px wide image
        + rect(580, 480, 640, 540, "ship")  # line 3: cut by the corner: kept
        + rect(100, -90, 150, -10, "ship")  # line 4: above the image
    )
    src = make_dataset(tmp_path / "src", {"scene": make_image(600, 500)}, {"scene": labels})
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("rgfl")
    logger.addHandler(handler)
    try:
        summary = split_dataset(src, tmp_path / "out", SplitConfig(size=1024, step=824), workers=1)
    finally:
        logger.removeHandler(handler)
    assert len(messages) == 2
    assert "scene.txt:2: object lies wholly outside the 600x500 image" in messages[0]
    assert "scene.txt:4: object lies wholly outside" in messages[1]
    assert summary.bad_input == 2 and summary.objects == 2
    written = read_label_file(tmp_path / "out" / "labelTxt" / "scene__1024__0___0.txt")
    assert written.classes == ["small-vehicle", "ship"]
    with pytest.raises(InputError, match=r"scene\.txt:2: object lies wholly outside"):
        split_dataset(src, tmp_path / "strict", SplitConfig(), workers=1, strict=True)


def test_unlabelled_split_works_with_merge_and_is_refused_clearly_by_training_and_patch_eval(tmp_path):
    from rgfl.data.dataset import DotaDataset
    from rgfl.engine.build import build_train_dataset
    from rgfl.engine.config import DataConfig

    src = make_dataset(tmp_path / "src", {"T1": make_image(700, 600)}, None)
    out = tmp_path / "split"
    result = runner.invoke(app, ["split", str(src), str(out), "--size", "512", "--overlap", "112", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert not (out / "labelTxt").exists()
    patches = sorted(p.stem for p in (out / "images").glob("*.png"))
    assert len(patches) == 4
    # The dataset reads it as a test set (images, no objects).
    assert len(DotaDataset(out, ("plane",))) == 4
    # merge-submit with the split's manifest.
    dets = tmp_path / "dets"
    dets.mkdir()
    (dets / "Task1_plane.txt").write_text("".join(f"{p} 0.9 10 10 50 10 50 40 10 40\n" for p in patches))
    result = runner.invoke(app, ["merge-submit", "--dets", str(dets), "--out", str(tmp_path / "sub"), "--manifest", str(out)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sub" / "Task1_plane.txt").read_text().startswith("T1 0.9")
    # Training and patch-level evaluation need labels: one clear error each.
    with pytest.raises(InputError, match="no labelTxt/ folder inside the training data folder"):
        build_train_dataset(DataConfig(root=str(out)), ("plane",))
    result = runner.invoke(app, ["eval", "--dets", str(dets), "--gt", str(out)])
    assert result.exit_code == 2 and "no label file" in flat(result.output)
