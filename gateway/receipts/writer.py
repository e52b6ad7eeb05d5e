"""Write status files from the journal: atomically, and again after a crash if a write was lost."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.clock import Clock
from gateway.contract.status import StatusEvent, StatusReport, render_status
from gateway.diskspace import DiskFull, is_disk_full
from gateway.fsio import SHARED_FILE_MODE, TEMP_PREFIX, fsync_dir, share_fd
from gateway.journal.records import MessageRecord
from gateway.journal.store import Journal
from gateway.logsummary import RepeatedErrors, same_kind
from gateway.progress import progress

log = logging.getLogger(__name__)

SYNC_THREADS = 8  # status files written and fsynced at once in a batch
# A temporary status file lives for the moment between its write and its rename; one this old was left by a
# writer killed in between, on this node or on another sharing the folder (whose live writes it must not touch).
LEFTOVER_SECONDS = 3600.0
WAIT_LOOK_SECONDS = 1.0  # how often one who waits for another thread's flush looks whether it moves


def _write_synced(path: str, content: bytes, group: int | None = None) -> BaseException | None:
    """Write `content` to a new file at `path` (0640, `group`'s when set) and fsync it; the error instead of
    raising it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, SHARED_FILE_MODE)
        try:
            share_fd(fd, group)
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return exc
    return None


def status_file_name(drop_name: str | None, message_id: str, direction: str) -> str:
    if direction == "in":
        return f"in.{message_id}.xml"
    return f"{drop_name}.{message_id}.xml"


