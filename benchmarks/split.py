"""Benchmark `rgfl split` against ultralytics' split_dota on synthetic 4000 x 4000 DOTA images.

    .venv/bin/python benchmarks/split.py [--images 10] [--repeats 3] [--ultralytics-python /tmp/ulvenv/bin/python]

What it does, in one run on the same images:
1. Builds N synthetic 4000 x 4000 PNG images with about 300 rotated objects each (textured ground:
   smooth colour fields plus pixel noise, so PNG costs about what aerial photos cost) and their
   DOTA labels (cached under --work).
2. Times `rgfl split SRC OUT --size 1024 --overlap 200 --workers 2` (the real CLI, PNG) with
   medians over repeats, and the bytes it writes.
3. Times ultralytics' `split_dota` (from a separate venv, if given): as shipped (one process,
   JPEG), and its per-image functions driven by a 2-process pool writing PNG through
   `cv2.imwrite` (OpenCV's default PNG settings, the ones mmrotate's and the devkit's splitters
   use), to compare at equal workers and format. Checks that both produce the same windows.
4. Breaks one worker's time down (decode, objects, encode, write) and sweeps PNG settings.

This machine is shared and noisy: compare only numbers from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["plane", "ship", "storage-tank", "small-vehicle", "large-vehicle", "tennis-court", "harbor", "bridge"]


def make_image(rng: np.random.Generator, size: int, objects: int) -> tuple[np.ndarray, list[str]]:
    """A textured 'ground' with rotated rectangles of several classes; returns BGR and label lines."""
    low = rng.integers(40, 200, (size // 64 + 2, size // 64 + 2, 3), dtype=np.uint8)
    image = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 6, (size, size, 1)).astype(np.int16)
    image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    lines = []
    for _ in range(objects):
        cls = int(rng.integers(len(CLASSES)))
        # Mostly small objects, some large; about a tenth cross a 1024/824 window border.
        w = float(np.exp(rng.uniform(np.log(10), np.log(300))))
        h = w * rng.uniform(0.3, 1.0)
        cx, cy = rng.uniform(w, size - w), rng.uniform(w, size - w)
        theta = rng.uniform(0, np.pi)
        c, s = np.cos(theta), np.sin(theta)
        pts = np.array([[cx + c * dx - s * dy, cy + s * dx + c * dy] for dx, dy in
                        ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2))])
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.fillPoly(image, [np.round(pts).astype(np.int32)], colour)
        lines.append(" ".join(f"{v:.0f}" for v in pts.reshape(-1)) + f" {CLASSES[cls]} 0")
    return image, lines


def build_dataset(work: Path, count: int, size: int, objects: int) -> Path:
    src = work / "src"
    stamp = src / f".built-{count}-{size}-{objects}"
    if stamp.exists():
        return src
    rng = np.random.default_rng(2024)
    (src / "images").mkdir(parents=True, exist_ok=True)
    (src / "labelTxt").mkdir(exist_ok=True)
    yolo = work / "yolo"
    (yolo / "images" / "train").mkdir(parents=True, exist_ok=True)
    (yolo / "labels" / "train").mkdir(parents=True, exist_ok=True)
    for k in range(count):
        image, lines = make_image(rng, size, objects)
        stem = f"S{k:04d}"
        cv2.imwrite(str(src / "images" / f"{stem}.png"), image)
        (src / "labelTxt" / f"{stem}.txt").write_text("imagesource:synthetic\ngsd:0.5\n" + "\n".join(lines) + "\n")
        # The same objects in ultralytics' YOLO-OBB input format (class, normalized x1 y1 ... y4).
        os.link(src / "images" / f"{stem}.png", yolo / "images" / "train" / f"{stem}.png") if not (
            yolo / "images" / "train" / f"{stem}.png").exists() else None
        yolo_lines = []
        for line in lines:
            parts = line.split()
            coords = [float(v) / size for v in parts[:8]]
            yolo_lines.append(f"{CLASSES.index(parts[8])} " + " ".join(f"{v:.6g}" for v in coords))
        (yolo / "labels" / "train" / f"{stem}.txt").write_text("\n".join(yolo_lines) + "\n")
    stamp.touch()
    return src


def folder_bytes(folder: Path, pattern: str) -> tuple[int, int]:
    files = [p for p in folder.rglob(pattern) if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (all processes it started) of a command."""
    cpu = children_cpu()
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, children_cpu() - cpu


def run_rgfl(src: Path, out: Path, workers: int, extra: list[str]) -> tuple[float, float]:
    subprocess.run(["rm", "-rf", str(out)], check=True)
    rgfl = Path(sys.executable).with_name("rgfl")
    return timed([str(rgfl), "split", str(src), str(out), "--size", "1024", "--overlap", "200", "--workers", str(workers), *extra])


