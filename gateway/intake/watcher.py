"""File-system events as hints: they make intake fast; the periodic scan keeps it correct."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver


class OutboxHints(FileSystemEventHandler):
    """Collects the outbox entries that events touched, and which of them arrived by rename."""

    def __init__(self, outbox: Path, wake: threading.Event) -> None:
        self.outbox = outbox.resolve()
        self.wake = wake
        self._lock = threading.Lock()
        self._touched: set[str] = set()
        self._moved_in: set[str] = set()

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
        with self._lock:
            self._touched.add(name)
            if moved_to and Path(os.fsdecode(moved_to)).parent == self.outbox:
                self._moved_in.add(name)
        self.wake.set()

    def take(self) -> tuple[set[str], set[str]]:
        with self._lock:
            touched, moved_in = self._touched, self._moved_in
            self._touched, self._moved_in = set(), set()
        return touched, moved_in


def _observer() -> BaseObserver:
    # Full events report a rename from outside the outbox as a move (not a create), which is how
    # intake knows a drop arrived complete.
    try:
        from watchdog.observers.inotify import InotifyObserver

        return InotifyObserver(generate_full_events=True)
    except (ImportError, OSError):
        return Observer()


class OutboxWatcher:
    def __init__(self, outbox: Path, wake: threading.Event) -> None:
        self.hints = OutboxHints(outbox, wake)
        self._observer = _observer()
        self._observer.schedule(self.hints, str(self.hints.outbox), recursive=False)

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
