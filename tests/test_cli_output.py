"""What every command writes, through one helper (``cli.common.CommandOutput``): a ``--json`` report for every command
that takes one (to a file, or alone on stdout with ``-``), no output at all when the last write fails, and no output
over an input file."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import typer.main
from conftest import MODELS, assert_clean_error, run_cli

from nnxform.cli import COMMANDS, _with_commands
from nnxform.cli.common import Progress

BOX = ["--lower", "0", "--upper", "1"]

#: A quick run of every command that takes --json: its arguments ({name} is a file of the ``folder`` fixture, {out}
#: a new network there) and the exit statuses it may end with (check, verify and equiv answer by their status).
RUNS: dict[str, tuple[list[str], set[int]]] = {
    "info": (["{small}"], {0}),
    "canon": (["{cart}", "-o", "{out}", "--samples", "50"], {0}),
    "fold-bn": (["{bn}", "-o", "{out}", "--samples", "50"], {0}),
    "check": (["{cart}", "{cart2}", "--samples", "50", "--save-worst", "{folder}/worst.npy"], {0, 1}),
    "bounds": (["{small}", *BOX], {0}),
    "stable": (["{cart}", *BOX, "--time-limit", "10", "--samples", "64"], {0}),
    "compress": (["{cart}", "-o", "{out}", *BOX, "--time-limit", "10", "--samples", "50"], {0}),
    "verify": (["{small}", "{prop}", "--timeout", "10", "--workers", "1", "--result", "{folder}/result.txt"],
               {0, 1, 3}),
    "equiv": (["{cart}", "{cart2}", "--equiv-eps", "0.1", *BOX, "--timeout", "10"], {0, 1, 3}),
    "discrepancy": (["{cart}", "{cart2}", *BOX, "--time-limit", "10"], {0}),
    "merge": (["{cart}", "{cart2}", "-o", "{out}", "--samples", "50"], {0}),
    "pad": (["{cart}", "--depth", "4", "-o", "{out}", "--samples", "50"], {0}),
    "prune": (["{cart}", "-m", "neuron", "-r", "0.5", "-o", "{out}", *BOX, "--time-limit", "10"], {0}),
    "quantize": (["{cart}", "--bits", "8", "-o", "{out}", *BOX, "--samples", "50", "--time-limit", "10"], {0}),
    "evaluate": (["{cart}", "--data", "{data}", "--eps", "0.01"], {0}),
    "init": (["--layers", "4,3,2", "-o", "{out}"], {0}),
    "train": (["{cart}", "--data", "{data}", "-o", "{out}", "--epochs", "1"], {0}),
    "repair": (["{cart}", "{cart2}", "-o", "{out}", *BOX, "--rounds", "1", "--epochs", "1", "--samples", "50"], {0}),
    "batch": (["{instances}", "bounds", "--method", "interval", "--out", "{folder}/batch", "-j", "1"], {0}),
    "batch-compare": (["{batch_run}"], {0}),
}


def _takes_json() -> dict[str, bool]:
    """Whether each command of ``COMMANDS`` has a --json option (read from the registered commands)."""
    group = typer.main.get_command(_with_commands())
    return {name: any("--json" in p.opts for p in group.commands[name].params) for name in COMMANDS}


JSON_COMMANDS = [name for name, takes in _takes_json().items() if takes]

#: The commands that write a file besides the JSON report (``{out}``, or an option naming a file of the folder).
WRITERS = [name for name in JSON_COMMANDS if any("{out}" in a or "{folder}/" in a for a in RUNS[name][0])
           and name != "batch"]  # batch's rows are written as they finish; its own report is the JSON


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory) -> Path:
    """The output folder of one small batch, for batch-compare."""
    folder = tmp_path_factory.mktemp("batch_run")
    instances = _copy_instances(folder)
    r = run_cli("batch", instances, "bounds", "--method", "interval", "--out", folder / "run", "-j", "1")
    assert r.returncode == 0, r.stderr
    return folder / "run"


def _copy_instances(folder: Path) -> Path:
    """A one-row instances.csv in ``folder`` (test_small and its property)."""
    shutil.copy(MODELS / "test_small.onnx", folder / "net.onnx")
    shutil.copy(MODELS / "vnnlib" / "test_small.vnnlib", folder / "net.vnnlib")
    (folder / "instances.csv").write_text("net.onnx,net.vnnlib,30\n")
    return folder / "instances.csv"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The inputs of ``RUNS``, in a folder of their own."""
    for name, source in (("small", "test_small.onnx"), ("cart", "cartpole.onnx"), ("cart2", "cartpole.onnx"),
                         ("bn", "bn_mlp.onnx")):
        shutil.copy(MODELS / source, tmp_path / f"{name}.onnx")
    shutil.copy(MODELS / "vnnlib" / "test_small.vnnlib", tmp_path / "prop.vnnlib")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((40, 4)), y=rng.integers(0, 2, 40))
    return tmp_path