ULTRA_POOL = textwrap.dedent(
    """
    import sys, time, cv2
    from multiprocessing import Pool
    from pathlib import Path
    import ultralytics.data.split_dota as sd

    data_root, save_dir, workers, ext = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    original_imwrite = cv2.imwrite

    def png_imwrite(path, image, params=None):
        # split_dota hard-codes .jpg; write PNG with OpenCV's default PNG settings instead.
        return original_imwrite(path[:-4] + ".png", image)

    if ext == "png":
        cv2.imwrite = png_imwrite

    def one(anno):
        windows = sd.get_windows(anno["ori_size"], (1024,), (200,))
        objs = sd.get_window_obj(anno, windows)
        sd.crop_and_save(anno, windows, objs, str(Path(save_dir) / "images" / "train"), str(Path(save_dir) / "labels" / "train"))

    if __name__ == "__main__":
        start = time.perf_counter()
        (Path(save_dir) / "images" / "train").mkdir(parents=True, exist_ok=True)
        (Path(save_dir) / "labels" / "train").mkdir(parents=True, exist_ok=True)
        annos = sd.load_yolo_dota(data_root, "train")
        if workers == 0:  # as shipped: split_images_and_labels, one process, JPEG
            sd.split_images_and_labels(data_root, save_dir, "train", (1024,), (200,))
        else:
            with Pool(workers) as pool:
                list(pool.imap_unordered(one, annos))
        print(time.perf_counter() - start)
    """
)


RGFL_CPU = textwrap.dedent(
    """
    import sys, time
    from rgfl.dota.split import SplitConfig, split_dataset

    if __name__ == "__main__":
        summary = split_dataset(sys.argv[1], sys.argv[2], SplitConfig(ext=sys.argv[4]), workers=int(sys.argv[3]))
        print(time.process_time() + summary.cpu_seconds)
    """
)


def rgfl_cpu(src: Path, out: Path, workers: int, ext: str, script: Path) -> float:
    """CPU seconds of an rgfl split: its main process plus what the workers report per image.

    (RUSAGE_CHILDREN cannot see rgfl's workers: they are forked by multiprocessing's fork server.)
    """
    subprocess.run(["rm", "-rf", str(out)], check=True)
    result = subprocess.run([sys.executable, str(script), str(src), str(out), str(workers), ext],
                            check=True, capture_output=True, text=True)
    return float(result.stdout.split()[-1])


def run_ultralytics(python: str, yolo: Path, out: Path, workers: int, ext: str, script: Path) -> tuple[float, float]:
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return timed([python, str(script), str(yolo), str(out), str(workers), ext])


def breakdown(src: Path, images: int) -> dict[str, float]:
    """CPU seconds per image of each stage, one process, rgfl's own functions."""
    from rgfl.dota.annotations import read_label_file
    from rgfl.dota.images import encode_image, read_image
    from rgfl.dota.split import SplitConfig, assign_objects, sliding_windows
    from rgfl.fileio import atomic_write_bytes

    config = SplitConfig()
    stages = {"read labels": 0.0, "decode PNG": 0.0, "windows + IoF": 0.0, "encode PNG": 0.0, "write files": 0.0}
    tmp = src.parent / "breakdown"
    tmp.mkdir(exist_ok=True)
    paths = sorted((src / "images").glob("*.png"))[:images]
    for path in paths:
        t0 = time.process_time()
        labels = read_label_file(src / "labelTxt" / f"{path.stem}.txt", config.classes)
        t1 = time.process_time()
        image = read_image(path)
        t2 = time.process_time()
        windows = sliding_windows(image.shape[1], image.shape[0], 1024, 824)
        assign_objects(labels.polygons, labels.classes, labels.difficult, windows, image.shape[1::-1])
        t3 = time.process_time()
        encoded = [encode_image(image[y1:y2, x1:x2], "png", config.png_compression) for x1, y1, x2, y2 in windows]
        t4 = time.process_time()
        for k, data in enumerate(encoded):
            atomic_write_bytes(tmp / f"{k}.png", data)
        t5 = time.process_time()
        for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            stages[name] += dt / len(paths)
    return stages


