"""Receiving where several nodes share the journal (PostgreSQL): one node at a time lists what waits on a channel
(the job's lease) and records each transfer as a take; every node claims takes one by one (a lease and a fencing token
each, journal/item_claims.py) and takes them with the channel's receiver. A node that wakes up past its lease finds
its late writes about the transfer refused, and leaves it to the node that took it over. On SQLite the receiver
polls by itself (Receiver.poll)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from concurrent.futures import FIRST_COMPLETED, wait

from gateway.delivery.circuit import ChannelPaused
from gateway.errors import ChannelError, JournalError
from gateway.inbound.receiver import MAX_POLL_SECONDS, Receiver
from gateway.inbound.transfer_ids import transfer_id_problem
from gateway.journal.claims import Claim, FencedOut
from gateway.journal.item_claims import ItemClaims
from gateway.logsummary import same_kind
from gateway.progress import progress

log = logging.getLogger(__name__)


class SharedTakes:
    """One channel's receiving on this node, among others."""

    def __init__(self, receiver: Receiver, items: ItemClaims) -> None:
        self.receiver = receiver
        self.items = items

    def list(self) -> int:
        """One node at a time: what waits on the channel becomes takes for every node; then this node takes its
        share. Returns how many transfers this node handled."""
        r = self.receiver
        r.repeated.flush()
        if not r.room_again() or r.paused():
            return 0
        handled = r.retake_released()
        try:
            references = r.call(r.channel.list_inbound)
        except ChannelPaused:
            return handled
        except ChannelError as exc:
            r.repeated.log(
                logging.WARNING, f"listing on {r.channel.name}: {same_kind(str(exc))}",
                "listing the messages waiting on %s failed: %s; the next poll tries again",
                r.channel.name, exc, noun="polls",
            )
            return handled
        takeable = []
        for reference in references:
            problem = transfer_id_problem(reference)
            if problem is not None:
                log.warning("the channel offered a transfer with a malformed id %r (%s); ignored", reference[:80],
                            problem)
            else:
                takeable.append(reference)
        self.items.found(r.channel.name, takeable)
        self.items.forget_stale(r.channel.name)
        return handled + self.take()

    def take(self) -> int:
        """Every node: claim takes the listings found and take them, a few at a time, until none is left (or
        MAX_POLL_SECONDS passed, or the channel asked us to wait); returns how many were handled. Each transfer is
        tried once a turn: one that failed (a network error, the channel paused meanwhile) waits for the next turn,
        as on one node, instead of being taken again at once for the rest of this one."""
        r = self.receiver
        if not r.room_again() or r.paused():
            return 0
        handled = 0
        tried: set[str] = set()
        ends = time.monotonic() + MAX_POLL_SECONDS
        try:
            while time.monotonic() < ends and not r.disk.stopped and not r.paused():
                claimed = self.items.takes(r.channel.name, r.workers, tried)
                if not claimed:
                    break
                tried.update(reference for reference, _ in claimed)
                running = {r.pool.submit(self._take_claimed, reference, claim) for reference, claim in claimed}
                while running:
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    progress()
                    handled += sum(future.result() for future in done)
        finally:
            r.statuses.flush_soon()
        return handled

    def _take_claimed(self, reference: str, claim: Claim) -> int:
        """One transfer this node claimed: every journal step about it checks the claim; the take's row goes once
        the channel has its answer (confirmed or rejected), and the claim is let go either way."""
        r = self.receiver
        held = self.items.held
        try:
            with held.fencing(claim):
                taken = r.take_guarded(reference)
            if taken:
                self.items.taken(r.channel.name, reference, claim)
            return taken
        except FencedOut:
            return 0  # another node took it over (said in one line): it is that node's now
        except sqlite3.Error as exc:
            log.warning("incoming transfer %s on %s was taken, but noting it failed (%s); the next listing finds "
                        "whether it is still there", reference, r.channel.name, exc)
            return 1
        finally:
            with contextlib.suppress(sqlite3.Error, JournalError):
                held.let_go(claim)

