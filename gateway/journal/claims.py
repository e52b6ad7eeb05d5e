"""Claims on work shared by nodes, each with a lease and a fencing token.

A claim names one piece of work (`send:<row>`, `job:retention`); its holder has it until the lease ends, and
renews it while it works. Each new holder gets a token greater than any before it, and every write a holder
makes about the work goes through fenced(), which checks the token in the same transaction: a node that was
paused past its lease (a long stall, a frozen VM) and wakes up finds its token stale, and its late write is
refused with one log line instead of overwriting the work of the node that took over.

On PostgreSQL the check holds the claim's row lock until the commit, so a takeover waits for a write that
passed its check; due sends are picked with SELECT ... FOR UPDATE SKIP LOCKED, so nodes claiming at the same
moment pass each other by instead of waiting. On SQLite the one writer at a time (BEGIN IMMEDIATE) does both.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.errors import JournalError
from gateway.journal.engine import JournalUnavailable, row_lock
from gateway.journal.phases import Phase
from gateway.journal.store import Journal

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0
_FIRST_CLAIM_LOCKS = 0x6566  # the advisory locks' class of first claims (PostgreSQL), beside the migrations' lock


@dataclass(frozen=True)
class Claim:
    work: str
    node: str
    token: int
    expires_at: float


class FencedOut(JournalError):
    """The claim was taken over by another node: this node's write about the work is refused."""


def send_work(row: int) -> str:
    return f"send:{row}"


