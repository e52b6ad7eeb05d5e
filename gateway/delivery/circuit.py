"""A circuit per channel: after repeated failures, or when the peer asks us to slow down (429, 503), the
channel pauses; one probe tests it when the pause ends, and once a probe gets through, everything
waiting for that channel goes at once instead of waiting out each message's own back-off.

A pause the peer asked for (Retry-After, or a 429/503) is a floor for every call on the channel: sends,
status messages, the receiver's listings and downloads, and status polls ask `guard()` first. A call that
left before the peer's answer came back and then succeeds does not end such a pause early.

    closed ──(N failures in a row, or throttled)──► open ──(pause over)──► probing
       ▲                                              ▲                       │
       └──────────────(probe succeeds)────────────────┼───────────────────────┤
                                                      └──(probe fails: a longer pause)

Channel-neutral: it counts results, never looks at a wire. Other channels are never paused by one's trouble.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gateway.clock import Clock
from gateway.errors import RetryableChannelError

log = logging.getLogger(__name__)

FAILURES_TO_OPEN = 3
FIRST_PAUSE_SECONDS = 1.0
WORKING_WINDOW_SECONDS = 300.0
MAX_PAUSE_SECONDS = 10.0  # a dead channel costs one probe per ten seconds; a live one is found as fast


class ChannelPaused(RetryableChannelError):
    """A call not made: its channel is paused (the peer asked us to wait, or calls kept failing)."""


class ChannelCircuit:
    """The circuit of one channel; thread-safe (the sender's workers and the status sender share it)."""

    def __init__(
        self,
        channel: str,
        clock: Clock,
        failures_to_open: int = FAILURES_TO_OPEN,
        first_pause: float = FIRST_PAUSE_SECONDS,
        max_pause: float = MAX_PAUSE_SECONDS,
    ) -> None:
        self.channel = channel
        self.clock = clock
        self.failures_to_open = failures_to_open
        self.first_pause = first_pause
        self.max_pause = max_pause
        self.on_close: list[Callable[[str], None]] = []
        self._lock = threading.Lock()
        self._failures = 0
        self._open = False
        self._probing = False
        self._pause = first_pause
        self._reopens_at = 0.0  # monotonic
        self._quiet_until = 0.0  # monotonic: the peer asked for no calls before this (Retry-After, 429, 503)
        self._answered = False  # a call got through while the peer's wait lasted: it closes once the wait is over
        self._last_success: float | None = None  # monotonic

    @property
    def is_open(self) -> bool:
        """Whether calls on this channel wait (a probe may be under way)."""
        self._settle()
        with self._lock:
            return self._open

    def seconds_left(self) -> float:
        """How long the pause still lasts (0 when closed or when a probe may go)."""
        self._settle()
        with self._lock:
            now = self.clock.monotonic()
            quiet = max(self._quiet_until - now, 0.0)
            return max(self._reopens_at - now, quiet) if self._open else quiet

    def guard(self) -> None:
        """Raise ChannelPaused while the channel's pause lasts: for calls other than the sender's probes
        (listings, downloads, status polls), which simply wait for the next round."""
        left = self.seconds_left()
        if left > 0:
            raise ChannelPaused(f"{self.channel} is paused for {left:.0f} s more; nothing is asked of it until then")

    def heed(self, error: BaseException) -> None:
        """A call other than a send failed: when the peer asked us to wait (429, 503, Retry-After), the channel
        pauses for everyone until that wait is over. Other failures of such calls are their own business, and
        none of them is taken for a failed probe."""
        if not isinstance(error, RetryableChannelError) or isinstance(error, ChannelPaused) or not (
            error.throttled or error.retry_after is not None
        ):
            return
        with self._lock:
            self._wait_for_peer(error, self.clock.monotonic())
            opened_now = not self._open
            self._open = True
            self._reopens_at = max(self._reopens_at, self._quiet_until) if not opened_now else self._quiet_until
            pause = self._reopens_at - self.clock.monotonic()
        if opened_now:
            self._log_pause(pause, "it asked us to slow down", error)

    def take_probe(self) -> bool:
        """True (once per pause) when the pause is over and the caller should make the one probing call."""
        self._settle()
        with self._lock:
            now = self.clock.monotonic()
            if not self._open or self._probing or now < self._reopens_at or now < self._quiet_until:
                return False
            self._probing = True
            return True

    def probe_done(self) -> None:
        """The probe's message is finished with, whatever happened: a later one may probe again."""
        with self._lock:
            self._probing = False

    def working(self, within: float = WORKING_WINDOW_SECONDS) -> bool:
        """Closed, and a call got through within the last `within` seconds: the channel carries traffic now."""
        self._settle()
        with self._lock:
            return (not self._open and self._last_success is not None
                    and self.clock.monotonic() - self._last_success <= within)

    def succeeded(self) -> None:
        """A call got through. While the peer's own wait lasts the circuit stays open (the call may have left
        before the peer asked us to wait, and the others must not go yet); it closes once the wait is over."""
        with self._lock:
            now = self.clock.monotonic()
            self._last_success = now
            self._failures = 0
            if self._open and now < self._quiet_until:
                self._answered = True
                return
        self._close()

    def _settle(self) -> None:
        """Close a circuit a call got through during the peer's wait, now that the wait is over."""
        with self._lock:
            due = self._open and self._answered and self.clock.monotonic() >= self._quiet_until
        if due:
            self._close()

    def _close(self) -> None:
        with self._lock:
            was_open = self._open
            self._open = self._probing = self._answered = False
            self._pause = self.first_pause
        if was_open:
            log.info("%s answers again: the messages waiting for it go now", self.channel)
            for listener in self.on_close:
                listener(self.channel)

    def _wait_for_peer(self, error: RetryableChannelError, now: float) -> None:
        """Under the lock: the peer's wait (its Retry-After, else the first pause) is a floor for every call."""
        wait = error.retry_after if error.retry_after is not None else self.first_pause
        self._quiet_until = max(self._quiet_until, now + wait)

    def failed(self, error: RetryableChannelError) -> None:
        """A retryable failure of a call on this channel; opens (or keeps open) the circuit when it is time."""
        with self._lock:
            self._failures += 1
            self._answered = False
            now = self.clock.monotonic()
            asked_to_wait = error.throttled or error.retry_after is not None
            trips = asked_to_wait or self._failures >= self.failures_to_open
            if self._probing:
                self._probing = False
                self._pause = min(self._pause * 2, self.max_pause)
            elif not self._open and not trips:
                return
            pause = max(self._pause, error.retry_after or 0.0)
            if asked_to_wait:
                self._wait_for_peer(error, now)
            opened_now = not self._open
            self._open = True
            self._reopens_at = max(self._reopens_at, now + pause) if not opened_now else now + pause
        if opened_now:
            why = "it asked us to slow down" if error.throttled else f"{self._failures} calls in a row failed"
            self._log_pause(pause, why, error)

    def _log_pause(self, pause: float, why: str, error: RetryableChannelError) -> None:
        log.warning("%s paused for %.0f s (%s: %s); one message tests it then, the others wait",
                    self.channel, pause, why, error)


class Circuits:
    """One circuit per channel name, made on first use."""

    def __init__(self, clock: Clock, **settings: float) -> None:
        self.clock = clock
        self.settings = settings
        self._lock = threading.Lock()
        self._circuits: dict[str, ChannelCircuit] = {}
        self._listeners: list[Callable[[str], None]] = []

    def __getitem__(self, channel: str) -> ChannelCircuit:
        with self._lock:
            circuit = self._circuits.get(channel)
            if circuit is None:
                circuit = ChannelCircuit(channel, self.clock, **self.settings)  # type: ignore[arg-type]
                circuit.on_close.extend(self._listeners)
                self._circuits[channel] = circuit
            return circuit

    def on_close(self, listener: Callable[[str], None]) -> None:
        """Call `listener(channel)` whenever a channel's circuit closes after a pause."""
        with self._lock:
            self._listeners.append(listener)
            for circuit in self._circuits.values():
                circuit.on_close.append(listener)

    def paused(self) -> set[str]:
        """The channels whose calls wait now."""
        with self._lock:
            circuits = list(self._circuits.values())
        return {circuit.channel for circuit in circuits if circuit.is_open}


__all__ = ["ChannelCircuit", "ChannelPaused", "Circuits"]
