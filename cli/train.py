"""`rgfl train`: load a config (+ overrides), train, show progress; the loop lives in rgfl.engine.train."""

from __future__ import annotations

import os
import shlex
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
    config: Annotated[
        Path | None,
        typer.Argument(help="Config file, e.g. configs/rgfl_r50_fpn_1x_dota_le135.yaml. Not needed with --resume: a run continues with its own saved config.", show_default=False),
    ] = None,
    work_dir: Annotated[
        Path | None, typer.Option("--work-dir", "-w", help="Folder for checkpoints, config.yaml, log.jsonl and tensorboard/ (required unless --dry-run).", show_default=False)
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="SPLIT_ROOT: the output folder of `rgfl split` (images/ + labelTxt/). Overrides data.root.")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the run in --work-dir from its newest intact checkpoint, with the run's saved config (starts fresh if it has no checkpoint yet)."),
    ] = False,
    resume_from: Annotated[
        Path | None, typer.Option("--resume-from", help="Continue from this checkpoint file, with its saved config (implies --resume).", show_default=False)
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start over in a --work-dir that holds a run: its checkpoints, log.jsonl, config.yaml and TensorBoard events are deleted first.")
    ] = False,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config value: --set section.key=value (repeatable), e.g. --set optimizer.base_lr=0.005.")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Same as --set schedule.epochs=N.", show_default=False)] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Images per process (per GPU); same as --set data.batch_size=N.", show_default=False)
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N; same as --set train.device=...", show_default=False)] = None,
    amp: Annotated[bool, typer.Option("--amp", help="Mixed precision on CUDA (bf16 where supported, else fp16 + GradScaler); same as --set train.amp=...")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Resolve the config, derived values (lr, iterations) and the data summary; train nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: print one JSON object to stdout.")] = False,
) -> None:
    """Train the rotated GFL detector on patches written by `rgfl split`.

Examples:

  rgfl train configs/rgfl_r18_tiny_cpu.yaml --data split/train --work-dir runs/tiny --epochs 4 --device cpu

  rgfl train configs/rgfl_r50_fpn_1x_dota_le135.yaml --data split/train --work-dir runs/r50 --amp

  rgfl train --work-dir runs/r50 --resume

  torchrun --nproc-per-node 8 -m rgfl train CONFIG --data split/train --work-dir runs/r50_8gpu

Ctrl-C (or SIGTERM from a job scheduler) saves a checkpoint and exits; --resume continues from it with the run's own settings (--set, --epochs, ... given again change only the keys they name).

A --work-dir that holds a run is refused unless --resume or --overwrite says what to do with it.
    """
    from rgfl.engine.checkpoint import find_resume_point
    from rgfl.engine.config import load_config
    from rgfl.engine.run_dir import check_work_dir
    from rgfl.engine.train import train
    from rgfl.errors import InputError

    if as_json and not dry_run:
        raise typer.BadParameter("only with --dry-run (training logs go to WORK_DIR/log.jsonl)", param_hint="--json")
    settings = _settings(overrides, data, epochs, batch_size, device, amp)
    resuming = resume or resume_from is not None
    point = None
    if resuming:
        if work_dir is None:
            raise typer.BadParameter("missing: --resume continues the run in this folder", param_hint="--work-dir")
        check_work_dir(work_dir, resume=True, overwrite=overwrite)
        point = find_resume_point(work_dir, resume_from if resume_from is not None else True)
        cfg = _resume_config(config, point, work_dir, settings)
    else:
        if config is None:
            raise InputError("missing CONFIG: give a config file (see configs/), or --resume to continue the run in --work-dir")
        cfg = load_config(config, settings)
    if dry_run:
        from rgfl.cli.train_dry_run import print_dry_run

        return print_dry_run(cfg, as_json)
    if work_dir is None:
        raise typer.BadParameter("missing: training writes checkpoints there (or give --dry-run)", param_hint="--work-dir")
    from rgfl.engine.split_check import check_expected_split

    check_expected_split(cfg)  # a split that would train other objects than the config's reference stops here
    is_main = int(os.environ.get("RANK", "0")) == 0
    progress = _Progress() if is_main else None
    try:
        result = train(cfg, work_dir, resume=(point if point is not None else True) if resuming else None, callbacks=[progress] if progress else [], overwrite=overwrite)
    finally:
        if progress is not None:
            progress.close()
    if not is_main:
        return
    where = f"; checkpoint {result.checkpoint}" if result.checkpoint else ""
    if result.status == "interrupted":
        # The run's checkpoint holds its whole config (file, --set, --data and shortcuts applied),
        # so this reproduces the run exactly.
        console.print(
            f"interrupted at iteration {result.iteration}{where}. Continue with: rgfl train --work-dir {shlex.quote(str(work_dir))} --resume",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(130)
    skipped = f", {result.skipped_batches} batches skipped (non-finite loss)" if result.skipped_batches else ""
    console.print(f"finished ({result.status}) after {result.epoch} epochs, {result.iteration} iterations{skipped}{where}", highlight=False, markup=False)


def _settings(overrides: list[str] | None, data: Path | None, epochs: int | None, batch_size: int | None, device: str | None, amp: bool) -> list[str]:
    """``--set`` overrides, then the shortcut options as the same ``section.key=value`` (a
    shortcut wins over a --set of the same key)."""
    settings = list(overrides or [])
    if data is not None:
        settings.append(f"data.root={data}")
    if epochs is not None:
        settings.append(f"schedule.epochs={epochs}")
    if batch_size is not None:
        settings.append(f"data.batch_size={batch_size}")
    if device is not None:
        settings.append(f"train.device={device}")
    if amp:
        import torch

        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"
        settings.append(f"train.amp={precision}")
    return settings


def _resume_config(config: Path | None, point: Any, work_dir: Path, settings: list[str]) -> Any:
    """The config a resumed run continues with: the one saved with the run (in its checkpoint, or
    ``config.yaml`` when it has no checkpoint yet), changed only by the keys ``settings`` name.

    A CONFIG file given as well changes nothing; where it differs from the run's config, a
    warning lists the keys (they change with --set only)."""
    import logging

    from rgfl.engine.config import apply_overrides, config_from_dict, config_to_dict, load_config
    from rgfl.errors import InputError

    saved = point.state.get("config") if point is not None else None
    if isinstance(saved, dict):
        base = config_from_dict(saved, source=point.path)
    elif (work_dir / "config.yaml").is_file():
        base = load_config(work_dir / "config.yaml")
    elif config is not None:
        return load_config(config, settings)
    else:
        raise InputError("--resume: the work dir has no saved config (no checkpoint, no config.yaml); give the CONFIG file", work_dir)
    if config is not None:
        named = {item.split("=", 1)[0].strip() for item in settings}
        given, own = config_to_dict(load_config(config)), config_to_dict(base)
        differ = [f"{s}.{k}" for s in own for k in own[s] if f"{s}.{k}" not in named and given.get(s, {}).get(k) != own[s][k]]
        if differ:
            logging.getLogger("rgfl.cli.train").warning(
                "%s differs from the run's saved config in %s; the run keeps its own values (change a key with --set)", config, ", ".join(differ)
            )
    return apply_overrides(base, settings)
