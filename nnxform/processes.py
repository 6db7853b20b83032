"""Parts of one search in parallel processes (forked: the network and the loaded modules are inherited), each part's
result back as it finishes, the others stopped once one settles the question (``verify``'s and ``equiv``'s slices)."""

from __future__ import annotations

import multiprocessing
import queue
import time
from typing import Any, Callable


def in_processes(work: Callable[[Any], Any], parts: list[Any], timeout: float,
                 enough: Callable[[Any], bool] = lambda result: False) -> list[Any]:
    """``work(part)`` for every part, one process each; the results in the parts' order (None for a part whose
    process gave none within ``timeout`` and a grace of 10 s). Once ``enough(result)`` holds, the rest are stopped."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=_run, args=(work, part, k, results), daemon=True)
                 for k, part in enumerate(parts)]
    started = time.monotonic()
    for process in processes:
        process.start()
    out: list[Any] = [None] * len(parts)
    try:
        for _ in parts:
            try:
                k, result = results.get(timeout=max(timeout - (time.monotonic() - started), 0.0) + 10.0)
            except queue.Empty:
                break  # (a process that died without a result)
            out[k] = result
            if enough(result):
                break
    finally:
        for process in processes:
            process.kill()
            process.join()
    return out


def _run(work: Callable[[Any], Any], part: Any, k: int, results: Any) -> None:
    results.put((k, work(part)))
