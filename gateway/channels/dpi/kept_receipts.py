"""Where DPI keeps the receipts it has taken from Corner 2 until their letters are polled.

Corner 2 never offers a receipt again once it is marked read, so a receipt is written down before it is marked:
in the journal (its `channel_receipts` table) when the daemon gives the channel one, so a crash between the mark
and the receipt's application loses nothing; in memory otherwise (the command line's probes, the tests of the
rules). A receipt handed to the status poller stays until its letter is asked about again: the rounds of a status
poll do not overlap, so by then the earlier round's statuses are in the journal. After a restart every kept
receipt is handed again (a status the journal already holds is not added twice).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from gateway.channels.dpi.receipts import Receipt

CHANNEL = "DPI"


class Durable(Protocol):
    """The journal's statements, as the daemon hands it to a channel (gateway.journal's Journal)."""

    def transaction(self) -> Any: ...

    def execute(self, sql: str, params: tuple = ()) -> int: ...

    def query(self, sql: str, params: tuple = ()) -> list[tuple]: ...


def _key(receipt: Receipt) -> str:
    return f"{receipt.type}/{receipt.timestamp.isoformat()}/{receipt.provider}"


def _body(receipt: Receipt) -> str:
    fields = {**receipt.__dict__, "timestamp": receipt.timestamp.isoformat()}
    return json.dumps(fields, ensure_ascii=False, sort_keys=True)


def _receipt(body: str) -> Receipt:
    fields = json.loads(body)
    return Receipt(**{**fields, "timestamp": datetime.fromisoformat(fields["timestamp"])})


class KeptReceipts(Protocol):
    def keep(self, receipts: Sequence[Receipt], now: float) -> None: ...

    def take(self, message_ids: Iterable[str]) -> list[Receipt]: ...

    def expire(self, before: float) -> int: ...


class MemoryReceipts:
    """Receipts in memory: lost with the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[str, list[tuple[float, Receipt]]] = {}

    def keep(self, receipts: Sequence[Receipt], now: float) -> None:
        with self._lock:
            for receipt in receipts:
                self._kept.setdefault(receipt.message_id, []).append((now, receipt))

    def take(self, message_ids: Iterable[str]) -> list[Receipt]:
        with self._lock:
            return [receipt for message_id in message_ids for _, receipt in self._kept.pop(message_id, [])]

    def expire(self, before: float) -> int:
        with self._lock:
            old = [m for m, kept in self._kept.items() if kept[0][0] < before]
            return sum(len(self._kept.pop(message_id)) for message_id in old)


class JournalReceipts:
    """Receipts in the journal's `channel_receipts`, written (committed) before Corner 2 is told they are read."""

    def __init__(self, journal: Durable, channel: str = CHANNEL) -> None:
        self.journal = journal
        self.channel = channel
        # A new process: whatever an earlier one handed may not have been applied before it stopped.
        self.journal.execute("UPDATE channel_receipts SET handed = 0 WHERE channel = ? AND handed = 1", (channel,))

    def keep(self, receipts: Sequence[Receipt], now: float) -> None:
        if not receipts:
            return
        with self.journal.transaction():
            for receipt in receipts:
                self.journal.execute(
                    "INSERT INTO channel_receipts (channel, message_id, receipt_key, body, taken_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (self.channel, receipt.message_id, _key(receipt), _body(receipt), now),
                )

    def take(self, message_ids: Iterable[str]) -> list[Receipt]:
        asked = list(dict.fromkeys(message_ids))
        taken: list[Receipt] = []
        for start in range(0, len(asked), 200):
            chunk = asked[start:start + 200]
            rows = self.journal.query(  # placeholders only: the values are bound
                "SELECT message_id, receipt_key, body, handed FROM channel_receipts WHERE channel = ? AND "  # noqa: S608
                f"message_id IN ({', '.join('?' * len(chunk))})", (self.channel, *chunk))
            if not rows:
                continue  # most letters of a round have none: no write at all
            with self.journal.transaction():
                for message_id, key, _, handed in rows:
                    # Handed in an earlier round, so applied by now: the round that handed it has ended.
                    self.journal.execute("DELETE FROM channel_receipts WHERE channel = ? AND message_id = ? AND "
                                         "receipt_key = ?" if handed else
                                         "UPDATE channel_receipts SET handed = 1 WHERE channel = ? AND "
                                         "message_id = ? AND receipt_key = ?", (self.channel, message_id, key))
            taken += [_receipt(body) for _, _, body, handed in rows if not handed]
        return sorted(taken, key=lambda receipt: receipt.timestamp)  # in the order they happened

    def expire(self, before: float) -> int:
        return self.journal.execute("DELETE FROM channel_receipts WHERE channel = ? AND taken_at < ?",
                                    (self.channel, before))


__all__ = ["CHANNEL", "Durable", "JournalReceipts", "KeptReceipts", "MemoryReceipts"]
