"""Settings that train without error but not as meant: refused or warned about before training."""

from __future__ import annotations

import logging

import pytest

from rgfl.dota.synth import generate_synthetic_dataset
from rgfl.engine.build import build_train_dataset, class_names
from rgfl.engine.preflight import check_training_setup
from rgfl.errors import InputError
from tests.engine.helpers import tiny_config


def check(cfg, total_iters=100):
    dataset = build_train_dataset(cfg.data, class_names(cfg.data))
    check_training_setup(cfg, dataset, total_iters)


def test_unsplit_full_size_images_are_refused(tmp_path):
    # One 2100 px image in a DOTA layout without a split manifest: what `--data DOTA/train` gives.
    generate_synthetic_dataset(tmp_path / "full", num_images=1, image_size=2100, seed=0, num_objects=3)
    cfg = tiny_config(tmp_path / "full")
    with pytest.raises(InputError) as info:
        check(cfg)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'full'}: ")
    assert "2100 x 2100 px: this folder looks like unsplit full-size images" in message
    assert "rgfl split" in message and "--set data.max_image_side=null" in message
    # A folder written by `rgfl split` (it has the manifest), or the check switched off: accepted.
    check(tiny_config(tmp_path / "full", **{"data.max_image_side": "null"}))
    (tmp_path / "full" / "split_manifest.json").write_text("{}")
    check(cfg)


def test_images_of_many_sizes_without_a_manifest_get_a_warning(dota_sample, caplog):
    # The real DOTA sample: two full images (1111 x 1182 and 712 x 557), small enough to train on.
    cfg = tiny_config(dota_sample, **{"data.input_size": "null"})
    with caplog.at_level(logging.WARNING, logger="rgfl"):
        check(cfg)
    assert "images of different sizes (712 x 557 to 1111 x 1182 px) and no split_manifest.json" in caplog.text


def test_input_size_below_the_patch_size_warns_with_the_scale(tiny_split, caplog):
    with caplog.at_level(logging.WARNING, logger="rgfl"):
        check(tiny_config(tiny_split, **{"data.input_size": 64}))
    assert "input_size" not in caplog.text  # the 64 px patches are not resized
    with caplog.at_level(logging.WARNING, logger="rgfl"):
        check(tiny_config(tiny_split, **{"data.input_size": 32}))
    assert "data.input_size = 32 is smaller than the patches (64 px, 4 of 4 sampled): every patch is scaled by 0.50" in caplog.text


def test_warmup_longer_than_the_run_warns(tiny_split, caplog):
    cfg = tiny_config(tiny_split, **{"schedule.warmup_iters": 500, "schedule.warmup_ratio": 0.001})
    with caplog.at_level(logging.WARNING, logger="rgfl"):
        check(cfg, total_iters=500)
    assert "warmup" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="rgfl"):
        check(cfg, total_iters=40)
    # lr factor at the last iteration (39): 1 - (1 - 39/500) * 0.999 = 0.0789
    assert "schedule.warmup_iters = 500 is longer than the whole run (40 iterations): the learning rate never reaches its value (it ends at 8% of it)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rgfl"):
        check(tiny_config(tiny_split, **{"schedule.warmup_iters": 500, "schedule.warmup": "none"}), total_iters=40)
    assert "warmup" not in caplog.text