class StatusWriter:
    def __init__(self, journal: Journal, folder: Path, clock: Clock, group: int | None = None) -> None:
        """`group`: the archive system's (folders.group), given every status file; None keeps the one it gets."""
        self.journal = journal
        self.folder = folder
        self.clock = clock
        self.group = group
        self._lock = threading.RLock()
        self._executor: ThreadPoolExecutor | None = None
        self._soon = threading.Event()
        self._background: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closing = False
        self._repeated = RepeatedErrors(log, noun="flushes")
        self._files_written = 0  # grows as a flush writes: one who waits for that flush sees it move
        # Where several nodes share the journal and the status folder: a lease only one node holds at a time
        # (True when this one has it), so no two nodes write and mark the same changes (daemon.py sets it).
        self.one_node_at_a_time: Callable[[], contextlib.AbstractContextManager[bool]] | None = None
        # Inside the step that marks written files clean: whether the lease is still this node's (one that stalled
        # past it may have written files older than the new holder's: they are marked to be written again instead).
        self.still_ours: Callable[[], bool] | None = None

    def report(self, record: MessageRecord, events: list[StatusEvent] | None = None) -> StatusReport:
        """The status file's content for `record`; `events`: its history when read already (None: read now)."""
        return StatusReport(
            message_id=record.message_id,
            direction="outgoing" if record.direction == "out" else "incoming",
            events=tuple(self.journal.events(record.row) if events is None else events),
            updated=self.clock.now(),
            conversation_id=record.conversation_id,
            drop_name=record.drop_name,
            client_reference=record.client_reference,
            sender=record.sender,
            receiver=record.receiver,
            message_type=record.message_type,
            process=record.process,
            deadline=record.deadline,
            channel=record.channel,
            route_reason=record.route_reason,
            errors=record.errors,
        )

    def write_many(self, records: list[MessageRecord]) -> None:
        """Replace many status files atomically, with one fsync of the folder for all of them.

        Each file is written to a temporary name and fsynced, then renamed over its target; the
        folder is fsynced once after the renames. Readers see each file old or new, never partial.
        The writes and fsyncs of a batch run on a few threads, so the file system can commit them
        together instead of one by one.
        """
        if not records:
            return
        suffix = f".{os.getpid()}.{threading.get_ident()}"
        histories = self.journal.events_of([record.row for record in records])
        jobs = [
            (
                os.path.join(self.folder, f"{TEMP_PREFIX}{record.row}{suffix}"),
                os.path.join(self.folder, record.status_name),
                render_status(self.report(record, histories[record.row])),
            )
            for record in records
        ]

        def write(job: tuple[str, str, bytes]) -> BaseException | None:
            outcome = _write_synced(job[0], job[2], self.group)
            self._files_written += 1
            return outcome

        outcomes = [write(jobs[0])] if len(jobs) == 1 else list(self._pool().map(write, jobs))
        failure = next((outcome for outcome in outcomes if outcome is not None), None)
        if failure is not None:
            for temp, _target, _content in jobs:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
            raise failure
        for temp, target, _content in jobs:
            os.replace(temp, target)
        fsync_dir(self.folder)

    def remove_leftovers(self) -> int:
        """Remove the temporary files that writers killed between write and rename left in the status folder (the
        archive system never reads them, but they would pile up for ever); returns how many."""
        cutoff = self.clock.now().timestamp() - LEFTOVER_SECONDS
        removed = 0
        for entry in os.scandir(self.folder):
            if not entry.name.startswith(TEMP_PREFIX):
                continue
            with contextlib.suppress(FileNotFoundError):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
        if removed:
            log.info("removed %d temporary status file(s) left in %s by writers that were stopped mid-write",
                     removed, self.folder)
        return removed

    def flush_soon(self) -> None:
        """Flush on a background thread, so the caller can go on with its next batch meanwhile.

        The rows are committed already; the files follow shortly. A synchronous `flush()` waits for
        a background one in progress and then writes whatever is still dirty.
        """
        # Not self._lock: that one is held for the whole of a flush, and asking must never wait for it.
        with self._start_lock:
            if self._closing:
                return
            if self._background is None:
                self._background = threading.Thread(target=self._flush_in_background, name="status-flush", daemon=True)
                self._background.start()
        self._soon.set()

    def close(self) -> None:
        """Stop the background flusher, then write what is left. Call before closing the journal:
        the flusher reads through its own SQLite connection, which must not close under it."""
        with self._start_lock:
            background, self._background = self._background, None
            self._closing = True
        if background is not None:
            self._soon.set()
            background.join(timeout=30)
        self.flush()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _flush_in_background(self) -> None:
        while True:
            self._soon.wait()
            self._soon.clear()
            if self._closing:
                return
            try:
                self.flush()
            except Exception:
                log.exception("writing status files failed; they are written again at the next flush")

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=SYNC_THREADS, thread_name_prefix="status-sync")
        return self._executor

    def flush(self, limit: int = 500) -> int:
        """Rewrite every status file whose message changed since it was last written.

        One thread at a time: two flushes of the same change would each mark it clean once.
        """
        if self.one_node_at_a_time is not None:
            with self.one_node_at_a_time() as ours:
                return self._flush(limit) if ours else 0
        return self._flush(limit)

    @contextlib.contextmanager
    def _flushing(self) -> Iterator[None]:
        """The flush lock. Waiting for another thread's flush (hundreds of files on a slow disk can take longer
        than a job's grace), the waiting job beats for as long as that flush writes files: it waits, it does
        not hang; if that flush stops moving, so do the beats, and the watchdog says so."""
        seen = self._files_written
        while not self._lock.acquire(timeout=WAIT_LOOK_SECONDS):
            if self._files_written != seen:
                seen = self._files_written
                progress()
        try:
            yield
        finally:
            self._lock.release()

    def _flush(self, limit: int) -> int:
        written = 0
        with self._flushing():
            while True:
                dirty = self.journal.dirty(limit)
                if not dirty:
                    return written
                try:
                    self.write_many(dirty)
                except OSError as exc:
                    # A full disk or a folder we may not write: one line (repeats summarised), and the files
                    # stay owed, so the next flush that can write them does.
                    where = DiskFull(self.folder, 0).describe() if is_disk_full(exc) else str(exc)
                    self._repeated.log(logging.ERROR, f"status files: {same_kind(where)}",
                                       "status files could not be written to %s: %s; the next flush tries again",
                                       self.folder, where)
                    return written
                try:
                    self.journal.mark_clean(dirty, still_ours=self.still_ours)
                except sqlite3.OperationalError as exc:
                    # Written, but not noted: written again at the next flush, which is harmless (a status file is
                    # rewritten whole). A full disk under the journal is an error; a commit the database gave up
                    # (a node woken from a stall, a session ended under it) is a warning that mends itself.
                    level = logging.ERROR if is_disk_full(exc) else logging.WARNING
                    self._repeated.log(level, f"status files noted: {same_kind(str(exc))}",
                                       "status files were written to %s, but the journal could not note it: %s; "
                                       "they are written again at the next flush", self.folder, exc)
                    return written
                written += len(dirty)
                progress()
                if len(dirty) < limit:
                    return written
