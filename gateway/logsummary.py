"""Repeated identical errors, summarised: the first is logged in full, the same again within a window is
counted, and one line then says how many more there were ("the same error for 57 more transfers in the
last minute"). A hundred transfers failing on one outage make two lines, not a hundred.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_IDS = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def same_kind(text: str) -> str:
    """`text` with message and transfer ids blanked: two errors of one kind give the same text."""
    return _IDS.sub("<id>", text)


@dataclass
class _Seen:
    level: int
    what: str
    first_at: float
    noun: str
    more: int = 0


class RepeatedErrors:
    """Logs each kind of error once per `window` seconds, then the count of the ones it held back."""

    def __init__(
        self, logger: logging.Logger, noun: str = "messages", window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.noun = noun
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}

    def log(self, level: int, kind: str, message: str, *args: object, noun: str | None = None) -> bool:
        """Log `message % args` unless one of `kind` was logged within the window; True when it was logged.

        `kind` names what failed and how (without ids): "fetch on DPO: network error (ConnectError ...)";
        `noun` what the summary counts, when not the default ("polls").
        """
        now = self.clock()
        with self._lock:
            due = self._take_due(now)
            seen = self._seen.get(kind)
            if seen is not None:
                seen.more += 1
            else:
                self._seen[kind] = _Seen(level, kind, now, noun or self.noun)
        self._emit(due)
        if seen is None:
            self.logger.log(level, message, *args)
        return seen is None

    def flush(self) -> None:
        """Write the counts of every kind whose window has passed (called from the periodic jobs too)."""
        with self._lock:
            due = self._take_due(self.clock())
        self._emit(due)

    def _take_due(self, now: float) -> list[_Seen]:
        due = [seen for seen in self._seen.values() if now - seen.first_at >= self.window]
        for seen in due:
            del self._seen[seen.what]
        return [seen for seen in due if seen.more]

    def _emit(self, due: list[_Seen]) -> None:
        for seen in due:
            self.logger.log(
                seen.level, "the same error for %d more %s in the last %s: %s",
                seen.more, seen.noun, _span(self.window), seen.what,
            )


def _span(seconds: float) -> str:
    if seconds == 60:
        return "minute"
    return f"{seconds / 60:g} minutes" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} s"


__all__ = ["RepeatedErrors", "same_kind"]
