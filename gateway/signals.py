"""Signals noted without a lock, for a main thread that looks at them every moment.

A Python signal handler runs in the main thread between two of its bytecodes, perhaps while that thread
holds a lock: inside `Event.wait()` or `Event.clear()` it holds the Event's own. A handler that sets an Event
may then wait for that lock forever, and SIGTERM never ends the process (systemd kills it at
TimeoutStopSec). A handler also runs again inside itself when signals come faster than it returns. So the
handlers here only append to a list, which takes no lock and returns at once; the main thread takes what
they noted when it looks.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable
from types import FrameType

LOOK_EVERY_S = 0.2  # how long a signal may wait for the main thread to notice it


class CaughtSignals:
    """Catches `signals` from construction until `restore()`; `wait()` and `take()` give what came."""

    def __init__(self, signals: Iterable[signal.Signals]) -> None:
        self._caught: list[int] = []
        self._previous = {sig: signal.signal(sig, self._note) for sig in signals}

    def _note(self, signum: int, _frame: FrameType | None) -> None:
        self._caught.append(signum)

    def take(self) -> set[signal.Signals]:
        """The signals that came since the last take (each once, however often it came)."""
        # A handler that runs between the read and the swap appends to the list read here: nothing is lost.
        caught, self._caught = self._caught, []
        return {signal.Signals(signum) for signum in caught}

    def wait(self, timeout: float = LOOK_EVERY_S) -> set[signal.Signals]:
        """What came, looking every LOOK_EVERY_S at most until something did or `timeout` passed."""
        deadline = time.monotonic() + timeout
        while True:
            caught = self.take()
            left = deadline - time.monotonic()
            if caught or left <= 0:
                return caught
            time.sleep(min(left, LOOK_EVERY_S))

    def restore(self) -> None:
        """Put the handlers back that were there before."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


__all__ = ["LOOK_EVERY_S", "CaughtSignals"]
