"""The command table and lazy start-up (issue 20, item 8): ``nnxform --version`` and ``--help`` load no library,
every command runs from its module imported on demand, and ``COMMANDS`` is the truth about every command."""

from __future__ import annotations

import json
import subprocess
import sys

import typer.main

from conftest import MODELS
from nnxform.cli import COMMANDS, _with_commands

#: What ``--version`` and ``--help`` must not import: the library's heavy dependencies.
HEAVY = ("numpy", "onnx", "onnxruntime", "highspy", "nnxform.ir")
#: What ``info`` must not import: it reads the operator table, not the passes or the analyzers (0.15 s more).
NOT_FOR_INFO = ("highspy", "nnxform.passes", "nnxform.analyzers")


def _modules_after(*args: str) -> tuple[int, list[str]]:
    """Exit status and which of ``HEAVY`` and ``NOT_FOR_INFO`` are imported after running ``nnxform ARGS`` in a fresh
    interpreter."""
    code = ("import json, sys\nfrom nnxform.cli import main\nsys.argv = ['nnxform', *sys.argv[1:]]\n"
            "status = 0\ntry:\n    main()\nexcept SystemExit as exc:\n    status = exc.code or 0\n"
            f"print(json.dumps([status, [m for m in {list(HEAVY + NOT_FOR_INFO)!r} if m in sys.modules]]), "
            "file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    status, loaded = json.loads(r.stderr.strip().splitlines()[-1])
    return status, loaded


def test_version_and_help_load_no_library():
    for args in (["--version"], ["--help"], ["no-such-command"]):
        status, loaded = _modules_after(*args)
        assert status == (2 if args == ["no-such-command"] else 0)
        assert loaded == [], f"nnxform {' '.join(args)} imported {loaded}"


def test_a_command_loads_its_module_when_it_runs():
    status, loaded = _modules_after("info", str(MODELS / "test_small.onnx"))
    assert status == 0 and "nnxform.ir" in loaded and "onnx" in loaded
    assert not set(loaded) & set(NOT_FOR_INFO), loaded


def test_the_table_lists_every_command_with_its_module_and_help():
    group = typer.main.get_command(_with_commands())
    real = {name: cmd for name, cmd in group.commands.items() if cmd.callback is not None}
    assert set(real) == set(COMMANDS)
    for name, (module, short_help) in COMMANDS.items():
        assert real[name].callback.__module__ == f"nnxform.cli.{module}", name
        assert real[name].short_help == short_help, name
