"""ONNX export: onnxruntime on real image patches against the PyTorch detector.

The checkpoint is a tiny model (ResNet-18, one-conv head, 128 px input, random weights) whose
class layer is scaled so that scores spread over (0, 1): a fresh head scores every prior at
0.01 and would leave nothing above the score threshold to compare.
"""

from __future__ import annotations

import math
import sys

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rgfl.cli.main import app
from tests.cli.test_show_predict import assert_clean_error
from tests.test_api import CLASSES, make_tiny_checkpoint

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

runner = CliRunner()
SIZE = 128


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("onnx") / "checkpoints" / "epoch_0001.pt", input_size=SIZE)


@pytest.fixture(scope="module")
def dynamic_onnx(checkpoint):
    out = checkpoint.parent.parent / "dynamic.onnx"
    result = invoke("export", checkpoint, "--format", "onnx", "--out", out, "--dynamic")
    assert result.exit_code == 0, result.output
    assert f"input {SIZE}x{SIZE}, dynamic batch" in " ".join(result.output.split())
    return out


@pytest.fixture(scope="module")
def patches(dota_sample):
    """Three real 128 px inputs from P1888; the second and third with padding at the bottom/right."""
    image = cv2.cvtColor(cv2.imread(str(dota_sample / "images" / "P1888.png")), cv2.COLOR_BGR2RGB)
    crops = [image[0:256, 0:256], image[250:506, 300:556], image[300:556, 400:656]]
    batch = np.stack([cv2.resize(c, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for c in crops])
    images = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()
    sizes = [(SIZE, SIZE), (SIZE, 96), (64, SIZE)]
    return images, sizes


def assert_same_detections(expected, got, box_atol=2e-3, score_atol=1e-5):
    assert len(expected) == len(got)
    for ref, det in zip(expected, got):
        assert len(ref) == len(det)
        assert torch.equal(ref.labels.cpu(), det.labels.cpu())
        torch.testing.assert_close(det.scores, ref.scores.cpu(), atol=score_atol, rtol=0)
        torch.testing.assert_close(det.boxes[:, :4], ref.boxes[:, :4].cpu(), atol=box_atol, rtol=0)
        # angles compared modulo pi: a box at the le135 boundary may come out on either side
        delta = torch.remainder(det.boxes[:, 4] - ref.boxes[:, 4].cpu() + math.pi / 2, math.pi) - math.pi / 2
        assert delta.abs().max() < 1e-4 if len(det) else True


def test_onnxruntime_matches_pytorch_on_real_patches(checkpoint, dynamic_onnx, patches):
    import onnxruntime

    from rgfl.engine.build import load_detector
    from rgfl.export.onnx import PriorDecoder, postprocess, read_metadata

    images, sizes = patches
    detector, _ = load_detector(checkpoint)
    session = onnxruntime.InferenceSession(str(dynamic_onnx), providers=["CPUExecutionProvider"])
    meta = read_metadata(session)
    boxes, scores = session.run(None, {"images": images.numpy(), "image_sizes": np.array(sizes, dtype=np.float32)})
    with torch.no_grad():
        ref_boxes, ref_scores = PriorDecoder(detector, SIZE)(images, torch.tensor(sizes, dtype=torch.float32))
    assert boxes.shape == (3, sum(meta.num_per_level), 5) and scores.shape == (3, sum(meta.num_per_level), 3)
    box_diff = np.abs(boxes[..., :4] - ref_boxes[..., :4].numpy()).max()
    score_diff = np.abs(scores - ref_scores.numpy()).max()
    print(f"onnxruntime vs PyTorch: max abs difference boxes {box_diff:.2g} px, scores {score_diff:.2g}")  # measured 1.8e-4 px, 1.5e-6
    assert box_diff < 2e-3 and score_diff < 1e-5, (box_diff, score_diff)
    # padding priors are masked like RotatedGFL.predict does
    assert scores[1].reshape(-1, 3).max() > 0 and np.all(scores[2][ref_scores[2].amax(1).numpy() == 0] == 0)

    got = postprocess(boxes, scores, meta)
    expected = detector.predict(images, sizes)
    assert sum(len(d) for d in expected) > 30, "the test needs detections to compare"
    assert_same_detections(expected, got)


def test_metadata_holds_classes_and_postprocess_settings(dynamic_onnx):
    from rgfl.export.onnx import read_metadata

    meta = read_metadata(dynamic_onnx)
    assert meta.class_names == CLASSES
    assert (meta.size, meta.batch, meta.input_size, meta.angle_version) == (SIZE, None, SIZE, "le135")
    assert (meta.nms_pre, meta.score_thr, meta.nms_iou, meta.max_per_img) == (300, 0.05, 0.1, 2000)
    # P2-P7 of a 128 px input
    assert meta.num_per_level == (32 * 32, 16 * 16, 8 * 8, 4 * 4, 2 * 2, 1) and meta.strides == (4, 8, 16, 32, 64, 128)


def test_fixed_batch_runs_any_number_of_images_like_pytorch(checkpoint, patches, tmp_path):
    from rgfl.engine.build import load_detector
    from rgfl.export.onnx import OnnxDetector

    out = tmp_path / "b2.onnx"
    assert invoke("export", checkpoint, "--out", out, "--batch", "2").exit_code == 0
    onnx_detector = OnnxDetector(out)
    assert onnx_detector.meta.batch == 2
    images, sizes = patches
    detector, _ = load_detector(checkpoint)
    # three images through a batch-2 graph: a full chunk, then one image and a masked filler;
    # smaller inputs are zero-padded up to the exported size (as a PyTorch batch pads them)
    assert_same_detections(detector.predict(images, sizes), onnx_detector.predict(images, sizes))
    small = images[:, :, :96, :96]
    padded = torch.zeros_like(images)
    padded[:, :, :96, :96] = small
    assert_same_detections(detector.predict(padded, [(96, 96)] * 3), onnx_detector.predict(small, [(96, 96)] * 3))
    with pytest.raises(Exception, match="exported for 128 x 128 px inputs but got 160 x 160"):
        onnx_detector.predict(torch.zeros((1, 3, 160, 160), dtype=torch.uint8))


def test_predict_command_with_the_onnx_file_gives_the_checkpoint_detections(checkpoint, dynamic_onnx, dota_sample, tmp_path):
    from rgfl.dota.task1 import read_task1_file

    image = dota_sample / "images" / "P1888.png"
    for source, out in ((checkpoint, tmp_path / "pt"), (dynamic_onnx, tmp_path / "onnx")):
        result = invoke("predict", source, image, "--out", out, "--size", 256, "--overlap", 64, "--device", "cpu")
        assert result.exit_code == 0, result.output
    total = 0
    for name in CLASSES:
        ref = read_task1_file(tmp_path / "pt" / f"Task1_{name}.txt")
        got = read_task1_file(tmp_path / "onnx" / f"Task1_{name}.txt")
        assert got.image_ids == ref.image_ids
        np.testing.assert_allclose(got.scores, ref.scores, atol=1e-5, rtol=0)
        np.testing.assert_allclose(got.polygons, ref.polygons, atol=2e-2, rtol=0)  # window px scaled x2 back to the image
        total += len(ref)
    assert total > 30


def test_export_bad_input(checkpoint, tmp_path, monkeypatch):
    assert_clean_error(invoke("export", tmp_path / "gone.pt", "--out", tmp_path / "m.onnx"), "gone.pt", "checkpoint not found")
    assert_clean_error(invoke("export", checkpoint, "--out", tmp_path / "m.txt"), ".onnx")
    assert_clean_error(invoke("export", checkpoint, "--out", tmp_path / "m.onnx", "--batch", "2", "--dynamic"), "--batch", "--dynamic")
    assert_clean_error(invoke("export", checkpoint, "--out", tmp_path / "m.onnx", "--size", "100"), "multiple of 32")
    assert_clean_error(invoke("export", checkpoint, "--out", tmp_path / "m.onnx", "--format", "tflite"), "tflite")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert_clean_error(invoke("predict", tmp_path / "junk.onnx", dota_image(tmp_path), "--out", tmp_path / "o"), "junk.onnx", "cannot load the ONNX model")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    assert_clean_error(invoke("export", checkpoint, "--out", tmp_path / "m.onnx"), "pip install onnx")
    assert not (tmp_path / "m.onnx").exists()


def dota_image(folder):
    path = folder / "a.png"
    cv2.imwrite(str(path), np.zeros((40, 40, 3), np.uint8))
    return path


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_export_from_a_model_on_cuda_gives_the_same_graph(checkpoint, dynamic_onnx, patches, tmp_path):
    import onnxruntime

    from rgfl.api import export_onnx

    export_onnx(checkpoint, tmp_path / "cuda.onnx", batch=None, device="cuda")
    images, sizes = patches
    feed = {"images": images.numpy(), "image_sizes": np.array(sizes, dtype=np.float32)}
    outputs = [onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed) for path in (dynamic_onnx, tmp_path / "cuda.onnx")]
    for from_cpu, from_cuda in zip(*outputs):
        np.testing.assert_allclose(from_cuda, from_cpu, rtol=0, atol=1e-5)


