"""Ctrl-C at any moment ends a command with exit 130, one line, nothing written: while the library loads, inside a
HiGHS solve, inside a CBC solve run through pulp. SIGTERM stops a time-limited analysis as its limit would (what it
proved is printed and written) and ends anything else like Ctrl-C (exit 143). Each signal is sent at a point the test knows the command has
reached, never after a guessed delay.

The commands are started with SIGINT at its default, as a terminal gives it: a suite launched as a background job
(``make test &``, a CI runner) inherits SIGINT ignored, and so would every command it starts, which then never
sees the signal (the cause of the one failure a fresh clone's suite showed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import highspy
import numpy as np
import pytest
from conftest import MODELS, ROOT

from nnxform import stopping
from nnxform.analyzers.encoding import quiet_highs, solve

MNIST = MODELS / "mnist-net_256x2.onnx"
PROPERTY = MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib"
INTERRUPTED = "nnxform: interrupted; nothing written"


def _terminal_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list, cwd: Path = ROOT, **env: str) -> subprocess.Popen:
    """The command as a terminal user starts it (SIGINT at its default), its output captured."""
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_terminal_sigint, env=dict(os.environ, OPENBLAS_NUM_THREADS="1", **env))


def children(pid: int) -> list[int]:
    """The process ids of ``pid``'s children (Linux)."""
    found = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in listing.read_text().split()]
        except OSError:
            pass
    return found


def assert_interrupted(proc: subprocess.Popen, folder: Path) -> None:
    """Exit 130 soon after the signal, the one line last on stderr, no traceback, nothing in ``folder``."""
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.strip().splitlines()[-1] == INTERRUPTED and "Traceback" not in err, err
    assert sorted(p.name for p in folder.iterdir()) == []


def test_interrupt_inside_a_highs_solve(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    proc = start([sys.executable, "-m", "nnxform", "bounds", MNIST, "--vnnlib", PROPERTY, "--method", "milp",
                  "--neurons", "--time-limit", "600", "--json", out])
    first = proc.stderr.readline()  # HiGHS's banner: printed when the MILP stage makes its model, 30 s of solves ahead
    assert "HiGHS" in first, first
    proc.send_signal(signal.SIGINT)
    assert_interrupted(proc, tmp_path)


def test_interrupt_inside_a_cbc_solve(tmp_path: Path) -> None:
    out, scratch = tmp_path / "b.json", tmp_path.parent / f"{tmp_path.name}-tmp"
    scratch.mkdir()
    proc = start([sys.executable, "-m", "nnxform", "bounds", MNIST, "--vnnlib", PROPERTY, "--method", "milp",
                  "--solver", "cbc", "--neurons", "--time-limit", "600", "--json", out], TMPDIR=str(scratch))
    deadline = time.monotonic() + 120
    while not children(proc.pid):  # pulp has started CBC: the command waits on the solver's process
        assert proc.poll() is None and time.monotonic() < deadline, "CBC never started"
        time.sleep(0.01)
    solver = children(proc.pid)
    proc.send_signal(signal.SIGINT)
    assert_interrupted(proc, tmp_path)
    for pid in solver:  # the solver's process was ended with the command, not left running
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert list(scratch.rglob("*pulp*")) == []  # nor its model file (tens of MB) in the temp folder


def test_interrupt_while_the_library_loads(tmp_path: Path) -> None:
    """The signal arrives when the command's modules import onnx, before any command runs."""
    script = (
        "import importlib.abc, os, signal, sys\n"
        "class Interrupt(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'onnx':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        f"sys.argv = ['nnxform', 'canon', {str(MNIST)!r}, '-o', 'out.onnx']\n"
        "from nnxform.cli import main\n"
        "main()\n")
    proc = start([sys.executable, "-c", script], cwd=tmp_path)
    assert_interrupted(proc, tmp_path)


def _unfinishable_mip() -> highspy.Highs:
    """Subset sum with even weights and an odd target: infeasible, and HiGHS needs minutes to prove it."""
    h = quiet_highs()
    n = 40
    w = np.random.default_rng(0).integers(10**6, 2 * 10**6, n).astype(float) * 2
    idx = np.arange(n, dtype=np.int32)
    h.addVars(n, np.zeros(n), np.ones(n))
    h.changeColsIntegrality(n, idx, np.full(n, highspy.HighsVarType.kInteger))
    h.changeColsCost(n, idx, -w)
    h.addRow(w.sum() / 2 + 1, w.sum() / 2 + 1, n, idx, w)
    return h


def test_a_solve_ends_at_once_on_ctrl_c_and_raises_it() -> None:
    """Inside the solve (which would run for minutes), Ctrl-C stops HiGHS and comes out as KeyboardInterrupt, never
    as a finished solve; the same model then solves normally again."""
    h = _unfinishable_mip()
    h.setOptionValue("time_limit", 300.0)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    # Ctrl-C as a terminal sends it: a suite started as a background job (``make test &``, ``nohup … &``, some CI
    # runners) inherits SIGINT ignored, and Python then installs no handler; this test failed that way
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            solve(h)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, before)
    assert time.monotonic() - started < 60
    h.setOptionValue("time_limit", 0.2)
    solve(h)  # no interrupt pending: runs to its time limit and returns
    assert h.getModelStatus() == highspy.HighsModelStatus.kTimeLimit


