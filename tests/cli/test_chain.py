"""End to end: the whole chain on a tiny synthetic set (rgfl demo --quick), then the checkpoint commands.

One module-scoped run of ``rgfl demo --quick`` (synth -> split -> train a few iterations -> eval
-> eval --merged -> merge-submit --zip -> predict --draw, every stage the real command) provides
the checkpoint and folders that the other tests reuse, so the chain is trained once.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rgfl.cli.main import app
from tests.cli.test_show_predict import assert_clean_error

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    out = tmp_path_factory.mktemp("chain") / "demo"
    # The CLI routes the "rgfl" logger to its console (propagation off). The per-test restore of the
    # root conftest runs after this module-scoped set-up, so restore it here, or every later test's
    # caplog misses rgfl's warnings.
    logger = logging.getLogger("rgfl")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        result = invoke("demo", "--quick", "--out", out)
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    assert result.exit_code == 0, result.output + repr(result.exception)
    checkpoints = sorted((out / "work" / "checkpoints").glob("*.pt"))
    assert checkpoints, "training wrote a checkpoint"
    yield out, checkpoints[-1], result.output
    for checkpoint in out.rglob("*.pt"):  # ~140 MB each; pytest keeps the folders of three sessions
        checkpoint.unlink()


def _class_names(out: Path) -> list[str]:
    return sorted(p.name[len("Task1_") : -len(".txt")] for p in (out / "submission").glob("Task1_*.txt"))


def test_every_stage_writes_its_files(chain):
    out, checkpoint, output = chain
    # synth + split
    for part in ("train", "val", "test"):
        assert any((out / "synth" / part / "images").iterdir())
        assert any((out / "synth" / part / "labelTxt").iterdir())
        patches = list((out / "split" / part / "images").iterdir())
        assert patches and all("__" in p.stem for p in patches)
    # train
    assert (out / "work" / "config.yaml").is_file() and (out / "work" / "log.jsonl").is_file()
    assert (out / "work" / "curves.png").is_file()
    # eval, patch level and merged
    for folder in ("eval_patches", "eval"):
        metrics = json.loads((out / folder / "metrics.json").read_text())
        assert set(metrics) == {"AP50", "AP75", "mAP", "ap_method", "num_images", "per_class", "mean_over", "num_classes", "num_classes_averaged"}
        assert all(0.0 <= metrics[k] <= 1.0 for k in ("AP50", "AP75", "mAP"))
        assert (out / folder / "patch_dets" / "shards" / "inference.json").is_file()
        assert (out / folder / "pr_curves.png").is_file() and (out / folder / "pr_curves.json").is_file()
    patch_images = {p.stem.split("__")[0] for p in (out / "split" / "val" / "images").iterdir()}
    assert json.loads((out / "eval" / "metrics.json").read_text())["num_images"] == len(list((out / "synth" / "val" / "labelTxt").iterdir()))
    assert json.loads((out / "eval_patches" / "metrics.json").read_text())["num_images"] == len(list((out / "split" / "val" / "labelTxt").iterdir()))
    assert patch_images
    merged_files = sorted((out / "eval" / "merged_dets").glob("Task1_*.txt"))
    assert merged_files
    for path in merged_files:  # image-level names: source stems, not patch names
        for line in path.read_text().splitlines():
            assert line.split()[0] in patch_images
    # merge-submit: every class file, the flat zip
    names = _class_names(out)
    assert names, "merge-submit wrote Task1 files"
    archives = list((out / "submission").glob("*.zip"))
    assert len(archives) == 1
    with zipfile.ZipFile(archives[0]) as archive:
        assert sorted(archive.namelist()) == sorted(f"Task1_{n}.txt" for n in names)
    # predict --draw on a held-out full image
    held_out = sorted((out / "synth" / "test" / "images").iterdir())[0]
    assert (out / "predict" / f"{held_out.stem}.png").is_file()
    assert sorted(p.name[6:-4] for p in (out / "predict").glob("Task1_*.txt")) == names
    # the demo ends with the table and the paths
    text = flat(output)
    assert "AP50" in text and "submission archive:" in text and "drawn picture:" in text


def test_eval_checkpoint_resumes_and_refuses_other_runs(chain, tmp_path):
    out, checkpoint, _ = chain
    target = tmp_path / "eval"
    first = invoke("eval", checkpoint, "--data", out / "split" / "val", "--out", target, "--device", "cpu", "--workers", "0")
    assert first.exit_code == 0, first.output
    reference = json.loads((target / "metrics.json").read_text())
    assert reference == json.loads((out / "eval_patches" / "metrics.json").read_text()), "deterministic inference"
    shards = sorted((target / "patch_dets" / "shards").glob("*.txt"))
    shards[0].unlink()  # as if interrupted before the first source image was written
    again = invoke("eval", checkpoint, "--data", out / "split" / "val", "--out", target, "--device", "cpu", "--workers", "0")
    assert again.exit_code == 0, again.output
    assert "resumed" in flat(again.output)
    assert json.loads((target / "metrics.json").read_text()) == reference
    # other weights are another run: refused, not mixed
    copy = tmp_path / "copy.pt"
    copy.write_bytes(checkpoint.read_bytes())
    other = invoke("eval", copy, "--data", out / "split" / "val", "--out", target, "--device", "cpu", "--batch-size", "3")
    assert_clean_error(other, "another run", "checkpoint")


def test_checkpoint_commands_bad_input(chain, tmp_path):
    out, checkpoint, _ = chain
    val = out / "split" / "val"
    assert_clean_error(invoke("eval", checkpoint, "--out", tmp_path / "o"), "--data")
    assert_clean_error(invoke("eval", checkpoint, "--data", tmp_path / "none", "--out", tmp_path / "o"), "data folder not found")
    assert_clean_error(invoke("eval", checkpoint, "--data", val, "--out", tmp_path / "o", "--merged"), "--merged needs --gt")
    assert_clean_error(invoke("eval", checkpoint, "--data", val, "--out", tmp_path / "o", "--dets", tmp_path), "not both")
    assert_clean_error(invoke("eval", checkpoint, "--data", val, "--out", tmp_path / "o", "--device", "gpu9"), "--device")
    assert_clean_error(invoke("eval", checkpoint, "--data", val, "--out", tmp_path / "o", "--batch-size", "0"), "--batch-size")
    assert_clean_error(invoke("eval", "--data", val, "--out", tmp_path / "o"), "CHECKPOINT")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(checkpoint.read_bytes()[:1000])
    assert_clean_error(invoke("eval", broken, "--data", val, "--out", tmp_path / "o"), "broken.pt")
    not_split = tmp_path / "raw"
    (not_split / "images").mkdir(parents=True)
    (not_split / "images" / "P0001.png").write_bytes((out / "synth" / "test" / "images").iterdir().__next__().read_bytes())
    assert_clean_error(invoke("merge-submit", checkpoint, "--data", not_split, "--out", tmp_path / "s"), "rgfl split")
    assert_clean_error(invoke("merge-submit", checkpoint, "--out", tmp_path / "s"), "--data")
    assert_clean_error(invoke("predict", checkpoint, tmp_path / "missing.png", "--out", tmp_path / "p"), "no such file")


def test_predict_folder_and_show_of_its_output(chain, tmp_path):
    out, checkpoint, _ = chain
    images = out / "synth" / "val" / "images"
    # one window per 640 px image keeps this quick; the window grid itself is tested in tests/engine
    result = invoke("predict", checkpoint, images, "--out", tmp_path / "p", "--size", "640", "--overlap", "0", "--device", "cpu")
    assert result.exit_code == 0, result.output
    stems = {p.stem for p in images.iterdir()}
    for path in (tmp_path / "p").glob("Task1_*.txt"):
        assert {line.split()[0] for line in path.read_text().splitlines()} <= stems
    image = sorted(images.iterdir())[0]
    shown = invoke("show", image, "--dets", tmp_path / "p", "--score-thr", "0", "--out", tmp_path / "s.png")
    assert shown.exit_code == 0 and (tmp_path / "s.png").is_file(), shown.output