def test_vanilla_head_exports_its_delta_decoding(tmp_path):
    """The reference head decodes deltas from square anchors: the graph repeats that decoding."""
    from rgfl.engine.build import build_model, load_detector
    from rgfl.engine.checkpoint import save_checkpoint
    from rgfl.engine.config import config_to_dict, load_config
    from rgfl.export.onnx import OnnxDetector, export_onnx
    from tests.engine.helpers import TINY_CONFIG

    overrides = ["data.classes=plane,ship", "data.input_size=64", "model.stacked_convs=1", "model.nms_pre=100", "model.head=vanilla"]
    cfg = load_config(TINY_CONFIG, overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model, 2)
    with torch.no_grad():
        model.head.cls_conv.weight.mul_(8.0)
        model.head.cls_conv.bias.fill_(-1.0)
        model.head.reg_conv.weight.mul_(20.0)  # boxes of many shapes and angles
    path = save_checkpoint({"config": config_to_dict(cfg), "model": model.state_dict()}, tmp_path / "vanilla.pt")
    detector, _ = load_detector(path)
    export_onnx(detector, ("plane", "ship"), tmp_path / "vanilla.onnx", 64, batch=None)
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8))
    sizes = [(64, 64), (64, 40)]
    expected = detector.predict(images, sizes)
    assert sum(len(d) for d in expected) > 30
    assert_same_detections(expected, OnnxDetector(tmp_path / "vanilla.onnx").predict(images, sizes))