class Claims:
    """One node's claims."""

    def __init__(self, journal: Journal, node: str, clock: Clock, lease_seconds: float = LEASE_SECONDS) -> None:
        self.journal = journal
        self.node = node
        self.clock = clock
        self.lease_seconds = lease_seconds
        self._refused: set[tuple[str, int]] = set()  # claims whose late write was refused, said once each

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def claim(self, work: str, fresh: bool = False) -> Claim | None:
        """Take `work` when no other node holds a live lease on it; None when one does. `fresh`: the work is most
        likely claimed for the first time (a new message's send, a take a listing just found), so its first claim is
        tried first, in two statements instead of four; a guess that was wrong costs the other way's two more.

        Never waits for another node's transaction (on PostgreSQL): only a row free to take (held by none, by this
        node, or past its lease) is locked, one that another node has locked is passed by, and a first claim is
        inserted under a try-lock on the work's name. A node that waited for another's row while its own group
        transaction held rows the other one waited for would close a circle of waits: a deadlock. (A first claim
        tried on a row that exists waits at most for a step that is changing that row, which itself waits for none.)"""
        now = self._now()
        expires = now + self.lease_seconds
        with self.journal.transaction():
            if fresh:
                if not self._first_claim(work):
                    return None  # another node is taking it now
                if self.journal.execute(
                    "INSERT INTO claims (work, node, token, expires_at) VALUES (?, ?, 1, ?) ON CONFLICT DO NOTHING",
                    (work, self.node, expires),
                ) == 1:
                    return Claim(work, self.node, 1, expires)
            rows = self.journal.query(
                "SELECT token FROM claims WHERE work = ? AND (node IS NULL OR node = ? OR expires_at <= ?)"  # noqa: S608
                f"{row_lock(self.journal.engine, skip_locked=True)}",
                (work, self.node, now))
            if rows:
                [(token,)] = rows
                self.journal.execute(
                    "UPDATE claims SET node = ?, token = ?, expires_at = ? WHERE work = ? AND token = ?",
                    (self.node, token + 1, expires, work, token),
                )
                return Claim(work, self.node, token + 1, expires)
            if fresh or self.journal.query("SELECT 1 FROM claims WHERE work = ?", (work,)) \
                    or not self._first_claim(work):
                return None  # another node holds it, or is taking it now
            # Two nodes inserting at once (on SQLite, one after the other): the unique key lets one in.
            added = self.journal.execute(
                "INSERT INTO claims (work, node, token, expires_at) VALUES (?, ?, 1, ?) ON CONFLICT DO NOTHING",
                (work, self.node, expires),
            )
            return Claim(work, self.node, 1, expires) if added == 1 else None

    def _first_claim(self, work: str) -> bool:
        """Inside the claim's step: whether this node may insert the first claim on `work` (PostgreSQL: no other
        node's transaction is inserting it, whose insert this one's would wait for); SQLite's one writer may."""
        if not self.journal.engine.locks_rows:
            return True
        key = int.from_bytes(hashlib.blake2b(work.encode(), digest_size=4).digest(), "big", signed=True)
        [(granted,)] = self.journal.query("SELECT pg_try_advisory_xact_lock(CAST(? AS integer), CAST(? AS integer))",
                                          (_FIRST_CLAIM_LOCKS, key))
        return bool(granted)

    def claim_due_sends(self, phases: tuple[Phase, ...], due_before: float, limit: int) -> list[Claim]:
        """Claim up to `limit` due messages in `phases` that no node holds (this one included), oldest due first."""
        if limit <= 0:
            return []
        now = self._now()
        marks = ", ".join("?" for _ in phases)
        with self.journal.transaction():
            rows = self.journal.query(
                f"SELECT id FROM messages WHERE phase IN ({marks}) "  # noqa: S608 - placeholders only
                "AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
                "AND NOT EXISTS (SELECT 1 FROM claims WHERE claims.work = 'send:' || messages.id "
                "AND claims.node IS NOT NULL AND claims.expires_at > ?) "
                f"ORDER BY next_attempt_at NULLS FIRST, id LIMIT ?{row_lock(self.journal.engine, skip_locked=True)}",
                (*[phase.value for phase in phases], due_before, now, limit),
            )
            claimed = [self.claim(send_work(row)) for (row,) in rows]
        return [claim for claim in claimed if claim is not None]

    def renew(self, claim: Claim) -> Claim:
        """A longer lease for a claim still held; raises FencedOut when it was taken over."""
        expires = self._now() + self.lease_seconds
        with self.fenced(claim):
            self.journal.execute("UPDATE claims SET expires_at = ? WHERE work = ? AND token = ?",
                                 (expires, claim.work, claim.token))
        return Claim(claim.work, claim.node, claim.token, expires)

    def release(self, claim: Claim) -> None:
        """Let the work go (done, or given up): any node may claim it now. The token stays, so it only grows."""
        with self.fenced(claim):
            self.journal.execute("UPDATE claims SET node = NULL, expires_at = 0 WHERE work = ? AND token = ?",
                                 (claim.work, claim.token))

    @contextlib.contextmanager
    def fenced(self, claim: Claim) -> Iterator[None]:
        """A journal step about `claim`'s work, made only while its token is the current one: else FencedOut,
        with one log line, and nothing of the step is written."""
        with self.journal.transaction():
            self.check(claim)
            yield

    def check(self, claim: Claim) -> None:
        """Inside a step: raise FencedOut (one log line) unless `claim`'s token is the current one; on PostgreSQL
        the claim's row stays locked until the step commits, so no takeover passes between check and commit."""
        unless_locked = row_lock(self.journal.engine, skip_locked=True)
        rows = self.journal.query(f"SELECT node, token FROM claims WHERE work = ?{unless_locked}", (claim.work,))  # noqa: S608
        if not rows and self.journal.engine.locks_rows:
            # Locked by another node: one takes a claim's row only when its lease has ended, so it is taking this
            # one over (never waited for: see claim()).
            rows = self.journal.query("SELECT node, token FROM claims WHERE work = ?", (claim.work,))
            rows = [(rows[0][0] if rows and rows[0][0] != claim.node else None, None)]
        current = rows[0] if rows else (None, None)
        if current != (claim.node, claim.token):
            holder, token = current
            if (claim.work, claim.token) in self._refused:  # said once already: one line per claim taken over
                raise FencedOut(f"the claim on {claim.work} (token {claim.token}) is no longer node {claim.node}'s")
            self._refused.add((claim.work, claim.token))
            log.warning(
                "node %s: its claim on %s (token %s) was taken over by %s (token %s); its late write is refused",
                claim.node, claim.work, claim.token, holder or "another node, which has let it go since", token,
            )
            raise FencedOut(f"the claim on {claim.work} (token {claim.token}) is no longer node {claim.node}'s")

    def let_go_all(self, claims: list[Claim]) -> None:
        """Release each of `claims` that is still this node's, in one statement (quietly: one taken over meanwhile
        stays the taker's; a status round's claims, one step each, were a step per message)."""
        if not claims:
            return
        unless_locked = row_lock(self.journal.engine, skip_locked=True)
        owned = ", ".join("(?, ?, ?)" for _ in claims)
        self.journal.execute(
            "UPDATE claims SET node = NULL, expires_at = 0 WHERE work IN (SELECT work FROM claims WHERE "  # noqa: S608
            f"(work, token, node) IN (VALUES {owned}){unless_locked})",
            [value for claim in claims for value in (claim.work, claim.token, claim.node)])

    def forget(self, claim: Claim) -> None:
        """Inside a step fenced by `claim`: the work is done for good (a transfer taken, a status sent); its claim's
        row goes (a later claim on the same work starts again, and a stale holder finds no row: refused)."""
        self.journal.execute("DELETE FROM claims WHERE work = ? AND token = ?", (claim.work, claim.token))

    def _own(self, claim: Claim) -> str:
        """The claim's row while it is still this node's, unless another node has it locked (taking it over)."""
        unless_locked = row_lock(self.journal.engine, skip_locked=True)
        return f"SELECT work FROM claims WHERE work = ? AND token = ? AND node = ?{unless_locked}"  # noqa: S608

    def extend(self, claims: list[Claim]) -> list[Claim]:
        """Longer leases for `claims`, in one step; the ones taken over meanwhile are left out (quietly: their
        holder's next write about the work says so, in one line)."""
        expires = self._now() + self.lease_seconds
        kept = []
        with self.journal.transaction():
            for claim in claims:
                if self.journal.execute(f"UPDATE claims SET expires_at = ? WHERE work IN ({self._own(claim)})",  # noqa: S608
                                        (expires, claim.work, claim.token, claim.node)) == 1:
                    kept.append(Claim(claim.work, claim.node, claim.token, expires))
                elif self._still_own(claim):
                    kept.append(claim)  # locked by a step of this node's right now: renewed at the next round
        return kept

    def _still_own(self, claim: Claim) -> bool:
        """Whether `claim`'s row still names this node and token (read without waiting for a lock on it)."""
        rows = self.journal.query("SELECT node, token FROM claims WHERE work = ?", (claim.work,))
        return bool(rows) and tuple(rows[0]) == (claim.node, claim.token)


