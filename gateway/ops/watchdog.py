"""Feeds systemd's watchdog only while every worker beats, and keeps STATUS= a one-line summary."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gateway import systemd
from gateway.ops.health import Heartbeats

log = logging.getLogger(__name__)

STATUS_EVERY_S = 2.0
MAX_ERROR_CHARS = 160


class LastProblem(logging.Handler):
    """Remembers the last WARNING or worse the daemon logged, for STATUS= and /healthz."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.text: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().splitlines()[0] if record.getMessage() else record.levelname
        except Exception:  # a bad log call must not break logging
            return
        self.text = text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


class Watchdog:
    """A thread of its own (not a scheduler job: a scheduler whose threads hang would still ping)."""

    def __init__(
        self,
        heartbeats: Heartbeats,
        watchdog_interval: float | None,
        summary: Callable[[], str],
    ) -> None:
        self.heartbeats = heartbeats
        self.watchdog_interval = watchdog_interval
        self.summary = summary
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._late_names: tuple[str, ...] = ()
        self._status = ""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        tick = min(self.watchdog_interval or STATUS_EVERY_S, STATUS_EVERY_S)
        while True:
            try:
                self.check()
            except Exception:
                log.exception("the watchdog check failed; trying again")
            if self._stop.wait(tick):
                return

    def check(self) -> None:
        late = self.heartbeats.late()
        names = tuple(worker.name for worker in late)
        if names != self._late_names:
            for worker in late:
                if worker.name not in self._late_names:
                    log.error(
                        "worker %s has not reported for %.0f s (it runs every %g s); %s",
                        worker.name, worker.seconds_since_beat, worker.interval,
                        "systemd's watchdog is no longer fed" if self.watchdog_interval else "see /healthz",
                    )
            for name in self._late_names:
                if name not in names:
                    log.info("worker %s reports again", name)
            self._late_names = names
        if not late and self.watchdog_interval:
            systemd.notify("WATCHDOG=1")
        status = self.summary()
        if status != self._status:
            systemd.notify(f"STATUS={status}")
            self._status = status