def png_sweep(src: Path) -> list[tuple[str, float, float]]:
    """Encode milliseconds and MB per 1024 x 1024 patch for several PNG settings (median of patches)."""
    image = cv2.imread(str(sorted((src / "images").glob("*.png"))[0]))
    patches = [image[y:y + 1024, x:x + 1024] for x in (0, 1648) for y in (0, 1648)]
    real = REPO.parent / "shared" / "data" / "dota-sample" / "images" / "P0706.png"
    if real.exists():
        patches.append(cv2.imread(str(real))[:1024, :1024])
    from rgfl.dota.images import encode_png, png_encoder_name

    settings = {
        "cv2 default (level 1, RLE)": [],
        "rgfl, opencv fallback (1, RLE, up)": lambda p: encode_png(p, 1, "opencv"),
        "level 0 (stored)": [cv2.IMWRITE_PNG_COMPRESSION, 0],
        "level 1": [cv2.IMWRITE_PNG_COMPRESSION, 1],
        "level 3": [cv2.IMWRITE_PNG_COMPRESSION, 3],
        "level 6": [cv2.IMWRITE_PNG_COMPRESSION, 6],
        "RLE + SUB filter": [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB],
        "RLE + UP filter": [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP],
        "Huffman + SUB filter": [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB],
    }
    if png_encoder_name(1) == "isal":
        settings["rgfl, isal (level 1, up)"] = lambda p: encode_png(p, 1, "isal")
        settings["rgfl, isal (level 3, up)"] = lambda p: encode_png(p, 3, "isal")
    rows = []
    for name, params in settings.items():
        times, sizes = [], []
        for patch in patches:
            for _ in range(2):
                t = time.process_time()
                size = len(params(patch)) if callable(params) else cv2.imencode(".png", patch, params)[1].size
                times.append(time.process_time() - t)
            sizes.append(size)
        rows.append((name, 1000 * statistics.median(times), statistics.mean(sizes) / 1e6))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/rgfl-split-bench"))
    parser.add_argument("--ultralytics-python", default="/tmp/ulvenv/bin/python",
                        help="python of a venv with ultralytics installed ('' to skip)")
    args = parser.parse_args()

    src = build_dataset(args.work, args.images, args.size, args.objects)
    n = args.images
    print(f"{n} synthetic {args.size}x{args.size} images, {args.objects} objects each, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")

    results: dict[str, list[tuple[float, float]]] = {}
    have_ultra = bool(args.ultralytics_python) and Path(args.ultralytics_python).exists()
    script = args.work / "ultra_pool.py"
    script.write_text(ULTRA_POOL)
    cpu_script = args.work / "rgfl_cpu.py"
    cpu_script.write_text(RGFL_CPU)
    for _ in range(args.repeats):
        # Interleave tools so that machine noise hits all of them alike.
        wall, _ = run_rgfl(src, args.work / "out_rgfl", args.workers, [])
        cpu = rgfl_cpu(src, args.work / "out_rgfl_cpu", args.workers, "png", cpu_script)
        results.setdefault("rgfl png", []).append((wall, cpu))
        if have_ultra:
            results.setdefault("ultralytics png (pool)", []).append(
                run_ultralytics(args.ultralytics_python, args.work / "yolo", args.work / "out_ul_png", args.workers, "png", script))
    wall, _ = run_rgfl(src, args.work / "out_rgfl_jpg", args.workers, ["--ext", "jpg"])
    results["rgfl jpg"] = [(wall, rgfl_cpu(src, args.work / "out_rgfl_cpu", args.workers, "jpg", cpu_script))]
    if have_ultra:
        results["ultralytics as shipped (1 process, jpg)"] = [
            run_ultralytics(args.ultralytics_python, args.work / "yolo", args.work / "out_ul_jpg", 0, "jpg", script)]

    print()
    print("s/image: median wall seconds per image (the CLI for rgfl); CPU s/image: user+sys of all its processes,")
    print("robust to a busy machine (rgfl: a separate library run, main process + workers' per-image CPU)")
    print(f"{'tool':42s} {'workers':>7s} {'s/image':>8s} {'CPU s/image':>11s} {'wall vs rgfl':>12s} {'CPU vs rgfl':>11s} {'patches':>8s} {'MB written':>10s}")
    base = statistics.median(t for t, _ in results["rgfl png"]) / n
    base_cpu = statistics.median(c for _, c in results["rgfl png"]) / n
    outs = {"rgfl png": ("out_rgfl", "*.png", args.workers), "rgfl jpg": ("out_rgfl_jpg", "*.jpg", args.workers),
            "ultralytics png (pool)": ("out_ul_png", "*.png", args.workers),
            "ultralytics as shipped (1 process, jpg)": ("out_ul_jpg", "*.jpg", 1)}
    for name, times in results.items():
        folder, pattern, workers = outs[name]
        count, size = folder_bytes(args.work / folder, pattern)
        per = statistics.median(t for t, _ in times) / n
        cpu = statistics.median(c for _, c in times) / n
        print(f"{name:42s} {workers:7d} {per:8.3f} {cpu:11.3f} {per / base:11.2f}x {cpu / base_cpu:10.2f}x {count:8d} {size / 1e6:10.1f}")

    rgfl_names = {p.stem for p in (args.work / "out_rgfl" / "images").glob("*.png")}
    if have_ultra:
        ul_names = {p.stem for p in (args.work / "out_ul_png" / "images" / "train").glob("*.png")}
        print(f"\nsame windows as ultralytics: {rgfl_names == ul_names} ({len(rgfl_names)} patches)")
    manifest = json.loads((args.work / "out_rgfl" / "split_manifest.json").read_text())
    print(f"PNG used by rgfl: level {manifest['parameters']['png_compression']}, encoder {manifest['parameters']['png_encoder']}")

    print("\nwhere one worker's time goes (rgfl, CPU seconds per image, one process):")
    stages = breakdown(src, min(3, n))
    total = sum(stages.values())
    for name, seconds in stages.items():
        print(f"  {name:16s} {seconds:6.3f}  {100 * seconds / total:5.1f} %")

    print("\nPNG settings, 1024 x 1024 patch (synthetic + one real DOTA patch): median CPU ms, mean MB")
    for name, ms, mb in png_sweep(src):
        print(f"  {name:28s} {ms:7.1f} ms {mb:6.2f} MB")


if __name__ == "__main__":
    main()
