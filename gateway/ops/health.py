"""Heartbeats: every worker says it is alive; systemd's watchdog is fed only while all of them do.

A worker registers with the interval it runs at and beats after each round. It counts as late when
it has been silent for its interval plus a grace (a long pass, a slow request, is not a hang). A beat
may carry the worker's trouble: it is alive and retries by itself, but cannot do its work now (intake
with claimed drops the journal does not take); /healthz reports it, while the watchdog is still fed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.progress import running_as


@dataclass(frozen=True)
class WorkerBeat:
    name: str
    interval: float
    seconds_since_beat: float
    late: bool
    trouble: str | None = None


class Heartbeats:
    def __init__(self, grace_seconds: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.grace_seconds = grace_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._workers: dict[str, tuple[float, float]] = {}  # name -> (interval, last beat)
        self._troubles: dict[str, str] = {}  # name -> what its last beat said is wrong

    def register(self, name: str, interval: float) -> None:
        """Declare a worker; its first beat is due within interval + grace from now."""
        with self._lock:
            self._workers[name] = (interval, self._monotonic())

    def set_interval(self, name: str, interval: float) -> None:
        with self._lock:
            if name in self._workers:
                self._workers[name] = (interval, self._workers[name][1])

    def beat(self, name: str, trouble: str | None = None) -> None:
        """`name` is alive; `trouble` says what keeps it from its work now (None: nothing)."""
        with self._lock:
            interval = self._workers.get(name, (0.0, 0.0))[0]
            self._workers[name] = (interval, self._monotonic())
            if trouble is None:
                self._troubles.pop(name, None)
            else:
                self._troubles[name] = trouble

    def beating(self, name: str, run: Callable[[], object]) -> Callable[[], None]:
        """`run` wrapped to beat after each call, whether it raised or not (a failing job is not a hung one), and
        whenever it says it moves on (gateway.progress.progress(), from the thread that runs it)."""

        def run_and_beat() -> None:
            try:
                with running_as(lambda: self.beat(name)):
                    run()
            finally:
                self.beat(name)

        return run_and_beat

    def now(self) -> float:
        """The heartbeats' clock (monotonic seconds)."""
        return self._monotonic()

    def excuse(self, seconds: float) -> None:
        """The whole daemon stood still for `seconds` (its process stopped, its machine frozen): no worker could
        beat meanwhile, so each one's silence is counted from `seconds` later (never past now)."""
        now = self._monotonic()
        with self._lock:
            for name, (interval, last) in self._workers.items():
                self._workers[name] = (interval, min(now, last + seconds))

    def workers(self) -> list[WorkerBeat]:
        now = self._monotonic()
        with self._lock:
            items = sorted(self._workers.items())
            troubles = dict(self._troubles)
        return [
            WorkerBeat(name, interval, now - last, now - last > interval + self.grace_seconds, troubles.get(name))
            for name, (interval, last) in items
        ]

    def late(self) -> list[WorkerBeat]:
        return [worker for worker in self.workers() if worker.late]
