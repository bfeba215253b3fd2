"""`rgfl train`: load a config (+ overrides), train, show progress; the loop lives in rgfl.engine.train."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from rgfl.cli.common import console, handle_errors



class _Progress:
    """Live progress on a terminal (rich), one plain line per log record otherwise (job logs)."""

    def __init__(self) -> None:
        self.live = console.is_terminal
        self.progress: Any = None
        self.task: Any = None

    def on_train_start(self, info: dict) -> None:
        console.print(
            f"training on {info['device']} x {info['world_size']}: {info['images']} patches, "
            f"{info['epochs']} epochs x {info['iters_per_epoch']} iterations, total batch {info['total_batch_size']}, "
            f"lr {info['lr']:.6g}",
            highlight=False,
        )
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.description}"),
                console=console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("", total=info["total_iters"], completed=info["start_iteration"], epoch="?")

    @staticmethod
    def _describe(record: dict) -> str:
        losses = " ".join(f"{k.removeprefix('loss_')} {v:.4f}" for k, v in record.items() if k.startswith("loss_"))
        return (
            f"loss {record.get('loss', float('nan')):.4f} ({losses}) lr {record['lr']:.2e} "
            f"{record['images_per_s']:.1f} img/s data {100 * record['data_wait_fraction']:.0f}% mem {record['memory_mb']:.0f} MB"
        )

    def on_log(self, record: dict) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=record["iteration"], description=self._describe(record), epoch=f"{record['epoch']}/{record['epochs']}")
        else:
            console.print(
                f"epoch {record['epoch']}/{record['epochs']} iter {record['iter_in_epoch']}/{record['iters_per_epoch']} "
                f"({record['iteration']}/{record['total_iters']}) eta {record['eta']} {self._describe(record)}",
                highlight=False,
                soft_wrap=True,  # one line per record in job logs, however long
            )

    def on_validation(self, record: dict) -> None:
        metrics = " ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float))
        console.print(f"validation after epoch {record['epoch']}: {metrics}", highlight=False)

    def on_checkpoint(self, path: Path) -> None:
        if not self.live:
            console.print(f"checkpoint {path}", highlight=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@handle_errors
def train_command(
    config: Annotated[Path, typer.Argument(help="Config file, e.g. configs/rgfl_r50_fpn_1x_dota_le135.yaml.", show_default=False)],
    work_dir: Annotated[
        Path | None, typer.Option("--work-dir", "-w", help="Folder for checkpoints, config.yaml, log.jsonl and tensorboard/ (required unless --dry-run).", show_default=False)
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="SPLIT_ROOT: the output folder of `rgfl split` (images/ + labelTxt/). Overrides data.root.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --work-dir from its newest checkpoint (starts fresh if it has none).")] = False,
    resume_from: Annotated[
        Path | None, typer.Option("--resume-from", help="Continue from this checkpoint file (implies --resume).", show_default=False)
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config value: --set section.key=value (repeatable), e.g. --set optimizer.base_lr=0.005.")
    ] = None,
    amp: Annotated[bool, typer.Option("--amp", help="Mixed precision on CUDA (bf16 where supported, else fp16 + GradScaler); same as --set train.amp=...")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Resolve the config, derived values (lr, iterations) and the data summary; train nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: print one JSON object to stdout.")] = False,
) -> None:
    """Train the rotated GFL detector on patches written by `rgfl split`.

Examples:

  rgfl train configs/rgfl_r18_tiny_cpu.yaml --data split/train --work-dir runs/tiny

  rgfl train configs/rgfl_r50_fpn_1x_dota_le135.yaml --data split/train --work-dir runs/r50 --amp

  rgfl train configs/rgfl_r50_fpn_1x_dota_le135.yaml --data split/train --work-dir runs/r50 --resume

  torchrun --nproc-per-node 8 -m rgfl train CONFIG --data split/train --work-dir runs/r50_8gpu

Ctrl-C (or SIGTERM from a job scheduler) saves a checkpoint and exits; --resume continues from it.
    """
    from rgfl.engine.config import load_config
    from rgfl.engine.train import train

    settings = list(overrides or [])
    if data is not None:
        settings.append(f"data.root={data}")
    if amp:
        import torch

        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"
        settings.append(f"train.amp={precision}")
    cfg = load_config(config, settings)
    if dry_run:
        from rgfl.cli.train_dry_run import print_dry_run

        return print_dry_run(cfg, as_json)
    if as_json:
        raise typer.BadParameter("only with --dry-run (training logs go to WORK_DIR/log.jsonl)", param_hint="--json")
    if work_dir is None:
        raise typer.BadParameter("missing: training writes checkpoints there (or give --dry-run)", param_hint="--work-dir")
    from rgfl.engine.split_check import check_expected_split

    check_expected_split(cfg)  # a split that would train other objects than the config's reference stops here
    is_main = int(os.environ.get("RANK", "0")) == 0
    progress = _Progress() if is_main else None
    try:
        result = train(cfg, work_dir, resume=resume_from if resume_from is not None else resume, callbacks=[progress] if progress else [])
    finally:
        if progress is not None:
            progress.close()
    if not is_main:
        return
    where = f"; checkpoint {result.checkpoint}" if result.checkpoint else ""
    if result.status == "interrupted":
        data_arg = f" --data {data}" if data is not None else ""
        console.print(
            f"interrupted at iteration {result.iteration}{where}. Continue with: rgfl train {config}{data_arg} --work-dir {work_dir} --resume",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130)
    skipped = f", {result.skipped_batches} batches skipped (non-finite loss)" if result.skipped_batches else ""
    console.print(f"finished ({result.status}) after {result.epoch} epochs, {result.iteration} iterations{skipped}{where}", highlight=False)
