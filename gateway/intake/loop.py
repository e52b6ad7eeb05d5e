"""The intake thread: wakes on hints or the scan interval, and never lets one failure stop it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gateway.intake.service import Intake
from gateway.intake.watcher import OutboxWatcher
from gateway.progress import running_as

log = logging.getLogger(__name__)

MIN_RESCAN_SECONDS = 0.05


class IntakeLoop:
    def __init__(self, intake: Intake, scan_interval: float, use_events: bool) -> None:
        self.intake = intake
        self.scan_interval = scan_interval
        self.wake = threading.Event()
        self._stop = threading.Event()
        self.watcher = OutboxWatcher(intake.config.folders.outbox, self.wake) if use_events else None
        self._thread = threading.Thread(target=self._run, name="intake", daemon=True)
        self.on_round: Callable[[], None] | None = None  # called after every round: the worker's heartbeat
        # Why new drops must wait in the outbox (a disk under its floor), or None; asked before each pass.
        self.hold_reason: Callable[[], str | None] | None = None
        # Whether intake takes nothing now, said elsewhere (the journal's database does not answer): asked likewise.
        self.paused: Callable[[], bool] | None = None

    def start(self) -> None:
        if self.watcher:
            self.watcher.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self.watcher:
            self.watcher.stop()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with running_as(self._beat):  # a long round that moves on (one drop after another) is not a hung one
            self._rounds()

    def _rounds(self) -> None:
        full_scan_due = 0.0
        clock = self.intake.clock
        outbox_problem: str | None = None
        held: str | None = None
        while not self._stop.is_set():
            try:
                now = clock.monotonic()
                # A shorter scan_interval (SIGHUP) brings the next full scan forward; a longer one waits for it.
                full_scan_due = min(full_scan_due, now + self.scan_interval)
                reason = self.hold_reason() if self.hold_reason else None
                if reason != held:
                    if reason:
                        log.warning("intake holds new drops in the outbox: %s", reason)
                    else:
                        log.info("intake resumes: %s", "free space is back above every floor")
                    held = reason
                if reason or (self.paused is not None and self.paused()):
                    full_scan_due = now  # hints wait in the watcher; a full scan as soon as space returns
                    self._pause()
                    continue
                if self.watcher:
                    if self.watcher.hints.take_rescan():
                        full_scan_due = now
                    touched, moved_in = self.watcher.hints.take()
                    for name in moved_in:
                        self.intake.scanner.note_moved_in(name)
                    if touched:
                        counts = self.intake.run_once(only=touched)
                        # A drop written in place waits out its quiet period: look again when it ends,
                        # since no event may come by then.
                        full_scan_due = now if counts.more else min(full_scan_due, now + self._next_interval())
                if now >= full_scan_due:
                    counts = self.intake.run_once()
                    full_scan_due = clock.monotonic() + (0 if counts.more else self._next_interval())
                if outbox_problem:
                    log.info("intake works again")
                    outbox_problem = None
            except OSError as exc:
                # A folder intake needs (a share gone, its permissions changed): one line when it starts.
                problem = f"{exc.filename}: {exc.strerror}"
                if problem != outbox_problem:
                    log.error("intake cannot use %s; trying again every %g s", problem, self.scan_interval)
                    outbox_problem = problem
                full_scan_due = clock.monotonic() + self.scan_interval
            except Exception:
                log.exception("the intake pass failed; trying again at the next interval")
                full_scan_due = clock.monotonic() + self.scan_interval
            timeout = max(0.0, full_scan_due - clock.monotonic())
            self._beat()
            self.wake.wait(timeout=timeout)
            self.wake.clear()

    def _pause(self) -> None:
        self._beat()
        self.wake.wait(timeout=self.scan_interval)
        self.wake.clear()

    def _beat(self) -> None:
        if self.on_round is not None:
            self.on_round()

    def _next_interval(self) -> float:
        # While drops wait out their quiet period, look again when the first of them may be ready;
        # entries that only wait for the incomplete timeout do not make the loop scan more often.
        wait = self.intake.scanner.next_change_in()
        if wait is None:
            return self.scan_interval
        return min(self.scan_interval, max(MIN_RESCAN_SECONDS, wait))
