"""Work the nodes share item by item, where several nodes share the journal (PostgreSQL): the transfers a channel's
listing found (takes), the status messages owed to senders (status sends), and the status polls of sent messages.

Each item is claimed by one node with a lease and a fencing token (claims.py), done by it, and let go; every write the
node makes about the item checks the token, so a node that wakes up past its lease cannot act on an item another node
has taken over. The candidates are the items due that no node holds now; two nodes that pick the same candidates at
once pass each other by in claim() (never waiting), so each gets its own. On SQLite (one node) none of this is used.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
from collections.abc import Collection, Iterator, Sequence

from gateway.contract.statuses import Status
from gateway.errors import JournalError
from gateway.journal.claims import Claim, HeldClaims
from gateway.journal.engine import row_lock

# A transfer no listing has seen for this long was taken (by a node that died before it said so) or withdrawn.
STALE_TAKE_SECONDS = 600.0


def take_work(channel: str, reference: str) -> str:
    return f"take:{channel}:{reference}"


def poll_work(row: int) -> str:
    return f"poll:{row}"


def status_send_work(row: int, status: str) -> str:
    return f"status-send:{row}:{status}"


def _unclaimed(work: str) -> str:
    """The SQL condition that no node holds a live claim on `work` (an SQL expression); one `?`: now."""
    return (f"NOT EXISTS (SELECT 1 FROM claims WHERE claims.work = {work} AND claims.node IS NOT NULL "  # noqa: S608
            "AND claims.expires_at > ?)")


_TAKE_UNCLAIMED = _unclaimed("'take:' || inbound_takes.channel || ':' || inbound_takes.reference")
_STATUS_SEND_UNCLAIMED = _unclaimed("'status-send:' || status_sends.message || ':' || status_sends.status")
_POLL_UNCLAIMED = _unclaimed("'poll:' || messages.id")


class ItemClaims:
    """One node's claims on shared items."""

    def __init__(self, held: HeldClaims) -> None:
        self.held = held
        self.journal = held.claims.journal
        self._shuffle = random.Random()

    def _now(self) -> float:
        return self.held.claims.clock.now().timestamp()

    def _claim_each(self, works: Sequence[str], limit: int, made: list[Claim], fresh: bool = False
                    ) -> list[Claim | None]:
        """Claim `works` in order until `limit` are this node's; each one's claim or None (held by another). Each claim
        is added to `made` at once. `fresh`: most of them are claimed for the first time (HeldClaims.take)."""
        claimed: list[Claim | None] = []
        for work in works:
            if len(made) >= limit:
                break
            claim = self.held.take(work, fresh)
            claimed.append(claim)
            if claim is not None:
                made.append(claim)
        return claimed

    @contextlib.contextmanager
    def _claiming(self) -> Iterator[list[Claim]]:
        """A step that claims items: when it fails (the database gone mid-step, its commit lost), the claims it made
        are let go, as far as the database answers; the rest lapse with their lease. Held on, they would be renewed
        for ever by this node, and their items never done by any."""
        made: list[Claim] = []
        try:
            yield made
        except BaseException:
            with contextlib.suppress(sqlite3.Error, JournalError):
                self.held.let_go_all(made)
            raise

    # ---- takes ---------------------------------------------------------------------------------------------------
    def found(self, channel: str, references: Sequence[str]) -> None:
        """The listing saw `references` waiting on `channel`: each is a take for any node (seen again: kept)."""
        if not references:
            return
        now = self._now()
        with self.journal.transaction():
            self.journal._db.executemany(
                "INSERT INTO inbound_takes (channel, reference, listed_at) VALUES (?, ?, ?) "
                "ON CONFLICT (channel, reference) DO NOTHING",
                [(channel, reference, now) for reference in sorted(set(references))],
            )
            # Seen again: not stale (a take done already stays done). A row another node has locked is passed by.
            marks = ", ".join("?" for _ in references)
            lock = row_lock(self.journal.engine, skip_locked=True)
            self.journal.execute(
                f"UPDATE inbound_takes SET listed_at = ? WHERE channel = ? AND reference IN (SELECT reference FROM "  # noqa: S608
                f"inbound_takes WHERE channel = ? AND reference IN ({marks}) AND listed_at < ?{lock})",
                (now, channel, channel, *references, now),
            )

    def forget_stale(self, channel: str) -> int:
        """Takes no listing has seen for STALE_TAKE_SECONDS and no node holds (gone from the channel), and those taken
        that long ago (a transfer the channel offers again after that is taken again), with their claims."""
        now = self._now()
        before = now - STALE_TAKE_SECONDS
        with self.journal.transaction():
            self.journal.execute(
                "DELETE FROM claims WHERE work IN (SELECT 'take:' || channel || ':' || reference FROM inbound_takes "
                "WHERE channel = ? AND (done_at < ? OR done_at IS NULL AND listed_at < ?)) "
                "AND (node IS NULL OR expires_at <= ?)",
                (channel, before, before, now))
            return self.journal.execute(
                "DELETE FROM inbound_takes WHERE channel = ? AND (done_at < ? OR done_at IS NULL AND listed_at < ? "  # noqa: S608
                f"AND {_TAKE_UNCLAIMED})", (channel, before, before, now))

    def takes(self, channel: str, limit: int, tried: Collection[str] = ()) -> list[tuple[str, Claim]]:
        """Claim up to `limit` of the takes waiting on `channel` (those listed first, first), except those `tried`
        already (this turn: one that failed waits for the next, and is not taken again at once)."""
        if limit <= 0:
            return []
        now = self._now()
        not_tried = f"AND reference NOT IN ({', '.join('?' for _ in tried)}) " if tried else ""
        with self._claiming() as made, self.journal.transaction():
            references = [reference for (reference,) in self.journal.query(
                "SELECT reference FROM inbound_takes WHERE channel = ? AND done_at IS NULL AND "  # noqa: S608
                f"{_TAKE_UNCLAIMED} {not_tried}"
                f"ORDER BY listed_at, reference LIMIT ?{row_lock(self.journal.engine, skip_locked=True)}",
                (channel, now, *tried, 2 * limit))]
            claims = self._claim_each([take_work(channel, reference) for reference in references], limit, made,
                                         fresh=True)
        return [(reference, claim) for reference, claim in zip(references, claims, strict=False) if claim is not None]

    def taken(self, channel: str, reference: str, claim: Claim) -> None:
        """The take is done (the transfer confirmed or rejected at the channel), fenced by its claim: no node takes it
        again, though a listing made before it was confirmed still names it. Its claim goes in the same step (a late
        write of a node that held it before finds no claim: refused), so no step is spent releasing it."""
        with self.held.claims.fenced(claim):
            self.journal.execute("UPDATE inbound_takes SET done_at = ? WHERE channel = ? AND reference = ?",
                                 (self._now(), channel, reference))
            self.held.forget(claim)

    # ---- status sends ------------------------------------------------------------------------------------------
    def status_sends(self, limit: int) -> list[tuple[int, str, int, Claim]]:
        """Claim up to `limit` due status messages: (row, status, attempts, claim) each, those due first first."""
        now = self._now()
        with self._claiming() as made, self.journal.transaction():
            due = self.journal.query(
                "SELECT message, status, attempts FROM status_sends WHERE due_at <= ? AND "  # noqa: S608
                f"{_STATUS_SEND_UNCLAIMED} "
                f"ORDER BY due_at, message, status LIMIT ?{row_lock(self.journal.engine, skip_locked=True)}",
                (now, now, 2 * limit))
            claims = self._claim_each([status_send_work(row, status) for row, status, _ in due], limit, made,
                                         fresh=True)
        return [(row, status, attempts, claim)
                for (row, status, attempts), claim in zip(due, claims, strict=False) if claim is not None]

    def status_send_done(self, row: int, status: Status, claim: Claim) -> None:
        """The status is sent or given up: its row and this node's claim on it go in one step. Inside
        HeldClaims.fencing(claim), which checks the claim first (a node that lost it writes nothing)."""
        with self.journal.transaction():
            self.journal.status_send_done(row, status)
            self.held.forget(claim)

    # ---- status polls ------------------------------------------------------------------------------------------
    def polls(self, channel: str, phases: Sequence[str], limit: int) -> dict[int, Claim]:
        """Claim up to `limit` outgoing messages on `channel` in `phases` whose next poll is due (those due longest
        first): row -> claim."""
        if limit <= 0 or not phases:
            return {}
        now = self._now()
        marks = ", ".join("?" for _ in phases)
        with self._claiming() as made, self.journal.transaction():
            rows = [row for (row,) in self.journal.query(
                f"SELECT id FROM messages WHERE channel = ? AND phase IN ({marks}) AND next_poll_at <= ? "  # noqa: S608
                f"AND direction = 'out' AND {_POLL_UNCLAIMED} ORDER BY next_poll_at, id LIMIT ?",
                (channel, *phases, now, now, 2 * limit))]
            # Both nodes read the same due rows in the same order: each tries them in an order of its own, so two
            # rounds at the same moment seldom reach for the same message (a message row is not locked to claim it:
            # the steps that change it would have to give way).
            rows = self._shuffle.sample(rows, len(rows))
            claims = self._claim_each([poll_work(row) for row in rows], limit, made)
        return {row: claim for row, claim in zip(rows, claims, strict=False) if claim is not None}
