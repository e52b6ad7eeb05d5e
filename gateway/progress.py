"""A long run's sign of life: the job a thread runs may say it moves on, wherever in the pipeline it is.

The health checks (gateway/ops/health.py) take a job for hung when it has not beaten for its interval and a
grace; a status round over thousands of letters, or a poll taking hundreds of transfers, can run longer than
that on a slow machine while every step of it moves. Such loops call `progress()`; the job that runs them
(`running_as`) turns it into a beat. Nothing happens on a thread that runs no job.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

_running = threading.local()


def progress() -> None:
    """The job this thread runs is still moving: it beats now."""
    beat = getattr(_running, "beat", None)
    if beat is not None:
        beat()


@contextlib.contextmanager
def running_as(beat: Callable[[], None]) -> Iterator[None]:
    """Inside: `progress()` on this thread calls `beat`."""
    outer = getattr(_running, "beat", None)
    _running.beat = beat
    try:
        yield
    finally:
        _running.beat = outer


def carried() -> Callable[[], None]:
    """This thread's job's beat, for the threads it hands its work to (a pool's threads run no job of their own)."""
    beat = getattr(_running, "beat", None)
    return beat if beat is not None else _nothing


def _nothing() -> None:
    pass
