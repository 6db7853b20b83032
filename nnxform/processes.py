"""Parts of one search in parallel processes (forked: the network and the loaded modules are inherited), each part's
result back as it finishes, the others stopped once one settles the question (``verify``'s slices of a few-input
box and shares of a many-input network's open branches). Each process runs BLAS on one thread: two processes of
two OpenBLAS threads each on two cores bound mnist_fc branches 5× slower than one process alone (their threads spin
waiting for a core)."""

from __future__ import annotations

import multiprocessing
import queue
import time
from typing import Any, Callable


#: Seconds between two calls of ``in_processes``' ``poll`` while it waits.
POLL_SECONDS = 0.5


def in_processes(work: Callable[[Any], Any], parts: list[Any], timeout: float,
                 enough: Callable[[Any], bool] = lambda result: False,
                 poll: Callable[[], None] | None = None) -> list[Any]:
    """``work(part)`` for every part, one process each; the results in the parts' order (None for a part whose
    process gave none within ``timeout`` and a grace of 10 s). Once ``enough(result)`` holds, the rest are stopped.
    ``poll()`` is called every ``POLL_SECONDS`` while it waits (to report the parts' progress)."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=_run, args=(work, part, k, results), daemon=True)
                 for k, part in enumerate(parts)]
    started = time.monotonic()
    for process in processes:
        process.start()
    out: list[Any] = [None] * len(parts)
    ends = started + max(timeout, 0.0) + 10.0
    try:
        left = len(parts)
        while left:
            wait = ends - time.monotonic()
            try:
                k, result = results.get(timeout=max(min(wait, POLL_SECONDS) if poll else wait, 0.0))
            except queue.Empty:
                if poll is None or wait <= 0:
                    break  # (a process that died without a result)
                poll()
                continue
            out[k], left = result, left - 1
            if enough(result):
                break
    finally:
        for process in processes:
            process.kill()
            process.join()
    return out


def _run(work: Callable[[Any], Any], part: Any, k: int, results: Any) -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        results.put((k, work(part)))
