"""``rgfl train --dry-run [--json]``: print what a training run would resolve (rgfl.engine.dry_run)."""

from __future__ import annotations

import json
import sys

import typer

from rgfl.cli.common import console


def print_dry_run(cfg, as_json: bool) -> None:
    """Print the dry-run of ``cfg``: one JSON object on stdout, or rich tables on stderr.

    Exits 2 (after printing) when training would refuse the split (``expected_split``).
    """
    from rgfl.engine.dry_run import dry_run

    result = dry_run(cfg)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=1, sort_keys=False) + "\n")
        sys.stdout.flush()
    else:
        _print_tables(result)
    check = result.get("split_check")
    if check and check["refused"]:
        if not as_json:
            console.print(f"[bold red]error:[/] training would refuse this split. Make it with: {check['command']}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)


def _print_tables(result: dict) -> None:
    from rich.table import Table
    from rich.text import Text

    config = Table(title="config (after --set)", show_header=True)
    config.add_column("key")
    config.add_column("value")
    for section, values in result["config"].items():
        for key, value in values.items():
            config.add_row(Text(f"{section}.{key}"), Text(json.dumps(value)))
    console.print(config)

    derived = result["derived"]
    table = Table(title="derived at this world size", show_header=True)
    table.add_column("derived")
    table.add_column("value", justify="right")
    for key in ("world_size", "total_batch", "lr", "lr_per_image", "iters_per_epoch", "total_iters", "warmup_iters", "milestone_iters"):
        value = derived[key]
        table.add_row(key.replace("_", " "), Text(f"{value:.6g}" if isinstance(value, float) else str(value)))
    console.print(table)
    if derived["warmup_iters"] > derived["total_iters"]:
        console.print(f"note: the warmup ({derived['warmup_iters']} iterations) is longer than the run ({derived['total_iters']})", highlight=False)

    data = result["data"]
    objects = data["objects"]
    table = Table(title=Text(f"training data {data['root']}"), show_header=True)
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("patches", str(data["patches"]))
    table.add_row("patches used (with a positive)" if result["config"]["data"]["skip_empty"] else "patches used", str(data["patches_used"]))
    table.add_row("objects trained as positives", str(objects["positive"]))
    table.add_row("objects ignored (neither positive nor negative)", str(objects["ignored"]))
    for reason, count in objects["dropped"].items():
        table.add_row(f"objects dropped: {reason}", str(count))
    table.add_row("bad label lines skipped", str(data["bad_label_lines"]))
    console.print(table)

    check = result.get("split_check")
    if check:
        if not check["manifest_found"]:
            console.print("split check: no split_manifest.json, cannot compare with expected_split", highlight=False)
        elif not check["rule_mismatches"] and not check["data_mismatches"]:
            console.print("split check: the split matches expected_split", highlight=False)
        else:
            for line in check["rule_mismatches"] + check["data_mismatches"]:
                console.print(Text(f"split check: {line}"))
