"""The ``nnxform`` command line: a thin typer shell over the library, one module per command.

Every error a user can cause ends as one line on stderr and exit status 2; outputs are written
atomically, so a failed command leaves no file behind.
"""

from __future__ import annotations

import os
import sys

import typer

from .. import __version__
from ..errors import NnxformError

app = typer.Typer(
    name="nnxform",
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


def main() -> None:
    """Console entry point: run the app, turning user errors into one line and exit status 2."""
    try:
        app()
    except NnxformError as exc:
        typer.echo(f"nnxform: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("nnxform: interrupted; nothing written", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: one line unless debugging is asked for
        if os.environ.get("NNXFORM_DEBUG"):
            raise
        typer.echo(f"nnxform: internal error: {type(exc).__name__}: {exc} (set NNXFORM_DEBUG=1 for the traceback)", err=True)
        sys.exit(3)


# Registering the commands: each module adds its own to ``app``.
from . import bounds, canon, check, discrepancy, info  # noqa: E402,F401
from . import compress, evaluate_cmd, merge, pad, prune, stable, vnnlib_cmd  # noqa: E402,F401
