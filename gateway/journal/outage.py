"""A journal whose database does not answer (PostgreSQL stopped, restarted, or out of reach) is an outage of this
node, not a crash: the node takes no new work until the database answers again, finishes nothing it cannot journal
(every state change is committed before its side effect, so a step that cannot commit has no side effect), and says
so in one line when the outage starts and one when it ends.

The commit engine tells the outage what each statement and COMMIT found; the daemon's workers ask `down` before they
take work, and a probe asks the database now and then while it is down. Errors that the outage caused, wherever a
worker meets them, are not said again: the outage's line says it for all of them (see `OutageLogFilter`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

from gateway.journal.engine import JournalUnavailable

log = logging.getLogger(__name__)


def outage_caused(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error it was raised from, says the journal's database does not answer."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, JournalUnavailable):
            return exc.out_of_reach
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


class JournalOutage:
    """Whether the journal's database answers, as the last statement found it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None  # monotonic time the outage began
        self._ended = 0.0  # monotonic time the last outage ended
        self._first_error = ""

    @property
    def down(self) -> bool:
        return self._since is not None

    @property
    def detail(self) -> str:
        """For /readyz and the status line."""
        since = self._since
        if since is None:
            return "the journal's database answers"
        return f"the journal's database does not answer ({self._first_error}) for {time.monotonic() - since:.0f} s"

    def noticed(self, exc: BaseException, started: float | None = None) -> bool:
        """A statement or COMMIT begun at `started` (monotonic) failed: True (and the one line, at the first) when
        the database does not answer. A failure of something begun before the last outage ended (a read that waited
        for a connection all through it) is that outage's, not a new one."""
        if not outage_caused(exc):
            return False
        with self._lock:
            if self._since is not None or (started is not None and started < self._ended):
                return True
            self._since = time.monotonic()
            self._first_error = _first_line(exc)
        log.error("the journal's database does not answer (%s): this node takes no new work and finishes nothing it "
                  "cannot journal until it answers again", self._first_error)
        return True

    def answered(self) -> None:
        """A COMMIT went through: the outage, if there was one, is over (one line)."""
        if self._since is None:
            return
        with self._lock:
            since, self._since = self._since, None
            self._ended = time.monotonic()
        if since is not None:
            log.info("the journal's database answers again after %.0f s: this node takes work again",
                     time.monotonic() - since)


class OutageLogFilter(logging.Filter):
    """Drops the records of errors the outage caused (a worker's step that could not commit): the outage's own line
    says them all, and a traceback per job run would bury it; so are the connection pool's warnings of connections
    lost or not made (the same outage, or the end of one). Records of any other error pass."""

    def __init__(self, outage: JournalOutage) -> None:
        super().__init__()
        self.outage = outage

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == __name__:
            return True
        if record.name.startswith("psycopg.pool") and record.levelno < logging.ERROR:
            return False
        causes = [record.exc_info[1]] if record.exc_info and record.exc_info[1] is not None else []
        args = record.args if isinstance(record.args, tuple) else ()
        causes.extend(arg for arg in args if isinstance(arg, BaseException))
        # During the outage, a transaction the database rolled back under a step is the outage's too.
        return not any(outage_caused(cause) or (self.outage.down and isinstance(cause, sqlite3.OperationalError))
                       for cause in causes)


def _first_line(exc: BaseException) -> str:
    while not isinstance(exc, JournalUnavailable) and (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
