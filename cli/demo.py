"""`rgfl demo`: the whole chain on a small synthetic data set, with the real commands."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from rgfl.cli.common import console, handle_errors
from rgfl.cli.run_model import help_text, print_metrics_table

DEMO_HELP = """Run the whole rgfl chain on a small synthetic DOTA-format data set, on the CPU.

Stages (each one is the real command a user runs on DOTA, printed before it runs, with smaller
settings): rgfl synth (train, val and held-out test images) -> rgfl split -> rgfl train with
configs/rgfl_r18_tiny_cpu.yaml -> rgfl eval (patch level, and --merged at image level) ->
rgfl merge-submit --zip (the DOTA server archive) -> rgfl predict --draw on a held-out full-size
image. Ends with the AP table and the paths of the submission archive and the drawn picture.

Takes about 6 minutes on 2 CPU cores with the defaults; --quick runs every stage on a toy
setting in about a minute (a smoke test: the APs it prints are meaningless).

Examples:

  rgfl demo

  rgfl demo --out /tmp/rgfl-demo --quick
"""

CONFIG_NAME = "rgfl_r18_tiny_cpu.yaml"
# The synthetic classes; the model is trained on exactly these so that the AP table shows them.
DEMO_CLASSES = "plane,small-vehicle,large-vehicle,ship,storage-tank,tennis-court"


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of the demo; ``full`` is the real demo, ``quick`` a smoke run of every stage."""

    train_images: int
    val_images: int
    test_images: int
    image_size: int
    patch_size: int
    overlap: int
    epochs: int
    max_iters: int | None
    objects: int | None
    input_size: str | None = None  # data.input_size override ("null": patches as they are); None: the config's

    @classmethod
    def full(cls) -> "DemoPlan":
        # The learning check's recipe (docs/chain.md) on 8 instead of 60 images: dense images
        # (~100 objects each: many positives per step) cut into 384 px patches and trained at
        # full resolution (the config's 256 px resize shrinks the smallest vehicles to 9 x 4 px).
        # 10 epochs of 18 steps of batch 4: about 5 of the 15 minutes on 2 CPU cores.
        return cls(
            train_images=8, val_images=3, test_images=2, image_size=1024, patch_size=384, overlap=64, epochs=10, max_iters=None, objects=100,
            input_size="null",
        )

    @classmethod
    def quick(cls) -> "DemoPlan":
        return cls(
            train_images=2, val_images=2, test_images=1, image_size=640, patch_size=384, overlap=64, epochs=1, max_iters=4, objects=12, input_size="128"
        )


def find_config(name: str = CONFIG_NAME) -> Path:
    """The tiny config: ./configs/<name> first, then the copy shipped inside the package."""
    from rgfl.configs import packaged_config
    from rgfl.errors import InputError

    local = Path.cwd() / "configs" / name
    if local.is_file():
        return local
    shipped = packaged_config(name)
    if shipped is None:
        raise InputError(f"cannot find configs/{name} here or in the installed rgfl; pass --config PATH")
    return shipped


def _rule(title: str) -> None:
    """A bold title rule, at most 100 columns wide (the console is very wide without a terminal)."""
    from rich.rule import Rule
    from rich.text import Text

    console.print(Rule(Text(title, style="bold")), width=min(console.width, 100))


def run_stage(title: str, args: list[str]) -> None:
    """Run one rgfl command in this process, exactly as typed on the command line."""
    from rgfl.cli.main import app
    from rgfl.errors import RgflError

    _rule(title)
    console.print("$ rgfl " + shlex.join(args), highlight=False, markup=False)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="rgfl", standalone_mode=False)
    except typer.Exit as stop:  # pragma: no cover - click returns codes in non-standalone mode
        code = stop.exit_code
    if code not in (None, 0):
        raise RgflError(f"demo stage '{title}' failed (exit {code}); its message is above")


