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


#: Every command, as ``nnxform --help`` lists it: its name, the module of this package that defines it, and its one
#: line of help (the module's ``@app.command`` takes it from here). A command's module, and the library under it, is
#: imported only when that command runs: ``--version`` and ``--help`` start without numpy, onnx or a solver.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("info", "Describe a model: shapes, operators, layers, verifier-friendliness."),
    "canon": ("canon", "Rewrite into verifier-friendly ONNX (checked before writing)."),
    "fold-bn": ("canon", "Fold BatchNormalization away (checked before writing)."),
    "check": ("check", "Sampled equivalence of two networks (exit 1 beyond --tol)."),
    "bounds": ("bounds", "Sound bounds of the outputs and ReLU inputs over an input box."),
    "stable": ("stable", "Classify every ReLU as stably active, stably inactive or unstable on a box."),
    "compress": ("compress", "Remove stable ReLUs exactly on a box (LEO++), checked before writing."),
    "verify": ("verify", "Decide a VNN-LIB property: unsat (proved), sat (a replayed counterexample) or timeout."),
    "equiv": ("equiv", "Decide whether two networks are ε-equivalent on a box (proved, or a replayed counterexample)."),
    "discrepancy": ("discrepancy", "Sound bounds of f_A − f_B over an input box, δ_max, and a witness input."),
    "merge": ("merge", "Merge two networks into one computing f_A − f_B (checked before writing)."),
    "pad": ("pad", "Add exact identity layers up to a depth (checked before writing)."),
    "prune": ("prune", "Prune a ReLU network (weight, neuron, saliency) and bound the drift."),
    "quantize": ("quantize", "Round the weights to an integer grid or float16 and bound the drift."),
    "evaluate": ("evaluate_cmd", "Accuracy and FGSM robustness on labelled data (optionally of two networks)."),
    "init": ("init_cmd", "A fresh dense ReLU network (He initialisation), optionally with BN."),
    "train": ("train", "Train or fine-tune a network on labelled data (SGD/Adam, L1, zero mask)."),
    "repair": ("repair", "Retrain a compressed network until its sound discrepancy is small (paper 000)."),
    "vnnlib": ("vnnlib_cmd", "Write a VNN-LIB property: equivalence, robustness or output bounds."),
    "vnnlib-normalize": ("vnnlib_cmd", "Rewrite a VNN-LIB property in the form every verifier parses."),
    "batch": ("batch", "Run a command on every row of an instances.csv, in parallel or on a Dask cluster."),
    "batch-compare": ("batch", "Several batches' results side by side: one table, one cactus plot."),
}


def summary(command: str) -> str:
    """The one line of ``command`` in ``nnxform --help`` (``COMMANDS``)."""
    return COMMANDS[command][1]


def main() -> None:
    """Console entry point: load the application and run it; Ctrl-C at any moment ends as one line, exit 130."""
    try:
        from .application import run

        run(sys.argv[1:])
    except KeyboardInterrupt:  # while loading: ``run`` answers it itself once running
        sys.stderr.write("nnxform: interrupted; nothing written\n")
        sys.exit(130)


def _with_commands() -> "Typer":
    """The typer application with every command registered (each command's module adds its own when imported): for
    tools that want all of them at once, such as the tests' in-process runner."""
    import importlib

    for module in dict.fromkeys(module for module, _ in COMMANDS.values()):
        importlib.import_module(f"{__name__}.{module}")
    from .application import app

    return app


def __getattr__(name: str) -> Any:
    """``app``: the typer application with every command, loaded on first use."""
    if name == "app":
        return _with_commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
