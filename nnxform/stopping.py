"""Stopping early on request: SIGTERM (a batch system's or a Makefile's timeout) ends a time-limited analysis as
its time limit would, so that what it proved so far is still printed and written; anywhere else it ends the
command with nothing written (``Terminated``)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

_requested = False
_honoured = 0  # how many time-limited analyses are running (they read ``requested`` as their time limit)


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a time-limited analysis, or a second one: the command ends as at Ctrl-C, nothing written."""


def requested() -> bool:
    """Whether a stop was asked for: every time limit reads it as reached."""
    return _requested


@contextmanager
def honoured() -> Iterator[None]:
    """Mark a time-limited analysis: within it a SIGTERM asks it to stop early instead of ending the command."""
    global _honoured
    _honoured += 1
    try:
        yield
    finally:
        _honoured -= 1


def on_sigterm(signum: int, frame: Any) -> None:
    """The SIGTERM handler the command line installs: ask the running analysis to stop, or end the command."""
    global _requested
    if _honoured and not _requested:
        _requested = True
        return
    raise Terminated


def time_left(limit: float, started: float) -> float:
    """What is left of a command's ``limit`` seconds since ``started`` (``time.monotonic()``) for its time-limited
    analysis: a millisecond at least, in which it keeps its cheapest sound bounds."""
    return max(limit - (time.monotonic() - started), 1e-3)


class Deadline:
    """A point in time after which no solve starts, and up to which each solve may run: a limit on a whole command."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds
        self.reached = False

    def left(self) -> float:
        """Seconds left (none once a stop is requested: ``stopping``)."""
        return 0.0 if requested() else self.end - time.monotonic()

    def passed(self) -> bool:
        self.reached = self.reached or self.left() <= 0
        return self.reached