@handle_errors
def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything the demo writes.")] = Path("rgfl-demo"),
    quick: Annotated[bool, typer.Option("--quick", help="Toy sizes: every stage in about a minute (APs meaningless).")] = False,
    config: Annotated[Path | None, typer.Option("--config", help=f"Training config \\[default: configs/{CONFIG_NAME}].", show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "cpu",
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Training epochs (default: 10, or 1 with --quick).", show_default=False)] = None,
) -> None:
    import json

    from rgfl.errors import InputError

    plan = DemoPlan.quick() if quick else DemoPlan.full()
    config = config if config is not None else find_config()
    if not config.is_file():
        raise InputError("config file not found", config)
    epochs = epochs if epochs is not None else plan.epochs
    start = time.perf_counter()
    times: list[tuple[str, float]] = []

    def stage(title: str, args: list[str]) -> None:
        began = time.perf_counter()
        run_stage(title, args)
        times.append((title, time.perf_counter() - began))

    synth, split, work = out / "synth", out / "split", out / "work"
    objects = [] if plan.objects is None else ["--objects", str(plan.objects)]
    for part, count, seed in (("train", plan.train_images, 0), ("val", plan.val_images, 1), ("test", plan.test_images, 2)):
        stage(
            f"synth {part}",
            [
                "synth", str(synth / part), "--images", str(count), "--size", str(plan.image_size), "--seed", str(seed),
                "--classes", DEMO_CLASSES, "--empty-fraction", "0", *objects,
            ],
        )
    for part in ("train", "val", "test"):
        # --workers 1: a few images split faster in this process than a worker pool starts.
        stage(
            f"split {part}",
            ["split", str(synth / part), str(split / part), "--size", str(plan.patch_size), "--overlap", str(plan.overlap), "--workers", "1"],
        )

    overrides = ["--set", f"data.classes={DEMO_CLASSES}", "--set", f"schedule.epochs={epochs}", "--set", f"train.device={device}"]
    # A short run: warm up over 20 iterations instead of the config's 100 (which would be most of it).
    # (--quick stops after max_iters: no longer warm-up than that, which training would warn about)
    warmup = 20 if plan.max_iters is None else min(20, plan.max_iters)
    overrides += ["--set", f"schedule.warmup_iters={warmup}"]
    if plan.max_iters is not None:
        overrides += ["--set", f"schedule.max_iters={plan.max_iters}"]
    if plan.input_size is not None:
        overrides += ["--set", f"data.input_size={plan.input_size}"]
    # --overwrite: a demo run into a folder of an earlier one trains afresh, as every other stage does.
    stage("train", ["train", str(config), "--data", str(split / "train"), "--work-dir", str(work), "--overwrite", *overrides])
    checkpoint = _latest_checkpoint(work)

    device_args = ["--device", device]
    stage("eval (patch level)", ["eval", str(checkpoint), "--data", str(split / "val"), "--out", str(out / "eval_patches"), *device_args])
    stage(
        "eval (merged, image level)",
        ["eval", str(checkpoint), "--data", str(split / "val"), "--merged", "--gt", str(synth / "val" / "labelTxt"), "--out", str(out / "eval"), *device_args],
    )
    stage("merge-submit", ["merge-submit", str(checkpoint), "--data", str(split / "test"), "--out", str(out / "submission"), "--zip", *device_args])
    held_out = sorted((synth / "test" / "images").iterdir())[0]
    stage(
        "predict",
        ["predict", str(checkpoint), str(held_out), "--out", str(out / "predict"), "--draw", "--size", str(plan.patch_size), "--overlap", str(plan.overlap), *device_args],
    )

    total = time.perf_counter() - start
    _rule("rgfl demo: done")
    print_metrics_table(json.loads((out / "eval" / "metrics.json").read_text(encoding="utf-8")), "AP on the held-out val images (merged, image level)")
    for title, seconds in times:
        console.print(f"  {title:<28} {seconds:7.1f} s", highlight=False)
    console.print(f"  {'total':<28} {total:7.1f} s", highlight=False)
    archive = next(iter(sorted((out / "submission").parent.glob("submission*.zip")) + sorted((out / "submission").glob("*.zip"))), None)
    console.print(f"checkpoint:         {checkpoint}", highlight=False)
    console.print(f"metrics:            {out / 'eval' / 'metrics.json'}", highlight=False)
    console.print(f"submission archive: {archive if archive is not None else out / 'submission'}", highlight=False)
    console.print(f"drawn picture:      {out / 'predict' / (held_out.stem + '.png')}", highlight=False)


def _latest_checkpoint(work: Path) -> Path:
    from rgfl.engine.checkpoint import find_latest_checkpoint
    from rgfl.errors import RgflError

    checkpoint = find_latest_checkpoint(work)
    if checkpoint is None:
        raise RgflError(f"training wrote no checkpoint into {work / 'checkpoints'}")
    return checkpoint


demo_command.__doc__ = help_text(DEMO_HELP)
