"""Shared pieces of the commands: error reporting, logging set-up, the console."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console, ConsoleDimensions
from rich.logging import RichHandler
from rich.markup import escape
from rich.text import Text

from rgfl.errors import RgflError

# Width of a console that writes to a file or pipe (logs, CI): wide enough that no path or
# table row is ever cut into lines; COLUMNS, when set, still decides.
NO_TERMINAL_WIDTH = 10_000


class CliConsole(Console):
    """The commands' console: user text is never read as markup, and without a terminal nothing wraps.

    ``markup=False``: paths, class names and option values such as ``D/a[/b]`` or ``[nan]`` are
    printed as typed (rich would read them as style tags, eat them or fail). Code that wants
    styling passes ``style=`` or a :class:`rich.text.Text`, or ``markup=True`` with every piece
    of user text passed through :func:`rich.markup.escape`.

    Rich wraps at 80 columns when it cannot ask a terminal for its width, which breaks paths in
    logs; here the width is then :data:`NO_TERMINAL_WIDTH` (tables stay as narrow as their cells).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        super().__init__(**kwargs)

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self._width is None and not self.is_terminal and not self._environ.get("COLUMNS"):
            return ConsoleDimensions(NO_TERMINAL_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


def _show_flags_as_flags() -> None:
    """Help: no ``<bool>`` type after a flag (``--strict``, ``--amp/--no-amp``), which made every
    flag look as if it took a value. Typer 0.2x prints the type of every option; for a flag there
    is no value to describe."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - another typer layout: leave its help as it is
        return
    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "rgfl_flags", False):
        return

    def display_type_rich(self, ctx):  # type: ignore[no-untyped-def]
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return original(self, ctx)

    display_type_rich.rgfl_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich


_show_flags_as_flags()

console = CliConsole(stderr=True)  # progress, warnings and errors
stdout_console = CliConsole()  # results (tables), so that they can be piped
F = TypeVar("F", bound=Callable[..., Any])

# The --classes option of every command that reads or writes class-labelled files.
ClassesOption = Annotated[
    Optional[str],
    typer.Option(
        "--classes",
        help="Class set: dota1.0, dota1.5, dota2.0, a file with one class per line, or names like plane,ship "
        "(default: dota1.0; with a CHECKPOINT, its classes).",
        show_default=False,
    ),
]


class _LogHandler(RichHandler):
    """Rich's log layout on a terminal; one plain unwrapped line per record otherwise.

    RichHandler pads every record to the console's width, which without a terminal is
    :data:`NO_TERMINAL_WIDTH` columns: logs would fill with spaces.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if self.console.is_terminal:
            super().emit(record)
            return
        try:
            message = self.format(record)
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)
            return
        self.console.print(Text(f"{record.levelname:<8} {message}"), soft_wrap=True, highlight=False)


def setup_logging(verbose: bool = False) -> None:
    """Route rgfl's library logging to stderr once (warnings by default, info with -v)."""
    logger = logging.getLogger("rgfl")
    if not any(isinstance(handler, RichHandler) for handler in logger.handlers):
        handler = _LogHandler(console=console, show_time=False, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` and return an Exit to raise."""
    console.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, markup=True)
    return typer.Exit(code)


def handle_errors(command: F) -> F:
    """Turn user errors into one line on stderr and a non-zero exit, never a traceback.

    RgflError (bad data, bad options) and OSError (missing, unreadable or unwritable files) exit
    with 2; Ctrl-C exits with 130 after the command has cleaned up (writes are atomic).
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except RgflError as error:
            raise fail(str(error)) from None
        except OSError as error:
            where = f": {error.filename}" if getattr(error, "filename", None) else ""
            raise fail(f"{error.strerror or error}{where}") from None
        except KeyboardInterrupt:
            console.print("interrupted; finished files are kept, partial ones were removed")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
