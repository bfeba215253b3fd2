"""RotatedGFL.postprocess: a batch gives each image what it gives alone, empty images included,
and on CUDA the host synchronisations do not grow with the batch size."""

from __future__ import annotations

import warnings

import pytest
import torch

from rgfl.model.detector import RotatedGFL
from rgfl.model.head import HeadOutputs
from tests.conftest import DEVICES


def _outputs(device: str, batch: int, empty: tuple[int, ...] = ()) -> tuple[RotatedGFL, HeadOutputs]:
    torch.manual_seed(0)
    model = RotatedGFL(3, depth=18, pretrained="none", max_per_img=6).eval().to(device)
    torch.nn.init.constant_(model.head.cls_conv.bias, 1.0)  # detections to check from random weights
    images = torch.randint(0, 256, (batch, 3, 96, 128), dtype=torch.uint8, device=device)
    with torch.no_grad():
        outputs = model(images)
    logits = outputs.cls_logits.clone()
    for b in empty:
        logits[b] = -20.0  # no score above the threshold: an image without detections
    return model, HeadOutputs(logits, outputs.box_logits, outputs.angle_logits, outputs.level_sizes, outputs.strides)


def _image(outputs: HeadOutputs, b: int) -> HeadOutputs:
    angle = outputs.angle_logits[b : b + 1] if outputs.angle_logits is not None else None
    return HeadOutputs(outputs.cls_logits[b : b + 1], outputs.box_logits[b : b + 1], angle, outputs.level_sizes, outputs.strides)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_equals_images_alone_with_empty_images(device):
    model, outputs = _outputs(device, 4, empty=(0, 2))
    batched = model.postprocess(outputs)
    assert [len(d) for d in batched][0] == 0 and len(batched[2]) == 0
    assert len(batched[1]) == 6 and len(batched[3]) == 6  # max_per_img applies per image
    for b, det in enumerate(batched):
        alone = model.postprocess(_image(outputs, b))[0]
        assert det.boxes.device.type == device
        torch.testing.assert_close(det.boxes, alone.boxes)
        torch.testing.assert_close(det.scores, alone.scores)
        assert det.labels.tolist() == alone.labels.tolist()
        assert bool((det.scores[:-1] >= det.scores[1:]).all())
    model.max_per_img = 0  # 0 keeps all
    uncapped = model.postprocess(outputs)
    assert len(uncapped[1]) > 6 and len(uncapped[0]) == 0
    torch.testing.assert_close(uncapped[3].scores[:6], batched[3].scores)
    _, none = _outputs(device, 2, empty=(0, 1))
    assert [len(d) for d in model.postprocess(none)] == [0, 0]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_synchronisations_do_not_grow_with_the_batch():
    def syncs(batch: int) -> int:
        model, outputs = _outputs("cuda", batch)
        model.postprocess(outputs)  # warm-up: priors cache, numba compilation
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model.postprocess(outputs)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    one, eight = syncs(1), syncs(8)
    assert eight == one, (one, eight)
    assert one <= 12
