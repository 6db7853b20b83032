"""The typer application: the root options, every command registered (one module each), and how each way a
command can end becomes an exit status and at most one line on stderr."""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Any, NoReturn

import typer
import typer.core
import typer.main

from ..version import __version__
from .. import stopping
from ..errors import NnxformError
from . import COMMANDS, summary

class _Listed(typer.core.TyperCommand):
    """A command as ``nnxform --help`` lists it, its module not imported yet."""


class _Commands(typer.core.TyperGroup):
    """The group of commands: every one listed from ``COMMANDS`` (so that ``--help``, ``--version`` and a mistyped
    name's suggestions load no library), each module imported when its command runs or shows its own ``--help``."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for name in COMMANDS:
            self.commands.setdefault(name, _Listed(name, short_help=summary(name)))

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and isinstance(self.commands.get(args[0]), _Listed):
            importlib.import_module(f"{__package__}.{COMMANDS[args[0]][0]}")  # registers it on ``app``
            self.commands[args[0]] = typer.main.get_command(app).commands[args[0]]
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="nnxform",
    cls=_Commands,
    help="Transform ONNX neural networks for formal verification and exact compression.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nnxform {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Transform ONNX neural networks for formal verification and exact compression.

    Commands are file in, file out; errors exit with status 2 and write nothing.
    """


#: click's usage error (bad or missing option, unknown command), reached through typer, which re-exports
#: click's ``BadParameter`` in every version but vendors click itself in recent ones.
UsageError = typer.BadParameter.__base__


def run(args: list[str]) -> None:
    """Run the app (its commands registered) on ``args``; a user error, a usage error or an interrupt ends as one
    line on stderr. SIGTERM stops a time-limited analysis as its limit would, and ends anything else (``stopping``)."""
    command = typer.main.get_command(app)
    before = signal.signal(signal.SIGTERM, stopping.on_sigterm)
    try:
        _run(command, args)
    finally:
        signal.signal(signal.SIGTERM, before)


def _run(command: Any, args: list[str]) -> None:
    """``run``'s body: each way a command can end as its exit status and at most one line on stderr."""
    try:
        with command.make_context("nnxform", args) as ctx:
            command.invoke(ctx)
    except typer.Exit as exc:  # --help, --version, and commands that choose their status
        sys.exit(exc.exit_code)
    except NnxformError as exc:
        _fail(f"error: {exc}", 2)
    except UsageError as exc:
        if not args:  # no arguments: the help, as the app asks for (no_args_is_help)
            exc.show()
            sys.exit(exc.exit_code)
        name = args[0] if args[0] in COMMANDS else ""  # for errors that know no context
        where = exc.ctx.command_path if exc.ctx is not None else f"nnxform {name}".rstrip()
        _fail(f"error: {' '.join(exc.format_message().split())} (see '{where} --help')", 2)
    except stopping.Terminated:
        _fail("terminated; nothing written", 143)
    except (KeyboardInterrupt, typer.Abort):  # typer.Abort: click's word for Ctrl-C at a prompt
        _fail("interrupted; nothing written", 130)
    except BrokenPipeError:  # stdout closed early (e.g. piped into head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:  # a bug: one line unless debugging is asked for
        if os.environ.get("NNXFORM_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set NNXFORM_DEBUG=1 for the traceback)", 3)


def _fail(message: str, status: int) -> NoReturn:
    typer.echo(f"nnxform: {message}", err=True)
    sys.exit(status)