def _args(command: str, folder: Path, batch_run: Path | None = None) -> list[str]:
    """``command``'s quick run on the files of ``folder``."""
    names = {"{folder}": str(folder), "{out}": str(folder / "out.onnx"), "{data}": str(folder / "data.npz"),
             "{prop}": str(folder / "prop.vnnlib"), "{batch_run}": str(batch_run),
             **{f"{{{n}}}": str(folder / f"{n}.onnx") for n in ("small", "cart", "cart2", "bn")}}
    if command == "batch":
        names["{instances}"] = str(_copy_instances(folder))
    args = []
    for a in RUNS[command][0]:
        for key, value in names.items():
            a = a.replace(key, value)
        args.append(a)
    return [command, *args]


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_every_command_that_takes_json_has_a_quick_run() -> None:
    """A new command with --json gets its line in ``RUNS``, so the tests below cover it."""
    assert set(JSON_COMMANDS) == set(RUNS)


@pytest.mark.parametrize("command", JSON_COMMANDS)
def test_json_is_written_to_a_file_and_alone_on_stdout(command: str, folder: Path, batch_run: Path) -> None:
    report = folder / "report.json"
    r = run_cli(*_args(command, folder, batch_run), "--json", report)
    assert r.returncode in RUNS[command][1], r.stderr
    written = json.loads(report.read_text())
    assert isinstance(written, dict)
    shutil.rmtree(folder / "batch", ignore_errors=True)  # a batch's folder holds one run (or --resume)
    r = run_cli(*_args(command, folder, batch_run), "--json", "-")
    assert r.returncode in RUNS[command][1], r.stderr
    assert set(json.loads(r.stdout)) == set(written)  # stdout holds the report and nothing else


@pytest.mark.parametrize("command", WRITERS)
def test_a_failed_last_write_leaves_no_output(command: str, folder: Path, monkeypatch) -> None:
    """The JSON report cannot be renamed into place: the command fails with one line and leaves the folder as it
    was, without the output it had already renamed (all or none)."""
    real_replace = os.replace

    def replace(src: str, dst: os.PathLike) -> None:
        if Path(dst).suffix == ".json":
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    before = _contents(folder)
    monkeypatch.setattr(os, "replace", replace)
    r = run_cli(*_args(command, folder), "--json", folder / "report.json")
    assert_clean_error(r, "report.json: cannot be written (No space left on device)")
    assert _contents(folder) == before


@pytest.mark.parametrize("command", [c for c in JSON_COMMANDS if "{" in RUNS[c][0][0] and c != "batch-compare"])
def test_json_over_an_input_file_is_refused_before_any_work(command: str, folder: Path, batch_run: Path) -> None:
    args = _args(command, folder, batch_run)
    first_input = args[1]
    before = _contents(folder)
    assert_clean_error(run_cli(*args, "--json", first_input), "--json", "is the input file")
    assert _contents(folder) == before


def test_batch_compare_never_overwrites_a_runs_results(batch_run: Path) -> None:
    """batch-compare reads each folder's results.json: neither --json nor --plot may replace it."""
    results = batch_run / "results.json"
    before = results.read_bytes()
    for option in ("--json", "--plot"):
        assert_clean_error(run_cli("batch-compare", batch_run, option, results), option, "is the input file")
    assert results.read_bytes() == before


def test_progress_draws_only_on_a_terminal_and_says_nothing_when_quiet(capsys, monkeypatch) -> None:
    """Off a terminal no bar is drawn and a line goes plainly to the bar's stream; quiet silences both; on a
    terminal the line goes above the bar."""
    with Progress("rows") as bar:
        bar(1, 2)
        bar.line("a line")
    assert capsys.readouterr() == ("", "a line\n")
    with Progress("training", stdout=True) as bar:
        bar.line("an epoch")
    assert capsys.readouterr() == ("an epoch\n", "")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with Progress("rows", quiet=True) as bar:
        bar(1, 2)
        bar.line("a line")
    assert capsys.readouterr() == ("", "")
    with Progress("rows") as bar:
        bar(1, 2)
        bar.line("a line")
    err = capsys.readouterr().err
    assert "rows" in err and "1/2" in err and "a line" in err
