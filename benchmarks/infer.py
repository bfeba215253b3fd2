"""Inference time per patch of the R50 rotated GFL detector, by part, against torchvision FCOS.

Usage::

    python benchmarks/infer.py                         # CPU, 1024 and 512 patches, 3 repeats
    python benchmarks/infer.py --sizes 1024 --repeats 5 --threads 2
    python benchmarks/infer.py --device cuda --batch 8 # also patches/s with and without autocast
    python benchmarks/infer.py --device cuda --sizes 1024 --batch 2 --post-only  # NMS paths only (~1 min)

Parts timed on the same random input (uint8 RGB, batch 1 on CPU):

- backbone+FPN: ResNet-50 + FPN P3-P7 (``model.backbone``) on the normalized image;
- head: the class/box/angle towers and predictors (``model.head``);
- decode: everything in ``model.postprocess`` except NMS (top-k per level, score threshold,
  distribution integrals, box decoding);
- NMS: the class-aware rotated NMS inside ``postprocess``.

On CUDA, post-processing is timed with both NMS paths on the same candidates: the device path
(backend ``torch``, ``rgfl.geometry.nms_torch``, what ``auto`` picks for CUDA tensors) and the old path (backend
``numba``: candidates copied to the CPU, the numba kernel, indices copied back); the table gives
each one's share of the whole (backbone + head + post-processing) and whether both kept the same
detections. ``--post-only`` prints just that table (on the CPU too, where the torch path is not
what ``auto`` picks: a check of the script, not a measurement that matters).

With random weights almost no score passes the 0.05 threshold, which would make post-processing
look free. So the classification logits are shifted (after the head, before post-processing) so
that ``--candidates`` (prior, class) pairs pass the threshold, a load like a busy DOTA patch
(default 3000; the maximum possible is 5 levels x nms_pre). Default test settings otherwise:
nms_pre 2000, score_thr 0.05, NMS IoU 0.1, max 2000 per image.

The peer is torchvision's ``fcos_resnet50_fpn`` (weights=None) in eval mode on the same image,
with its transform fixed to the input size (min_size = max_size = size) so both see the same
pixels; its post-processing runs on whatever its random weights give. "FCOS bb+FPN" is its
ResNet-50 + FPN alone (the same network as rgfl's backbone+FPN, with its BatchNorms unfolded);
"predict" and "FCOS" are the two whole forward passes timed alternately, round after round, and
"rgfl/FCOS" is the median of the per-round ratios. rgfl runs as ``rgfl eval/predict`` run it:
BatchNorms folded into the convolutions (``rgfl.model.fuse``). Medians over repeats after a
warm-up run. The machine is shared: compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def median_time(function, repeats: int, sync) -> float:
    function()  # warm-up (allocations, priors cache, numba compilation)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def shift_for_candidates(cls_logits: torch.Tensor, candidates: int, score_thr: float) -> float:
    """Logit shift that lets about ``candidates`` (prior, class) pairs score above ``score_thr``."""
    flat = cls_logits.float().flatten()
    k = min(candidates, flat.numel())
    kth = flat.topk(k).values[-1]
    threshold_logit = torch.logit(torch.tensor(score_thr)).item()
    return threshold_logit - kth.item() + 1e-4


def bench_rgfl(
    size: int, batch: int, device: torch.device, repeats: int, candidates: int, amp: bool, sync, nms_backends: tuple[str, ...] = ("auto",)
) -> dict[str, float]:
    """Times of the parts; ``decode``/``NMS`` of the first backend, ``decode <b>``/``NMS <b>`` of each."""
    import rgfl.model.detector as detector_module

    model = build_rgfl(device)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")

    with torch.inference_mode(), autocast:
        x = (images.float() - model.pixel_mean) / model.pixel_std
        features = model.backbone(x)
        outputs = model.head(features, model.strides)
        shift = shift_for_candidates(outputs.cls_logits, candidates * batch, model.score_thr)
        shifted = type(outputs)(**{**outputs.__dict__, "cls_logits": outputs.cls_logits + shift})

        nms_seconds: list[float] = []
        original_nms = detector_module.batched_nms_rotated
        nms_backend = ["auto"]

        def timed_nms(*args, **kwargs):
            sync()
            start = time.perf_counter()
            keep = original_nms(*args, backend=nms_backend[0], **kwargs)
            sync()
            nms_seconds.append(time.perf_counter() - start)
            return keep

        detector_module.batched_nms_rotated = timed_nms
        try:
            result: dict[str, float] = {}
            result["backbone+FPN"] = median_time(lambda: model.backbone((images.float() - model.pixel_mean) / model.pixel_std), repeats, sync)
            result["head"] = median_time(lambda: model.head(features, model.strides), repeats, sync)
            kept = {}
            for backend in nms_backends:
                nms_backend[0] = backend
                nms_seconds.clear()
                post = median_time(lambda: model.postprocess(shifted), repeats, sync)
                nms = statistics.median(nms_seconds[1:]) if len(nms_seconds) > 1 else 0.0  # [0]: warm-up
                result[f"decode {backend}"] = max(post - nms, 0.0)
                result[f"NMS {backend}"] = nms
                result[f"total {backend}"] = result["backbone+FPN"] + result["head"] + post
                detections = model.postprocess(shifted)
                kept[backend] = [(d.scores.tolist(), d.labels.tolist()) for d in detections]
            first = nms_backends[0]
            result["decode"], result["NMS"], result["total"] = result[f"decode {first}"], result[f"NMS {first}"], result[f"total {first}"]
            result["detections"] = float(sum(len(scores) for scores, _ in kept[first])) / batch
            result["same detections"] = float(all(kept[b] == kept[first] for b in nms_backends))
        finally:
            detector_module.batched_nms_rotated = original_nms
    return result


def build_rgfl(device: torch.device):
    """The R50 detector as ``rgfl eval/predict`` run it: eval mode, BatchNorms folded (rgfl.model.fuse)."""
    from rgfl.model.detector import RotatedGFL
    from rgfl.model.fuse import fold_batchnorms

    model = RotatedGFL(15, depth=50, pretrained="none").eval()
    fold_batchnorms(model)
    return model.to(device)


def build_fcos(size: int, device: torch.device):
    from torchvision.models.detection import fcos_resnet50_fpn

    return fcos_resnet50_fpn(weights=None, weights_backbone=None, min_size=size, max_size=size).to(device).eval()


def bench_fcos_backbone(size: int, batch: int, device: torch.device, repeats: int, amp: bool, sync) -> float:
    """FCOS's ResNet-50 + FPN P3-P7 alone on a normalized batch: the same network as rgfl's backbone+FPN."""
    model = build_fcos(size, device)
    x = torch.randn(batch, 3, size, size, device=device)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")
    with torch.inference_mode(), autocast:
        return median_time(lambda: model.backbone(x), repeats, sync)


def bench_end_to_end(size: int, batch: int, device: torch.device, repeats: int, amp: bool, sync) -> tuple[float, float, float]:
    """rgfl ``predict`` and FCOS ``forward`` on the same pixels, timed alternately (ABAB...) so that load
    changes on a shared machine hit both; returns (rgfl median, FCOS median, median of per-round ratios)."""
    rgfl_model, fcos_model = build_rgfl(device), build_fcos(size, device)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    fcos_images = [image.float() / 255.0 for image in images]
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")
    rgfl_times, fcos_times = [], []
    with torch.inference_mode(), autocast:
        rgfl_model.predict(images), fcos_model(fcos_images)  # warm-up
        for _ in range(repeats):
            for model, inputs, times in ((rgfl_model, images, rgfl_times), (fcos_model, fcos_images, fcos_times)):
                sync()
                start = time.perf_counter()
                model.predict(inputs) if model is rgfl_model else model(inputs)
                sync()
                times.append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(rgfl_times, fcos_times)]
    return statistics.median(rgfl_times), statistics.median(fcos_times), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 512])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=3000, help="(prior, class) pairs above the score threshold per image")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--post-only", action="store_true", help="only the rgfl parts (no FCOS, no end-to-end predict timing)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"batch {args.batch}, {args.repeats} repeats, torch {torch.__version__}")

    amp_modes = [False, True] if device.type == "cuda" else [False]
    if device.type == "cuda" or args.post_only:
        post_share_table(args, device, sync, amp_modes)
    if args.post_only:
        return
    for amp in amp_modes:
        tag = " autocast bf16" if amp else ""
        header = (
            f"{'size':>5} | {'backbone+FPN':>12} {'head':>8} {'decode':>8} {'NMS':>8} {'total':>8} | {'post %':>6} | {'dets':>6} | "
            f"{'FCOS bb+FPN':>11} | {'predict':>8} {'FCOS':>8} {'rgfl/FCOS':>9} | {'patch/s':>8}"
        )
        print(f"\nseconds per batch{tag}")
        print(header)
        print("-" * len(header))
        for size in args.sizes:
            parts = bench_rgfl(size, args.batch, device, args.repeats, args.candidates, amp, sync)
            fcos_backbone = bench_fcos_backbone(size, args.batch, device, args.repeats, amp, sync)
            predict, fcos, ratio = bench_end_to_end(size, args.batch, device, args.repeats, amp, sync)
            post = parts["decode"] + parts["NMS"]
            print(
                f"{size:>5} | {parts['backbone+FPN']:>12.4f} {parts['head']:>8.4f} {parts['decode']:>8.4f} {parts['NMS']:>8.4f} "
                f"{parts['total']:>8.4f} | {100 * post / parts['total']:>5.1f}% | {parts['detections']:>6.0f} | {fcos_backbone:>11.4f} | "
                f"{predict:>8.4f} {fcos:>8.4f} {ratio:>9.2f} | {args.batch / predict:>8.2f}"
            )


def post_share_table(args, device: torch.device, sync, amp_modes: list[bool]) -> None:
    """Post-processing share of GPU inference with the device NMS against the old CPU NMS."""
    header = (
        f"{'size':>5} {'amp':>5} | {'bb+FPN+head':>11} | {'decode':>7} {'NMS dev':>8} {'post %':>6} | "
        f"{'decode':>7} {'NMS cpu':>8} {'post %':>6} | {'same':>4} | {'dets':>6}"
    )
    print(f"\npost-processing share, {args.candidates} candidates per image: device NMS | old CPU NMS (numba, copies); seconds per batch")
    print(header)
    print("-" * len(header))
    for amp in amp_modes:
        for size in args.sizes:
            parts = bench_rgfl(size, args.batch, device, args.repeats, args.candidates, amp, sync, ("torch", "numba"))
            network = parts["backbone+FPN"] + parts["head"]
            share = {b: 100 * (parts[f"decode {b}"] + parts[f"NMS {b}"]) / parts[f"total {b}"] for b in ("torch", "numba")}
            print(
                f"{size:>5} {'bf16' if amp else 'fp32':>5} | {network:>11.4f} | {parts['decode torch']:>7.4f} {parts['NMS torch']:>8.4f} "
                f"{share['torch']:>5.1f}% | {parts['decode numba']:>7.4f} {parts['NMS numba']:>8.4f} {share['numba']:>5.1f}% | "
                f"{'yes' if parts['same detections'] else 'NO':>4} | {parts['detections']:>6.0f}"
            )


if __name__ == "__main__":
    main()
