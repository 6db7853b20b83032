"""Worker processes: each imports nnxform once and runs many rows, one at a time, in-process; its supervisor (in the
parent, or in a Dask worker) stages each row's inputs in a fresh folder, enforces the row's time limit by killing the
process (SIGKILL) and starting a new one, and returns the row's output files only when the command succeeded, so
a row that fails, times out or kills its worker leaves no partial file anywhere.

The protocol is one JSON line each way on the process's stdin and on a copy of its stdout; the process's own
stdout (where C libraries such as HiGHS print) goes to its stderr, and what the command prints is captured."""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Union

#: Seconds a new worker may take to import nnxform and say it is ready (not counted in any row's time).
STARTUP_LIMIT = 300.0

#: Thread counts every worker starts with unless the environment sets them: one BLAS thread a worker, so that
#: -j N workers use N cores (on 2 shared cores a second OpenBLAS thread makes small products 5-10x slower).
_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class RowTask:
    """One row as a worker runs it: the command's arguments (paths relative to the row's folder), the inputs to
    stage there (staged path -> the file on this machine), the outputs to bring back, the time limit (None: none),
    and the exit statuses besides 0 that are answers rather than failures (``verify``'s 1 for sat)."""

    index: int
    argv: list[str]
    inputs: dict[str, str]
    outputs: list[str]
    timeout: Optional[float]
    answers: tuple[int, ...] = ()


@dataclass
class RowOutcome:
    """How a row ended: status ``ok``/``error``/``timeout``, the command's own seconds, the exit status (None when
    the command did not end by itself), a one-line message, what it printed, and its output files (only when ok)."""

    status: str
    seconds: float
    exit_code: Optional[int]
    message: str = ""
    log: str = ""
    files: dict[str, bytes] = field(default_factory=dict)


