"""A group transaction given up by PostgreSQL for another's sake (a deadlock, 40P01; a serialisation failure, 40001)
is run again, statement by statement, instead of failing every step in it.

The safety net only: the nodes take their row locks so that they do not wait on each other while holding locks
(claims.py: SKIP LOCKED, advisory try-locks; the status flush passes by rows another node has locked), which is what
keeps deadlocks away. Should one happen all the same, the deadlock's victim is a whole group of steps of several
threads, and PostgreSQL leaves its row locks held until the transaction ends, so no single statement can be tried
again alone: the whole transaction is rolled back and its statements run again in order. Nothing but SQL runs again
(the steps' Python code ran once; their side effects come after the commit), and the replay goes on only while every
statement gives what it gave the first time (the same rows, the same row count, the same refusal): then the steps'
decisions, made on what they read, still hold. A statement that finds something else (another node changed a row
meanwhile) ends the replay: the transaction is rolled back, and its steps fail as the deadlock would have failed them.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.journal.engine import Connection, JournalUnavailable, Result

log = logging.getLogger(__name__)

RETRY_SQLSTATES = ("40P01", "40001")
MAX_REPLAYS = 3


@dataclass(frozen=True)
class _Done:
    many: bool
    sql: str
    params: Any
    outcome: tuple  # (rows, rowcount), or ("refused", the error's class) for a statement that raised


def _outcome(result: Result, many: bool) -> tuple:
    return ((), result.rowcount) if many else (tuple(result.fetchall()), result.rowcount)


def given_up_for_another(exc: BaseException) -> bool:
    """Whether the database gave the transaction up for another's sake (and would take it again)."""
    return isinstance(exc, JournalUnavailable) and exc.sqlstate in RETRY_SQLSTATES


class _Diverged(Exception):
    """A statement run again gave something else than the first time."""


class ReplayingWriter:
    """The commit engine's connection where the database locks rows: it keeps each statement of the open transaction
    with what it gave, and runs the transaction again when the database gives it up for another's sake."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._done: list[_Done] = []
        self.replays = 0  # transactions run again (and gone on), for the tests and the curious

    @property
    def in_transaction(self) -> bool:
        return self._connection.in_transaction

    def close(self) -> None:
        self._connection.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        return self._run(False, sql, tuple(params))

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> Result:
        return self._run(True, sql, [tuple(values) for values in params])

    def _call(self, many: bool, sql: str, params: Any) -> Result:
        return self._connection.executemany(sql, params) if many else self._connection.execute(sql, params)

    def _run(self, many: bool, sql: str, params: Any) -> Result:
        words = " ".join(sql.split()).upper()
        if words.startswith("BEGIN") or words in ("COMMIT", "ROLLBACK"):
            self._done.clear()  # a transaction begins or ends: nothing of the last one is run again
            return self._call(many, sql, params)
        try:
            result = self._call(many, sql, params)
        except sqlite3.Error as exc:
            if not given_up_for_another(exc) or not self._connection.in_transaction:
                self._done.append(_Done(many, sql, params, ("refused", type(exc))))
                raise
            result = self._again(many, sql, params, exc)
        self._done.append(_Done(many, sql, params, _outcome(result, many)))
        return result

    def _again(self, many: bool, sql: str, params: Any, given_up: sqlite3.Error) -> Result:
        """The transaction run again up to the statement that was given up, then that statement; else `given_up`
        raised with the transaction rolled back (its steps fail)."""
        for attempt in range(1, MAX_REPLAYS + 1):
            try:
                self._connection.execute("ROLLBACK")
                # The other transaction was waiting for this one's locks: it takes them first, else this one may take
                # them back before it wakes, and close the same circle again.
                time.sleep(random.uniform(0.01, 0.05) * attempt)
                self._connection.execute("BEGIN")
                for done in self._done:
                    self._repeat(done)
                result = self._call(many, sql, params)
            except sqlite3.Error as exc:
                if given_up_for_another(exc) and attempt < MAX_REPLAYS:
                    continue
                self._give_up(f"running it again failed too ({_first_line(exc)})")
                raise given_up from exc
            except _Diverged as exc:
                self._give_up(str(exc))
                raise given_up from None
            self.replays += 1
            log.warning("the journal's transaction was given up by PostgreSQL for another's (%s); its %d statement(s) "
                        "ran again and it went on (try %d)", _first_line(given_up), len(self._done) + 1, attempt)
            return result
        raise given_up  # not reached: the last attempt returns or raises

    def _repeat(self, done: _Done) -> None:
        try:
            again = _outcome(self._call(done.many, done.sql, done.params), done.many)
        except sqlite3.Error as exc:
            if given_up_for_another(exc) or done.outcome != ("refused", type(exc)):
                raise
            return
        if again != done.outcome:
            raise _Diverged(f"a statement found other rows than the first time ({done.sql.split()[0]} ...)")

    def _give_up(self, why: str) -> None:
        self._done.clear()
        try:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        log.warning("the journal's transaction given up by PostgreSQL for another's could not run again: %s; its "
                    "steps fail and are tried again at their next turn", why)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
