"""File-system events as hints: they make intake fast; the periodic scan keeps it correct.

On Linux the outbox is watched with inotify directly (one non-recursive watch, read on its own
thread). watchdog's inotify observer holds every IN_MOVED_FROM back for half a second to pair it
with an IN_MOVED_TO, and events queued behind it wait too; since each claim moves a drop out of
the outbox, that would add up to 0.5 s to the intake of the next drop. Elsewhere watchdog is used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import select
import struct
import sys
import threading
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

log = logging.getLogger(__name__)


class OutboxHints(FileSystemEventHandler):
    """Collects the outbox entries that events touched, and which of them arrived by rename."""

    def __init__(self, outbox: Path, wake: threading.Event) -> None:
        self.outbox = outbox.resolve()
        self.wake = wake
        self._lock = threading.Lock()
        self._touched: set[str] = set()
        self._moved_in: set[str] = set()
        self._rescan = False

    def _top_level(self, path: str | bytes) -> str | None:
        try:
            relative = Path(os.fsdecode(path)).relative_to(self.outbox)
        except ValueError:
            return None
        return relative.parts[0] if relative.parts else None

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.event_type == "moved" and not event.dest_path:
            return  # moved out of the outbox: nothing to take
        moved_to = getattr(event, "dest_path", None) if event.event_type == "moved" else None
        name = self._top_level(moved_to or event.src_path)
        if name is None:
            return
        self.note(name, moved_in=bool(moved_to) and Path(os.fsdecode(moved_to)).parent == self.outbox)

    def note(self, name: str, moved_in: bool = False) -> None:
        """An event touched the outbox entry `name`; `moved_in` when it arrived there by rename."""
        with self._lock:
            self._touched.add(name)
            if moved_in:
                self._moved_in.add(name)
        self.wake.set()

    def lost_events(self) -> None:
        """Events were dropped (queue overflow): only a full scan can tell what changed."""
        with self._lock:
            self._rescan = True
        self.wake.set()

    def take(self) -> tuple[set[str], set[str]]:
        with self._lock:
            touched, moved_in = self._touched, self._moved_in
            self._touched, self._moved_in = set(), set()
        return touched, moved_in

    def take_rescan(self) -> bool:
        with self._lock:
            rescan, self._rescan = self._rescan, False
        return rescan


# ---- inotify (Linux) ---------------------------------------------------------------------------
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_CLOEXEC = 0o2000000
# Moves out of the outbox (IN_MOVED_FROM) are not asked for: there is nothing to take.
WATCH_MASK = (
    (IN_CREATE | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)
    | IN_ONLYDIR
    | IN_DONT_FOLLOW
)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then the name, NUL-padded to len bytes


class InotifyOutboxWatcher:
    """One inotify watch on the outbox, read on a thread that sleeps in poll() until an event or stop."""

    def __init__(self, hints: OutboxHints) -> None:
        self.hints = hints
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self._fd = libc.inotify_init1(IN_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        watch = libc.inotify_add_watch(self._fd, os.fsencode(hints.outbox), WATCH_MASK)
        if watch < 0:
            code = ctypes.get_errno()
            os.close(self._fd)
            raise OSError(code, f"inotify_add_watch failed for {hints.outbox}")
        self._stop_read, self._stop_write = os.pipe()
        self._thread = threading.Thread(target=self._run, name="outbox-inotify", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        os.write(self._stop_write, b"x")
        self._thread.join(timeout=5)
        for fd in (self._fd, self._stop_read, self._stop_write):
            os.close(fd)

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._stop_read, select.POLLIN)
        while True:
            try:
                ready = {fd for fd, _ in poller.poll()}
                if self._stop_read in ready:
                    return
                data = os.read(self._fd, 64 * 1024)
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    continue
                log.exception("reading outbox events failed; relying on the periodic scan")
                return
            self._dispatch(data)

    def _dispatch(self, data: bytes) -> None:
        offset = 0
        while offset + _EVENT.size <= len(data):
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                log.warning("the outbox event queue overflowed; scanning the whole outbox")
                self.hints.lost_events()
            elif mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                log.warning("the outbox folder was removed or moved; only the periodic scan sees drops now")
                self.hints.lost_events()
            elif raw:
                self.hints.note(os.fsdecode(raw), moved_in=bool(mask & IN_MOVED_TO))


# ---- watchdog (elsewhere) ----------------------------------------------------------------------
def _observer() -> BaseObserver:
    # Full events report a rename from outside the outbox as a move (not a create), which is how
    # intake knows a drop arrived complete.
    try:
        from watchdog.observers.inotify import InotifyObserver

        return InotifyObserver(generate_full_events=True)
    except (ImportError, OSError):
        return Observer()


class _WatchdogOutboxWatcher:
    def __init__(self, hints: OutboxHints) -> None:
        self.hints = hints
        self._observer = _observer()
        self._observer.schedule(self.hints, str(self.hints.outbox), recursive=False)

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)


class OutboxWatcher:
    def __init__(self, outbox: Path, wake: threading.Event) -> None:
        self.hints = OutboxHints(outbox, wake)
        self._impl: InotifyOutboxWatcher | _WatchdogOutboxWatcher | None = None
        if sys.platform.startswith("linux"):
            try:
                self._impl = InotifyOutboxWatcher(self.hints)
            except (OSError, AttributeError) as exc:
                log.warning("inotify is not available (%s); using watchdog for outbox events", exc)
        if self._impl is None:
            self._impl = _WatchdogOutboxWatcher(self.hints)

    def start(self) -> None:
        assert self._impl is not None
        self._impl.start()

    def stop(self) -> None:
        assert self._impl is not None
        self._impl.stop()
