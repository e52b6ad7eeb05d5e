"""The journal's commit engine: one writer connection (SQLite's or PostgreSQL's, from the engine) shared by the
daemon's threads behind one lock, their steps made durable together by group commit."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator

from gateway.errors import JournalError
from gateway.journal.engine import Connection, Engine
from gateway.journal.outage import JournalOutage
from gateway.journal.replay import ReplayingWriter

GROUP_COMMIT_WAIT_SECONDS = 0.002


class CommitFailed(sqlite3.OperationalError):
    """The COMMIT covering a step failed (the database ended the transaction, a lost connection, a full disk): the
    step's changes are not in the journal, and its caller tries again at its next turn."""


class _CommitGroup:
    """Steps of several threads in one transaction, made durable by one COMMIT."""

    __slots__ = ("committed", "error")

    def __init__(self) -> None:
        self.committed = False
        self.error: BaseException | None = None


class GroupCommitJournal:
    """The journal's connections and transactions: one writer shared by the daemon's threads with group commit,
    and a reader per thread. The queries live in the classes built on it (store.py and its mixins)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.path = getattr(engine, "path", None)  # the SQLite file, where the journal is one
        self._lock = threading.RLock()
        self._db: Connection = engine.writer()
        if engine.locks_rows:  # nodes share the database: a deadlock with another node's transaction runs it again
            self._db = ReplayingWriter(self._db)
        try:
            self.schema_version = engine.migrate(self._db)
        except BaseException:
            self._db.close()
            engine.close()
            raise
        self._in_transaction = False
        self._transaction_owner: int | None = None
        self._group: _CommitGroup | None = None
        self._counter_lock = threading.Lock()
        self._steps_coming = 0  # threads in transaction() whose step has not finished
        self.on_commit: Callable[[float], None] | None = None  # told each COMMIT's duration (the metrics)
        self.outage = JournalOutage()  # whether the database answers, as the last statement found it
        self._fence = threading.local()  # a thread's check that each of its steps makes first (fenced_by)

    def close(self) -> None:
        with self._lock:
            if self._group is not None:
                self._decide(self._group)  # steps waiting to commit are committed, not dropped
            self._db.close()
            self.engine.close()

    def _reading(self) -> tuple[Connection, threading.RLock | contextlib.nullcontext]:
        """The connection to read with: the writer's inside this thread's own transaction, else the engine's reader."""
        if self._transaction_owner == threading.get_ident():
            return self._db, self._lock
        return self.engine.reader(), contextlib.nullcontext()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic, durable step. Nested use joins the outer transaction.

        Group commit: the steps of several threads share one transaction and one COMMIT (one fsync,
        or one round trip to PostgreSQL and its WAL flush). Each step is a savepoint of its own, so a
        failing step is undone alone; a thread returns only once a COMMIT covering its step is durable,
        and raises sqlite3.OperationalError when that COMMIT failed (on either engine: see engine.py).
        With one fsync per step, the journal was the bottleneck of a busy gateway (its lock held ~80 %
        of the time).
        """
        if self._transaction_owner == threading.get_ident():
            with self._lock:  # nested in this thread's own step: part of it
                yield
            return
        group: _CommitGroup | None = None
        started = time.monotonic()
        with self._counter_lock:
            self._steps_coming += 1
        try:
            with self._lock:
                try:
                    group = self._open_group()
                    self._db.execute("SAVEPOINT step_of_a_group")
                except sqlite3.Error as exc:
                    self.outage.noticed(exc, started)
                    if self._group is not None and not self._db.in_transaction:
                        # The transaction went with the session (the server ended it while this node was paused):
                        # the steps waiting for its COMMIT fail with this error, the one that says why.
                        self._fail_group(self._group, exc)
                    raise
                self._in_transaction = True
                self._transaction_owner = threading.get_ident()
                try:
                    fence = getattr(self._fence, "check", None)
                    if fence is not None:
                        fence()
                    yield
                except BaseException as exc:
                    self.outage.noticed(exc, started)
                    self._undo_step(group, exc)
                    raise
                else:
                    self._finish_step(group)
                finally:
                    self._in_transaction = False
                    self._transaction_owner = None
        finally:
            with self._counter_lock:
                self._steps_coming -= 1
            if group is not None:
                self._commit(group)  # also after a failed step: the group may hold other threads' steps
        if group.error is not None:
            raise CommitFailed(f"the journal could not commit: {group.error}") from group.error

    def _open_group(self) -> _CommitGroup:
        """The group to add a step to (under the lock): the open one, or a new transaction."""
        if self._group is not None and not self._db.in_transaction:
            # SQLite ended the transaction under a step (an error it rolled back all by itself).
            self._fail_group(self._group, sqlite3.OperationalError("the database rolled the transaction back"))
        if self._group is None:
            if self._db.in_transaction:
                # Left open by a commit that failed and could not roll back: nothing in it is promised.
                self._db.execute("ROLLBACK")
            self._db.execute("BEGIN IMMEDIATE")
            self._group = _CommitGroup()
        return self._group

    def _finish_step(self, group: _CommitGroup) -> None:
        if group.committed or not self._db.in_transaction:
            # The transaction was lost during the step (its caller caught the error): fail the group.
            self._fail_group(group, sqlite3.OperationalError("the database rolled the transaction back during a step"))
            return
        try:
            self._db.execute("RELEASE step_of_a_group")
        except BaseException as exc:
            self._fail_group(group, exc)
            raise

    def _undo_step(self, group: _CommitGroup, why: BaseException) -> None:
        if self._db.in_transaction and not group.committed:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK TO step_of_a_group")
                self._db.execute("RELEASE step_of_a_group")
                return
        lost = sqlite3.OperationalError("the database rolled the transaction back during a step")
        lost.__cause__ = why  # the other steps of the group fail for the error this one met (an outage, say)
        self._fail_group(group, lost)

    def _fail_group(self, group: _CommitGroup, error: BaseException) -> None:
        """Under the lock: the group's steps are lost; every thread in it is told so."""
        if group.committed:
            return
        with contextlib.suppress(sqlite3.Error):
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        group.error = error
        group.committed = True
        if self._group is group:
            self._group = None

    def _commit(self, group: _CommitGroup) -> None:
        try:
            # Steps of other threads on their way (waiting for the lock) join this group first, for
            # a short while at most: one fsync then covers them all.
            deadline = time.monotonic() + GROUP_COMMIT_WAIT_SECONDS
            time.sleep(0)
            while self._steps_coming and not group.committed and time.monotonic() < deadline:
                time.sleep(0.0001)
        finally:  # even when interrupted: the group is decided before this thread leaves
            with self._lock:
                self._decide(group)

    def _decide(self, group: _CommitGroup) -> None:
        """Under the lock: COMMIT the group unless another thread has decided it already."""
        if group.committed:
            return
        if self._group is group:
            self._group = None
        try:
            started = time.perf_counter()
            self._db.execute("COMMIT")
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - started)
            self.outage.answered()
        except BaseException as exc:
            group.error = exc
            self.outage.noticed(exc)
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            if not isinstance(exc, sqlite3.Error):
                raise
        finally:
            group.committed = True

    @contextlib.contextmanager
    def fenced_by(self, check: Callable[[], None]) -> Iterator[None]:
        """Every step this thread makes inside begins with `check` (a claim's fencing token, journal/claims.py),
        which raises to refuse the step."""
        before = getattr(self._fence, "check", None)
        self._fence.check = check
        try:
            yield
        finally:
            self._fence.check = before

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a transaction: a step that is undone alone when it fails, leaving the rest of the transaction."""
        with self._lock:
            if not self._in_transaction:
                raise JournalError("a savepoint needs an open transaction")
            if not self._db.in_transaction:
                raise sqlite3.OperationalError("the journal's transaction was rolled back by an earlier error")
            self._db.execute("SAVEPOINT step")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK TO step")
                self._db.execute("RELEASE step")
                raise
            else:
                self._db.execute("RELEASE step")

    def checkpoint(self) -> None:
        """Give the engine's logs back to the file system where it keeps them (SQLite's write-ahead log)."""
        with self._lock:
            if self._group is not None:
                self._decide(self._group)  # steps waiting to commit go first
            self.engine.checkpoint(self._db)

    @contextlib.contextmanager
    def guarded_statement(self) -> Iterator[None]:
        """Around a statement whose failure the caller handles and goes on: where a failed statement spoils the
        whole transaction (PostgreSQL), it runs in a savepoint of its own; on SQLite nothing is added."""
        if self.engine.failed_statement_aborts_transaction:
            with self.savepoint():
                yield
        else:
            yield

    # ---- statements of the journal's smaller tables (journal/originals.py) ------------------------------
    def execute(self, sql: str, params: tuple = ()) -> int:
        """One write statement, a step of its own (or of this thread's transaction); the rows it changed."""
        with self.transaction():
            return self._db.execute(sql, params).rowcount

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """The rows of one read statement."""
        connection, lock = self._reading()
        started = time.monotonic()
        with lock:
            try:
                return connection.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                self.outage.noticed(exc, started)
                raise

    def probe(self) -> bool:
        """While the database does not answer: one small step through the writer (which opens its connection
        again), True once it commits. Its failure is the outage's, said already."""
        try:
            with self.transaction():
                self._db.execute("SELECT 1")
        except sqlite3.Error:
            return False
        return True