# --- SIGTERM: a time-limited analysis stops as at its limit and still answers; anything else ends at once ------


def test_sigterm_stops_a_classification_which_still_answers(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    proc = start([sys.executable, "-m", "nnxform", "stable", MODELS / "ACASXU_run2a_1_1_batch_2000.onnx", "--vnnlib",
                  MODELS / "vnnlib" / "acasxu_prop_1.vnnlib", "--time-limit", "600", "--json", out])
    first = proc.stderr.readline()  # HiGHS's banner: the milp stage has started, minutes of solves ahead
    assert "HiGHS" in first, first
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    report = json.loads(out.read_text())
    assert "stopped early by SIGTERM: what was proved until then" in report["notes"], report["notes"]
    assert "undecided" in stdout


def test_sigterm_outside_a_time_limited_analysis_ends_the_command(tmp_path: Path) -> None:
    """The signal arrives while the command loads its model (an import hook raises it), before any analysis."""
    script = (
        "import os, signal, sys\n"
        "sys.argv = ['nnxform', 'canon', %r, '-o', 'out.onnx']\n"
        "import nnxform.ir\n"
        "real = nnxform.ir.load\n"
        "def load(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*args, **kwargs)\n"
        "nnxform.ir.load = load\n"
        "from nnxform.cli import main\n"
        "main()\n") % str(MNIST)
    proc = start([sys.executable, "-c", script], cwd=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, (proc.returncode, err)
    assert err.strip().splitlines()[-1] == "nnxform: terminated; nothing written" and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_stop_request_ends_a_solve_as_its_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Within a time-limited analysis SIGTERM only asks to stop: the running solve ends and returns (no exception),
    its status saying it did not finish; outside one, or asked twice, it raises Terminated."""
    monkeypatch.setattr(stopping, "_requested", False)
    h = _unfinishable_mip()
    h.setOptionValue("time_limit", 300.0)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    before = signal.signal(signal.SIGTERM, stopping.on_sigterm)
    try:
        with stopping.honoured():
            timer.start()
            solve(h)
        assert stopping.requested() and h.getModelStatus() == highspy.HighsModelStatus.kInterrupt
        with pytest.raises(stopping.Terminated), stopping.honoured():
            stopping.on_sigterm(signal.SIGTERM, None)  # a second request ends the command
        monkeypatch.setattr(stopping, "_requested", False)
        with pytest.raises(stopping.Terminated):
            stopping.on_sigterm(signal.SIGTERM, None)  # outside an analysis
    finally:
        signal.signal(signal.SIGTERM, before)
