"""`rgfl plot RUN...`: training curves of one or several runs in one picture (rgfl.plots does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rgfl.cli.common import console, handle_errors
from rgfl.cli.run_model import help_text

PLOT_HELP = """Draw the training curves of one or several runs side by side.

One panel per loss term, the total loss, the learning rate and, when validation ran, AP50 / AP75 /
mAP, against the epoch.

RUN is a training work dir (with log.jsonl) or a log.jsonl file. With several runs every panel
overlays them, one colour per run (the legend names each run by its folder). The data drawn is
written beside the picture as JSON (curves.json for curves.png).

`rgfl train` writes the same picture for its own run to WORK_DIR/curves.png after every epoch.
Needs matplotlib: pip install 'rgfl\\[plots]'.

Examples:

  rgfl plot runs/r50

  rgfl plot runs/r50 runs/r50_lr2x runs/r50_p2 --out compare.png
"""


def report_pr_curves(result, path: Path) -> None:
    """Write ``pr_curves.png`` (+ JSON) of an evaluation and say where; a warning without matplotlib."""
    from rgfl.plots import write_eval_pr_curves

    written = write_eval_pr_curves(result, path)
    if written is not None:
        console.print(f"precision-recall curves: {written}", highlight=False)


@handle_errors
def plot_command(
    runs: Annotated[list[Path], typer.Argument(help="Training work dirs (or their log.jsonl files).", show_default=False)],
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="PNG to write (default: RUN/curves.png for one run, ./curves.png for several).", show_default=False),
    ] = None,
    title: Annotated[Optional[str], typer.Option("--title", help="Title of the picture (default: the run names).", show_default=False)] = None,
) -> None:
    from rgfl.errors import RgflError
    from rgfl.plots import CURVES_PNG, MATPLOTLIB_MISSING, matplotlib_available, plot_training_curves

    if not matplotlib_available():
        raise RgflError(MATPLOTLIB_MISSING)
    if out is None:
        out = (runs[0] if runs[0].is_dir() else runs[0].parent) / CURVES_PNG if len(runs) == 1 else Path(CURVES_PNG)
    if out.suffix.lower() != ".png":
        raise RgflError(f"--out {out}: the picture is a PNG, give a name ending in .png")
    size = plot_training_curves(runs, out, title)
    console.print(f"{len(runs)} run(s) -> {out} ({size.width}x{size.height} px), data in {out.with_suffix('.json')}", highlight=False)


plot_command.__doc__ = help_text(PLOT_HELP)
