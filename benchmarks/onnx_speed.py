"""Benchmark the ONNX export on the CPU: onnxruntime against PyTorch on the same batches.

Builds a detector from a config (random weights, class layer scaled so that scores spread and the
postprocess has candidates), exports it with `rgfl.api.export_onnx` at the model's input size,
then times one batch of uint8 inputs:

- torch: ``RotatedGFL.predict`` (BatchNorms folded, as ``rgfl predict`` loads it), float32, CPU;
- onnxruntime: the exported graph + ``rgfl.export.onnx.postprocess`` (the same NMS).

Usage: python benchmarks/onnx_speed.py [--config configs/rgfl_r18_tiny_cpu.yaml] [--size 256]
       [--batch 2] [--repeats 5] [--threads N]
Prints a table; medians over repeats. The machine may be shared, so expect noise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rgfl.engine.build import build_model, class_names, load_detector  # noqa: E402
from rgfl.engine.checkpoint import save_checkpoint  # noqa: E402
from rgfl.engine.config import config_to_dict, load_config  # noqa: E402
from rgfl.export.onnx import OnnxDetector, export_onnx  # noqa: E402


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up (allocations, onnxruntime's first-run optimisation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "rgfl_r18_tiny_cpu.yaml"))
    parser.add_argument("--size", type=int, default=None, help="input side (default: the config's data.input_size, else 1024)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads of both (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    cfg = load_config(args.config, ["model.pretrained=none"])
    size = args.size or cfg.data.input_size or 1024
    names = class_names(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg.model, len(names))
    with torch.no_grad():
        model.head.cls_conv.weight.mul_(8.0)
        model.head.cls_conv.bias.fill_(-1.0)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_checkpoint({"config": config_to_dict(cfg), "model": model.state_dict()}, Path(tmp) / "model.pt")
        detector, _ = load_detector(checkpoint, "cpu")
        start = time.perf_counter()
        export_onnx(detector, names, Path(tmp) / "model.onnx", size, batch=args.batch)
        export_seconds = time.perf_counter() - start
        runtime = OnnxDetector(Path(tmp) / "model.onnx", threads=threads)
        rng = np.random.default_rng(0)
        images = torch.from_numpy(rng.integers(0, 256, (args.batch, 3, size, size), dtype=np.uint8))
        sizes = [(size, size)] * args.batch
        with torch.inference_mode():
            torch_s = median_seconds(lambda: detector.predict(images, sizes), args.repeats)
        ort_s = median_seconds(lambda: runtime.predict(images, sizes), args.repeats)
        detections = sum(len(d) for d in runtime.predict(images, sizes))
    print(f"config {Path(args.config).name}, input {size} px, batch {args.batch}, {threads} threads, {detections} detections, export {export_seconds:.1f} s")
    print(f"{'runner':<22}{'s / batch (median)':>20}{'images / s':>12}{'ratio':>8}")
    for label, seconds in (("torch predict", torch_s), ("onnxruntime + NMS", ort_s)):
        print(f"{label:<22}{seconds:>20.4f}{args.batch / seconds:>12.2f}{seconds / torch_s:>8.2f}")


if __name__ == "__main__":
    main()
