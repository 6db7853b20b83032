"""The ``nnxform`` command line: a thin typer shell over the library, one module per command.

Every error a user can cause ends as one line on stderr and exit status 2; outputs are written
atomically, so a failed command leaves no file behind. This module imports nothing but the standard
library at its top, so that Ctrl-C while the application and the library load is answered like any other.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typer import Typer


def main() -> None:
    """Console entry point: load the application and run it; Ctrl-C at any moment ends as one line, exit 130."""
    try:
        from .application import run

        _with_commands()
        run(sys.argv[1:])
    except KeyboardInterrupt:  # while loading: ``run`` answers it itself once running
        sys.stderr.write("nnxform: interrupted; nothing written\n")
        sys.exit(130)


def _with_commands() -> "Typer":
    """The typer application with every command registered: each command's module adds its own when imported."""
    from . import bounds, canon, check, discrepancy, info  # noqa: F401
    from . import compress, evaluate_cmd, merge, pad, prune, quantize, stable, vnnlib_cmd  # noqa: F401
    from . import init_cmd, repair, train  # noqa: F401
    from .application import app

    return app


def __getattr__(name: str) -> Any:
    """``app``: the typer application with every command, loaded on first use."""
    if name == "app":
        return _with_commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