class HeldClaims:
    """The claims this node holds now, their leases kept up by `renew()` (a job of the daemon's, every third of a
    lease), so work that takes longer than a lease stays this node's while it lives."""

    def __init__(self, claims: Claims) -> None:
        self.claims = claims
        self._held: dict[str, Claim] = {}
        self._leases: dict[str, int] = {}  # threads of this node inside lease(work)
        self._asking: dict[str, threading.Lock] = {}  # per work: one thread of this node asks for its lease at a time
        self._lock = threading.Lock()

    def take(self, work: str, fresh: bool = False) -> Claim | None:
        """Claim `work` (`fresh`: see Claims.claim); None when another node holds it, or when the database gave this
        try up (a deadlock with another node's step, a lock not granted in time): the work is tried again at its next
        turn."""
        try:
            claim = self.claims.claim(work, fresh)
        except sqlite3.OperationalError as exc:
            if not gave_way(exc):
                raise
            log.debug("claiming %s gave way to another node (%s); tried again at its next turn", work, exc)
            return None
        if claim is not None:
            with self._lock:
                self._held[work] = claim
        return claim

    def let_go(self, claim: Claim) -> None:
        """Release `claim` if this node still holds it. One it no longer holds (done for good: forgotten; or taken
        over, and so dropped by renew()) has nothing to release: no step is spent on it."""
        self.let_go_all([claim])

    def let_go_all(self, claims: list[Claim]) -> None:
        """let_go() for many claims, in one step (their latest leases: renewed since or not, the same claims)."""
        with self._lock:
            still = [self._held.pop(claim.work) for claim in claims
                     if claim.work in self._held and self._held[claim.work].token == claim.token]
        self.claims.let_go_all(still)

    def current(self, claim: Claim) -> Claim:
        """`claim` as renewed since (its latest lease)."""
        with self._lock:
            return self._held.get(claim.work, claim)

    def forget(self, claim: Claim) -> None:
        """Inside a step fenced by `claim`: the work is done for good (Claims.forget)."""
        self.claims.forget(claim)
        with self._lock:
            current = self._held.get(claim.work)
            if current is not None and current.token == claim.token:  # renewed since, or not: the same claim
                del self._held[claim.work]

    def still_held(self, work: str) -> bool:
        """Inside a step: whether this node holds `work` now (its claim's token checked; on PostgreSQL its row stays
        locked until the step commits). One that was taken over says so in one line."""
        with self._lock:
            claim = self._held.get(work)
        if claim is None:
            return False
        try:
            self.claims.check(claim)
        except FencedOut:
            return False
        return True

    def renew(self) -> None:
        with self._lock:
            held = list(self._held.values())
        try:
            kept = {claim.work: claim for claim in self.claims.extend(held)}
        except (sqlite3.OperationalError, JournalError) as exc:
            if not gave_way(exc):
                raise
            # The leases run for three rounds of this job: one round given up to another node's step loses none.
            log.warning("node %s: renewing its %d leases gave way to another node's step (%s); tried again next "
                        "round", self.claims.node, len(held), exc)
            return
        with self._lock:
            for claim in held:
                if self._held.get(claim.work) == claim:
                    if claim.work in kept:
                        self._held[claim.work] = kept[claim.work]
                    else:
                        del self._held[claim.work]

    @contextlib.contextmanager
    def lease(self, work: str) -> Iterator[bool]:
        """Hold `work` for the block when no other node holds it (True), else do nothing (False); let go after. Threads
        of this node share a lease one of them holds (a new claim would fence the holder's writes out)."""
        with self._lock:
            asking = self._asking.setdefault(work, threading.Lock())
        with asking:  # one thread of this node asks at a time: a second one joins the lease the first one got
            with self._lock:
                shared = self._leases.get(work, 0) > 0
                if shared:
                    self._leases[work] += 1
            claim = None if shared else self.take(work)
            if claim is not None:
                with self._lock:
                    self._leases[work] = self._leases.get(work, 0) + 1
        if shared:
            try:
                yield True
            finally:
                self._leave_lease(work)
            return
        try:
            yield claim is not None
        finally:
            if claim is not None:
                self._leave_lease(work)

    def _leave_lease(self, work: str) -> None:
        """One thread leaves the lease on `work`; the last one out lets it go."""
        with self._lock:
            self._leases[work] -= 1
            last = self._leases[work] == 0
            if last:
                del self._leases[work]
            current = self._held.get(work)
        if last and current is not None:
            with contextlib.suppress(sqlite3.Error, JournalError):
                self.let_go(current)

    @contextlib.contextmanager
    def fencing(self, claim: Claim | None) -> Iterator[None]:
        """Every journal step this thread makes inside is about `claim`'s work: each checks its token first."""
        if claim is None:
            yield
            return
        work = claim.work
        with self.claims.journal.fenced_by(lambda: self.claims.check(self._held.get(work, claim))):
            yield


def gave_way(exc: BaseException | None) -> bool:
    """Whether the database gave a transaction up for another's sake (a deadlock, a lock not granted in time)."""
    while exc is not None:
        if isinstance(exc, JournalUnavailable):
            return not exc.out_of_reach
        exc = exc.__cause__ or exc.__context__
    return False
