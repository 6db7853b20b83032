"""Engines that run a batch's rows: ``LocalEngine`` on worker processes of this machine, ``DaskEngine`` on the workers
of a Dask distributed cluster (each Dask worker thread keeps its own worker process, so a row's time limit, crash or
kill is handled the same way everywhere). Either calls ``done(task, outcome)`` in the calling thread as rows end."""

from __future__ import annotations

import atexit
import logging
import queue
import socket
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from ..errors import NnxformError
from .worker import RowOutcome, RowTask, Supervisor

#: Seconds to reach a Dask scheduler before giving up.
_CONNECT_SECONDS = 5

#: What an engine calls as each row ends.
Done = Callable[[RowTask, RowOutcome], None]


class Engine(Protocol):
    """Runs rows and reports each as it ends; ``slots`` rows run at a time."""

    slots: int
    description: str

    def run(self, tasks: list[RowTask], done: Done) -> None: ...

    def close(self) -> None: ...


class LocalEngine:
    """``workers`` worker processes on this machine, one thread each feeding it rows from a shared queue."""

    def __init__(self, workers: int, worker_code: str):
        self.slots, self.worker_code = workers, worker_code
        self.description = f"{workers} local worker process{'es' if workers > 1 else ''}"

    def run(self, tasks: list[RowTask], done: Done) -> None:
        """Run every task; on Ctrl-C the workers are killed, rows in flight dropped, and the interrupt re-raised."""
        todo: queue.Queue[Optional[RowTask]] = queue.Queue()
        finished: queue.Queue[tuple[RowTask, RowOutcome]] = queue.Queue()
        for task in tasks:
            todo.put(task)
        supervisors = [Supervisor(self.worker_code) for _ in range(min(self.slots, len(tasks)))]
        stop = threading.Event()
        threads = [threading.Thread(target=_feed, args=(s, todo, finished, stop), daemon=True) for s in supervisors]
        for _ in threads:
            todo.put(None)
        for thread in threads:
            thread.start()
        try:
            for _ in tasks:
                task, outcome = _next(finished)
                done(task, outcome)
        except BaseException:
            stop.set()
            for s in supervisors:
                s.interrupt()
            raise
        finally:
            for thread in threads:
                thread.join()
            for s in supervisors:
                s.close()

    def close(self) -> None:
        """Nothing outlives ``run`` here."""


def _feed(supervisor: Supervisor, todo: "queue.Queue[Optional[RowTask]]",
          finished: "queue.Queue[tuple[RowTask, RowOutcome]]", stop: threading.Event) -> None:
    """One worker thread: run rows from ``todo`` until the end marker or a stop."""
    while not stop.is_set():
        task = todo.get()
        if task is None:
            return
        outcome = supervisor.run(task)
        if not stop.is_set():
            finished.put((task, outcome))


def _next(finished: "queue.Queue[tuple[RowTask, RowOutcome]]") -> tuple[RowTask, RowOutcome]:
    """The next finished row; waits in short steps so that Ctrl-C reaches the main thread at once."""
    while True:
        try:
            return finished.get(timeout=0.2)
        except queue.Empty:
            continue


class DaskEngine:
    """Rows as tasks of a Dask distributed cluster: ``"local"`` starts a ``LocalCluster`` of ``workers`` processes
    here, any other address connects to a running scheduler. Input files are sent to the workers (scattered once
    each), outputs sent back, so the workers need no shared file system, only nnxform installed."""

    def __init__(self, scheduler: str, workers: int, worker_code: str):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise NnxformError("--scheduler needs Dask: pip install 'nnxform[dask]'") from None
        self.worker_code, self.cluster = worker_code, None
        if scheduler == "local":
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        else:
            if "://" not in scheduler:
                raise NnxformError(f"--scheduler {scheduler}: give 'local' or an address such as tcp://HOST:8786")
            try:
                _reachable(scheduler)
                self.client = Client(scheduler, timeout=_CONNECT_SECONDS)
            except (OSError, TimeoutError, ValueError) as exc:
                raise NnxformError(f"--scheduler {scheduler}: cannot reach the Dask scheduler "
                                   f"({' '.join(str(exc).split()) or type(exc).__name__})") from None
        try:
            self.client.wait_for_workers(1, timeout=60)
            self.client.run(_probe)
        except Exception as exc:
            self.close()
            raise NnxformError(f"--scheduler {scheduler}: the Dask workers cannot run nnxform rows "
                               f"({type(exc).__name__}: {exc}); install nnxform on every worker") from None
        self.slots = max(1, sum(self.client.nthreads().values()))
        self.description = f"Dask {'LocalCluster' if self.cluster else scheduler}, {self.slots} worker thread(s)"

    def run(self, tasks: list[RowTask], done: Done) -> None:
        """Send the distinct input files once, submit every row, and report rows as they end; on Ctrl-C the rows
        not finished are cancelled and the interrupt re-raised."""
        from distributed import as_completed

        shipped: dict[str, Any] = {}
        for task in tasks:
            for source in task.inputs.values():
                if source not in shipped:
                    shipped[source] = self.client.scatter(Path(source).read_bytes(), hash=False)
        futures = {self.client.submit(run_on_dask_worker, self.worker_code, task,
                                      {staged: shipped[source] for staged, source in task.inputs.items()},
                                      pure=False): task for task in tasks}
        try:
            for future in as_completed(futures):
                task = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:  # the Dask worker itself died or the task could not run there
                    outcome = RowOutcome("error", 0.0, None, f"Dask: {type(exc).__name__}: {exc}")
                done(task, outcome)
        except BaseException:
            self.client.cancel(list(futures))
            raise

    def close(self) -> None:
        """Disconnect, and stop the LocalCluster this engine started."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _reachable(address: str) -> None:
    """Refuse at once a tcp:// scheduler address nothing listens at (Dask itself retries until its time-out)."""
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    if parts.scheme == "tcp" and parts.hostname and parts.port:
        socket.create_connection((parts.hostname, parts.port), timeout=_CONNECT_SECONDS).close()


#: Per Dask worker process: one worker process per thread that runs rows (created on a thread's first row).
_SUPERVISORS: dict[int, Supervisor] = {}
_SUPERVISORS_LOCK = threading.Lock()


def run_on_dask_worker(worker_code: str, task: RowTask, files: dict[str, bytes]) -> RowOutcome:
    """A row as a Dask task: run by this thread's own worker process, with the inputs' bytes as sent."""
    key = threading.get_ident()
    with _SUPERVISORS_LOCK:
        supervisor = _SUPERVISORS.get(key)
        if supervisor is None:
            if not _SUPERVISORS:
                atexit.register(_close_supervisors)
            supervisor = _SUPERVISORS[key] = Supervisor(worker_code)
    return supervisor.run(task, files)


def _close_supervisors() -> None:
    """When the Dask worker process exits: end its worker processes and remove their folders."""
    for supervisor in _SUPERVISORS.values():
        supervisor.close()


def _probe() -> bool:
    """Run on every Dask worker at start: it must import this module (nnxform installed there)."""
    return True
