"""The ``rgfl`` Typer app: registers the commands of the chain.

Command modules import torch-heavy code inside their command bodies so that ``rgfl --help``
stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from rgfl import __version__
from rgfl.cli.common import setup_logging

app = typer.Typer(
    name="rgfl",
    help=(
        "Rotated object detection on DOTA-format aerial images with rotated GFL.\n\n"
        "Chain: rgfl split -> rgfl train -> rgfl eval / rgfl merge-submit."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rgfl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    setup_logging(verbose)


# The chain, in the order a user runs it.
from rgfl.cli.synth import synth_command  # noqa: E402
from rgfl.cli.split import split_command  # noqa: E402
from rgfl.cli.train import train_command  # noqa: E402
from rgfl.cli.evaluate import eval_command  # noqa: E402
from rgfl.cli.merge_submit import merge_submit_command  # noqa: E402
from rgfl.cli.predict import predict_command  # noqa: E402
from rgfl.cli.show import show_command  # noqa: E402
from rgfl.cli.demo import demo_command  # noqa: E402
# Around the chain: pictures, other formats, deployment.
from rgfl.cli.plot import plot_command  # noqa: E402
from rgfl.cli.export import export_command  # noqa: E402
from rgfl.cli.convert import convert_command  # noqa: E402

app.command("synth")(synth_command)
app.command("split")(split_command)
app.command("train")(train_command)
app.command("eval")(eval_command)
app.command("merge-submit")(merge_submit_command)
app.command("predict")(predict_command)
app.command("show")(show_command)
app.command("demo")(demo_command)
app.command("plot")(plot_command)
app.command("export")(export_command)
app.command("convert")(convert_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
