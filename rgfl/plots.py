"""Pictures of a training run and of an evaluation: ``curves.png`` and ``pr_curves.png``.

Each picture is written with the data behind it as JSON beside it (``curves.json``,
``pr_curves.json``): the exact points drawn, so a test or a user can check a curve against
``log.jsonl`` / ``metrics.json`` without reading pixels.

* :func:`training_series` reads a run's ``log.jsonl`` into series: every loss term and the total
  (``train`` records, one point per log interval), the learning rate, and the validation AP50,
  AP75 and mAP (``val`` records, one point per validation). The x axis is the epoch, fractional
  inside an epoch (``epoch - 1 + iter_in_epoch / iters_per_epoch``), so that runs with other batch
  sizes or log intervals line up. After a resume the log holds the records of the interrupted
  iterations twice; the later ones win.
* :func:`plot_training_curves` draws one panel per series, the runs overlaid in each panel
  (comparison of runs is the common case), into one PNG.
* :func:`plot_pr_curves` draws the precision-recall curve of each class at IoU 0.5 from an
  :class:`~rgfl.evaluation.EvalResult`, with the class AP50 in the legend.

matplotlib is an optional dependency (``pip install rgfl[plots]``); it is used through its
object API with the Agg canvas, so nothing here touches pyplot's global backend or needs a display.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rgfl.errors import InputError, RgflError
from rgfl.fileio import atomic_write_bytes, atomic_write_text

__all__ = [
    "CURVES_PNG",
    "PR_CURVES_PNG",
    "VAL_METRICS",
    "PlotSize",
    "MATPLOTLIB_MISSING",
    "matplotlib_available",
    "training_series",
    "plot_training_curves",
    "pr_curve_series",
    "plot_pr_curves",
    "write_run_curves",
    "write_eval_pr_curves",
]

logger = logging.getLogger(__name__)

CURVES_PNG = "curves.png"
PR_CURVES_PNG = "pr_curves.png"
VAL_METRICS = ("AP50", "AP75", "mAP")
# Pixels per panel of the training curves and size of the PR picture, at DPI dots per inch.
DPI = 100
PANEL_SIZE = (400, 300)
PANEL_COLUMNS = 4
PR_SIZE = (900, 600)
# A precision-recall curve can have millions of points (one per detection); more than this many
# are thinned to evenly spaced ones (the last point, full recall reached, is always kept).
MAX_PR_POINTS = 2000

# No square brackets: the CLI prints errors with rich markup, which would eat "[plots]".
MATPLOTLIB_MISSING = "matplotlib is not installed: pip install matplotlib (or rgfl with its plots extra) to draw plots"


@dataclass(frozen=True)
class PlotSize:
    """Pixel size of a written PNG."""

    width: int
    height: int


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _new_figure(width: int, height: int):
    """A figure of exactly ``width x height`` pixels on the Agg canvas (no pyplot, no display)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RgflError(MATPLOTLIB_MISSING) from None
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path, data: dict) -> None:
    """PNG at the figure's exact size, then its data as JSON beside it (both written atomically)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_text(path.with_suffix(".json"), json.dumps(data, indent=1) + "\n")


# ----------------------------------------------------------------------------- training curves
def _log_path(run: str | Path) -> Path:
    run = Path(run)
    path = run / "log.jsonl" if run.is_dir() else run
    if not path.is_file():
        what = "no log.jsonl in this folder (expected a training work dir)" if run.is_dir() else "training log not found"
        raise InputError(what, run)
    return path


def _read_records(path: Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                # The last line of a log being written (or of a killed run) may be incomplete.
                logger.warning("%s:%d: not a JSON record, skipped", path, number)
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def training_series(run: str | Path) -> dict[str, dict[str, list[float]]]:
    """The curves of one run: ``{name: {"x": epochs, "y": values}}``.

    Args:
        run: a training work dir (with ``log.jsonl``) or the path of a ``log.jsonl``.

    Names: ``loss`` (total), each ``loss_*`` term and ``lr`` from the ``train`` records, and
    ``AP50``, ``AP75``, ``mAP`` from the ``val`` records when validation ran. Non-finite values
    (a skipped batch's NaN) are left out of their series.
    """
    train: list[dict] = []
    val: dict[int, dict] = {}
    for record in _read_records(_log_path(run)):
        event = record.get("event")
        if event == "train" and _finite(record.get("iteration")):
            # A resumed run logs again from its checkpoint: drop what the interrupted run logged past it.
            while train and train[-1]["iteration"] >= record["iteration"]:
                train.pop()
            train.append(record)
        elif event == "val" and _finite(record.get("epoch")):
            val[int(record["epoch"])] = record
    series: dict[str, dict[str, list[float]]] = {}

    def add(name: str, x: float, y: Any) -> None:
        if _finite(y):
            points = series.setdefault(name, {"x": [], "y": []})
            points["x"].append(float(x))
            points["y"].append(float(y))

    for record in train:
        per_epoch = record.get("iters_per_epoch") or 1
        x = record.get("epoch", 1) - 1 + record.get("iter_in_epoch", per_epoch) / per_epoch
        for name in _train_names(record):
            add(name, x, record[name])
    for epoch in sorted(val):
        for name in VAL_METRICS:
            add(name, epoch, val[epoch].get(name))
    return series


def _train_names(record: Mapping[str, Any]) -> list[str]:
    terms = sorted(key for key in record if key.startswith("loss_"))
    return (["loss"] if "loss" in record else []) + terms + (["lr"] if "lr" in record else [])


def _panel_order(names: set[str]) -> list[str]:
    terms = sorted(name for name in names if name.startswith("loss_"))
    ordered = (["loss"] if "loss" in names else []) + terms + (["lr"] if "lr" in names else [])
    return ordered + [name for name in VAL_METRICS if name in names]


def _run_names(runs: Sequence[str | Path]) -> list[str]:
    """Short, unique labels: the work dir's name, or more of its path where two runs share it."""
    paths = [Path(run).resolve() for run in runs]
    paths = [path.parent if path.is_file() else path for path in paths]
    depth = 1
    while True:
        names = ["/".join(path.parts[-depth:]) for path in paths]
        if len(set(names)) == len(names) or depth >= max(len(path.parts) for path in paths):
            return names
        depth += 1


def plot_training_curves(runs: Sequence[str | Path], out: str | Path, title: str | None = None) -> PlotSize:
    """Draw the curves of one or several runs into ``out`` (PNG) and their data into ``out.json``.

    Args:
        runs: training work dirs (or ``log.jsonl`` paths); each run is one colour in every panel.
        out: the PNG to write; ``out`` with the suffix ``.json`` gets
            ``{"x": "epoch", "runs": {label: training_series(run)}}``.

    Returns the PNG's size: ``PANEL_COLUMNS`` (or fewer) panels of ``PANEL_SIZE`` per row.
    """
    if not runs:
        raise RgflError("no run to plot")
    out = Path(out)
    labels = _run_names(runs)
    all_series = {label: training_series(run) for label, run in zip(labels, runs)}
    panels = _panel_order({name for series in all_series.values() for name in series})
    if not panels:
        raise InputError("the training log has no train or val record yet", _log_path(runs[0]))
    columns = min(PANEL_COLUMNS, len(panels))
    rows = -(-len(panels) // columns)
    size = PlotSize(columns * PANEL_SIZE[0], rows * PANEL_SIZE[1])
    figure = _new_figure(size.width, size.height)
    axes = figure.subplots(rows, columns, squeeze=False)
    colors = [f"C{k % 10}" for k in range(len(labels))]
    for index, name in enumerate(panels):
        ax = axes[index // columns][index % columns]
        for label, color in zip(labels, colors):
            points = all_series[label].get(name)
            if points:
                marker = "o" if name in VAL_METRICS or len(points["x"]) == 1 else None
                ax.plot(points["x"], points["y"], color=color, marker=marker, markersize=3, linewidth=1.2, label=label)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if name == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if name in VAL_METRICS:
            ax.set_ylim(-0.02, 1.02)
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].axis("off")
    if len(labels) > 1:
        handles, names = axes[0][0].get_legend_handles_labels()
        axes[0][0].legend(handles, names, fontsize=7, loc="best")
    figure.suptitle(title or ("training curves: " + ", ".join(labels)), fontsize=11)
    figure.tight_layout()
    _save(figure, out, {"x": "epoch", "runs": all_series})
    return size


def write_run_curves(work_dir: str | Path) -> Path | None:
    """``work_dir/curves.png`` from its log, for the end of each epoch of ``rgfl train``.

    Never stops a training run: without matplotlib it warns once and returns None; any other
    failure to draw is logged as a warning.
    """
    global _warned_missing
    if not matplotlib_available():
        if not _warned_missing:
            logger.warning("%s; training goes on without curves.png", MATPLOTLIB_MISSING)
            _warned_missing = True
        return None
    path = Path(work_dir) / CURVES_PNG
    try:
        plot_training_curves([work_dir], path, title=f"training curves: {Path(work_dir).name}")
    except Exception as error:  # a picture is never worth a training run
        logger.warning("could not draw %s: %s", path, error)
        return None
    return path


_warned_missing = False


def write_eval_pr_curves(result: Any, out: str | Path) -> Path | None:
    """``pr_curves.png`` of an evaluation, for ``rgfl eval``: without matplotlib, a warning, no picture."""
    if not matplotlib_available():
        logger.warning("%s; no %s written", MATPLOTLIB_MISSING, Path(out).name)
        return None
    plot_pr_curves(result, out)
    return Path(out)


# ----------------------------------------------------------------------------- precision-recall
def _thin(recall: np.ndarray, precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(recall) <= MAX_PR_POINTS:
        return recall, precision
    keep = np.unique(np.linspace(0, len(recall) - 1, MAX_PR_POINTS).round().astype(np.int64))
    return recall[keep], precision[keep]


def pr_curve_series(result: Any) -> dict[str, dict[str, Any]]:
    """``{class: {"AP50", "num_gt", "num_dets", "recall", "precision"}}`` at IoU 0.5, as drawn.

    Needs an :class:`~rgfl.evaluation.EvalResult` from :func:`~rgfl.evaluation.evaluate_detections`
    (its ``extra["pr50"]`` holds each class's recall and precision after each detection, in score
    order). Curves longer than ``MAX_PR_POINTS`` are thinned to evenly spaced detections.
    """
    curves = result.extra.get("pr50")
    if curves is None:
        raise RgflError("this evaluation result has no precision-recall data (evaluate_detections keeps it at IoU 0.5)")
    series = {}
    for name in result.class_names:
        recall, precision = curves.get(name, (np.zeros(0), np.zeros(0)))
        recall, precision = _thin(np.asarray(recall, dtype=np.float64), np.asarray(precision, dtype=np.float64))
        stats = result.per_class[name]
        series[name] = {
            "AP50": float(min(max(stats.ap[0.5], 0.0), 1.0)),
            "num_gt": int(stats.num_gt),
            "num_dets": int(stats.num_dets),
            "recall": recall.tolist(),
            "precision": precision.tolist(),
        }
    return series


def plot_pr_curves(result: Any, out: str | Path, title: str | None = None) -> PlotSize:
    """Precision-recall per class at IoU 0.5 into ``out`` (PNG, ``PR_SIZE``) and ``out.json``.

    The legend gives each class's AP50 (the ``ap_method`` of the evaluation) and the mean.
    """
    from rgfl.visualize import class_color

    out = Path(out)
    series = pr_curve_series(result)
    size = PlotSize(*PR_SIZE)
    figure = _new_figure(size.width, size.height)
    ax = figure.add_axes((0.07, 0.09, 0.58, 0.83))
    for index, (name, curve) in enumerate(series.items()):
        color = tuple(c / 255 for c in class_color(index))
        ax.plot(curve["recall"], curve["precision"], color=color, linewidth=1.3, label=f"{name} {100 * curve['AP50']:.1f}")
    # The evaluation's own mean (over the classes its mean_over setting averages), not a recount.
    mean = float(min(max(result.AP50, 0.0), 1.0))
    ax.plot([], [], " ", label=f"mean AP50 {100 * mean:.1f} ({len(result.averaged_classes)} classes)")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"precision-recall at IoU 0.5 ({result.ap_method} AP, {result.num_images} images)", fontsize=11)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title="class AP50 (%)", title_fontsize=8)
    _save(figure, out, {"iou": 0.5, "ap_method": result.ap_method, "mean_AP50": mean, "classes": series})
    return size