def serve(run: Callable[[list[str]], None]) -> None:
    """The worker's loop: say ready, then run each requested command line in its row's folder with stdout and
    stderr captured, and answer with its exit status, output and seconds, until stdin closes."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # C-level prints (solver banners) must not reach the channel
    home = os.getcwd()
    _answer(channel, {"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        out, err = io.StringIO(), io.StringIO()
        start = time.perf_counter()
        os.chdir(request["cwd"])
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = _exit_status(run, request["argv"])
        finally:
            os.chdir(home)
        _answer(channel, {"status": status, "stdout": out.getvalue(), "stderr": err.getvalue(),
                          "seconds": time.perf_counter() - start})


def _exit_status(run: Callable[[list[str]], None], argv: list[str]) -> int:
    """The exit status of ``run(argv)``: 0 when it returns, its SystemExit's code, 3 for an escaped exception."""
    try:
        run(argv)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except Exception as exc:  # the command's own handler reports bugs; this catches one in between
        print(f"nnxform: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    return 0


def _answer(channel: io.TextIOBase, message: dict) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


class _TimedOut(Exception):
    """No answer from the worker within the time allowed."""


class WorkerDied(Exception):
    """The worker process ended while starting (the message says how)."""


class Supervisor:
    """One worker process and the rows it runs: started on first use (the import is not counted in any row's
    time), killed with SIGKILL when a row passes its time limit and started again for the next row."""

    def __init__(self, worker_code: str):
        self.worker_code = worker_code
        self.folder = Path(tempfile.mkdtemp(prefix="nnxform-batch-"))
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        """Start the worker process unless it runs, and wait until it has imported nnxform."""
        if self.proc is not None and self.proc.poll() is None:
            return
        env = {**_THREAD_ENV, **os.environ}
        with open(self.folder / "worker-stderr.txt", "wb") as errors:
            self.proc = subprocess.Popen([sys.executable, "-c", self.worker_code], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=errors, cwd=self.folder, env=env,
                                         start_new_session=True)  # Ctrl-C at the terminal reaches the parent only
        try:
            ready = self._read(STARTUP_LIMIT)
        except _TimedOut:
            ready = None
        if ready is None:
            if self.proc.poll() is None:
                self.proc.kill()
            how = self._ended()
            self.kill()
            raise WorkerDied(f"the worker process could not start ({how})")

    def run(self, task: RowTask, sources: Optional[Mapping[str, Union[str, bytes]]] = None) -> RowOutcome:
        """Run one row: stage its inputs (``sources``: staged path -> file content, instead of linking the files
        of ``task.inputs``), run it within its time limit, and collect its outputs when it succeeds."""
        try:
            self.start()
        except WorkerDied as exc:
            return RowOutcome("error", 0.0, None, str(exc))
        sandbox = Path(tempfile.mkdtemp(prefix="row-", dir=self.folder))
        start = time.perf_counter()
        try:
            _stage(sandbox, sources if sources is not None else task.inputs)
            try:
                assert self.proc is not None and self.proc.stdin is not None
                self.proc.stdin.write((json.dumps({"argv": task.argv, "cwd": str(sandbox)}) + "\n").encode())
                self.proc.stdin.flush()
                answer = self._read(task.timeout)
            except _TimedOut:
                self.kill()
                return RowOutcome("timeout", float(task.timeout or 0.0), None,
                                  f"time limit of {task.timeout:g} s reached; its worker was killed and replaced")
            except BrokenPipeError:
                answer = None
            if answer is None:
                how = self._ended()
                self.kill()
                return RowOutcome("error", time.perf_counter() - start, None,
                                  f"the worker process died during the row ({how})")
            return _outcome(answer, sandbox, task.outputs, task.answers)
        finally:
            shutil.rmtree(sandbox, ignore_errors=True)

    def _read(self, timeout: Optional[float]) -> Optional[dict]:
        """The worker's next answer, None when the worker ended; ``_TimedOut`` when none came within ``timeout``."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ready, _, _ = select.select([self.proc.stdout], [], [], wait)
            except InterruptedError:  # a signal; select is retried with the time left
                continue
            if not ready:
                raise _TimedOut
            line = self.proc.stdout.readline()
            return json.loads(line) if line else None

    def _ended(self) -> str:
        """How the worker process ended: its signal or exit status, and the last line it wrote on stderr."""
        if self.proc is None:
            return "not started"
        code = self.proc.wait()
        how = (f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}")
        tail = (self.folder / "worker-stderr.txt").read_text(errors="replace").strip().splitlines()
        return f"{how}: {tail[-1]}" if tail and code >= 0 else how

    def kill(self) -> None:
        """Kill the worker process (SIGKILL, this process's own child), reap it and close its pipes; the next row
        starts a new one."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()

    def interrupt(self) -> None:
        """Kill the worker process from another thread (Ctrl-C): the thread running the row sees it end and cleans up."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def close(self) -> None:
        """End the worker (closing its stdin ends its loop; a worker in a row is killed) and remove the folder."""
        if self.proc is not None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


def _stage(sandbox: Path, sources: Mapping[str, Union[str, bytes]]) -> None:
    """Put each input at its staged path in the row's folder: a symbolic link to a local file, or the bytes sent."""
    for staged, source in sources.items():
        target = sandbox / staged
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            os.symlink(source, target)


def _outcome(answer: dict, sandbox: Path, outputs: list[str], answers: tuple[int, ...] = ()) -> RowOutcome:
    """A finished row's outcome from the worker's answer (exit 0, or one of ``answers``: ok); its output files
    read back when it succeeded."""
    status, seconds = answer["status"], float(answer["seconds"])
    log = answer["stdout"] + answer["stderr"]
    if status != 0 and status not in answers:
        return RowOutcome("error", seconds, status, _last_line(answer["stderr"]) or f"exit status {status}", log)
    missing = [name for name in outputs if not (sandbox / name).is_file()]
    if missing:
        return RowOutcome("error", seconds, status, f"the command wrote no {', '.join(missing)}", log)
    return RowOutcome("ok", seconds, status, "", log, {name: (sandbox / name).read_bytes() for name in outputs})


def _last_line(text: str) -> str:
    """The last non-empty line of what a command wrote on stderr, without the ``nnxform: error:`` prefix."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    for prefix in ("nnxform: ", "error: "):
        line = line.removeprefix(prefix)
    return line
