"""A killed `merge-submit CHECKPOINT` / `eval CHECKPOINT` run (kill -9 mid-write) leaves temp
files in the shard folder and the patch-level Task1 folder; the next run into them removes them
(only the exact temp-name pattern of rgfl.fileio.atomic_write)."""

from __future__ import annotations

from rgfl.engine.inference import InferenceSettings, shards_to_task1, stream_patch_detections
from tests.engine.blob_detector import BlobDetector
from tests.engine.test_inference import CLASSES, split_root  # noqa: F401 - the fixture

STALE = ".P0001.txt.0a1b2c3d.tmp"


def test_rerun_removes_temp_files_of_a_killed_run(split_root, tmp_path):  # noqa: F811
    root, _ = split_root
    shards, task1 = tmp_path / "shards", tmp_path / "task1"
    settings = InferenceSettings(batch_size=4, workers=0)
    stream_patch_detections(BlobDetector(), root / "images", shards, settings, {})
    task1.mkdir()
    for folder in (shards, task1):
        (folder / STALE).write_text("half a shard")
        (folder / "notes.tmp").write_text("the user's")
    again = stream_patch_detections(BlobDetector(), root / "images", shards, settings, {})
    assert again.resumed_images == 3
    assert not (shards / STALE).exists() and (shards / "notes.tmp").exists()
    shards_to_task1(shards, task1, CLASSES)
    assert sorted(p.name for p in task1.iterdir()) == sorted(["notes.tmp", *(f"Task1_{c}.txt" for c in CLASSES)])
