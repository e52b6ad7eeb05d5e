"""What the sandbox's Corner 2 remembers: the messages it took with their statuses, and the receipts waiting for
their senders. In memory, one lock; the documents themselves live on disk with the mailbox (corner2_mailbox.py).

Statuses are Corner 2's own (reference c2-openapi_spec.yaml): OPPRETTET when it takes a message, SENDT once it
has handed it on to the receiver's access point (after `Corner2Options.forward_delay_s`), FEILET when it could
not. Receipts become visible at their `available_at` (the mailbox issues an open receipt some time after the
delivery receipt), so a poll only ever sees what a real provider would have sent by then. A message Corner 2 has
let go (`forget`, or older than `keep_s`) answers 410 Gone; one it never had, 404.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Corner2Options:
    """How the sandbox's Corner 2 and providers behave in time (tests make these short)."""

    forward_delay_s: float = 0.5  # OPPRETTET -> SENDT
    open_delay_s: float = 15.0  # leveringskvittering -> aapningskvittering (when the letter asks for one)
    print_delay_s: float = 1.0  # print: mottakskvittering -> leveringskvittering
    return_delay_s: float = 3.0  # print to a person who has moved: -> returpostkvittering
    keep_s: float = 7 * 24 * 3600.0  # how long a message's statuses are kept before it answers 410
    status_delay_s: float = 0.0  # how long a status poll takes to answer (Corner2Store.status_delay_s at run time)


@dataclass
class CornerStatus:
    status: str  # OPPRETTET | SENDT | FEILET
    at: datetime
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"status": self.status, "timestamp": self.at.isoformat(timespec="milliseconds")}
        if self.description:
            answer["beskrivelse"] = self.description
        return answer


@dataclass
class OutMessage:
    message_id: str
    conversation_id: str
    owner: str  # the organisation whose token sent it (it reads the statuses and receipts)
    sender: str  # the SBD's sender
    receiver: str  # the provider the SBD names
    message_type: str
    kanal: str | None
    avsenderidentifikator: str | None
    accepted_at: datetime
    statuses: list[CornerStatus] = field(default_factory=list)

    def visible_statuses(self, now: datetime) -> list[CornerStatus]:
        return [status for status in self.statuses if status.at <= now]


@dataclass
class WaitingReceipt:
    receipt_id: str  # the store's own key (on the wire a receipt carries its letter's messageId)
    owner: str
    for_message: str
    receipt_type: str
    forretningsmelding: str  # the signed JWT
    available_at: datetime
    kanal: str | None
    avsenderidentifikator: str | None
    read: bool = False


class Gone(Exception):
    """Corner 2 had the message once and has let it go."""


class Corner2Store:
    def __init__(self, options: Corner2Options) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._messages: dict[str, OutMessage] = {}
        self._forgotten: set[str] = set()
        self._claimed: set[str] = set()
        self._receipts: dict[str, WaitingReceipt] = {}
        self.accepted = Counter[str]()  # messageId -> times a send of it was taken
        self.refused: list[tuple[str | None, int, str]] = []  # (messageId when known, status, why)
        self.status_requests = Counter[str]()  # messageId -> GET .../statuses answered
        self.in_flight_status_requests = 0
        self.status_delay_s = options.status_delay_s  # tests change it while the server runs
        self.most_status_requests_at_once = 0

    # ---- sending ---------------------------------------------------------------------------------
    def claim(self, message_id: str) -> bool:
        """Whether `message_id` is new to Corner 2 (and now taken): a second send of the same id is refused."""
        with self._lock:
            if message_id in self._claimed:
                return False
            self._claimed.add(message_id)
            return True

    def release(self, message_id: str) -> None:
        """A claimed message was refused after all: the same id may be sent again."""
        with self._lock:
            self._claimed.discard(message_id)

    def add(self, message: OutMessage, handed_on: bool, failure: str | None = None) -> None:
        """A message taken: OPPRETTET now, then SENDT (or FEILET with `failure`) after the forward delay."""
        later = message.accepted_at + timedelta(seconds=self.options.forward_delay_s)
        message.statuses.append(CornerStatus("OPPRETTET", message.accepted_at))
        message.statuses.append(CornerStatus("SENDT", later) if handed_on
                                else CornerStatus("FEILET", later, failure))
        with self._lock:
            self._messages[message.message_id] = message
            self.accepted[message.message_id] += 1

    def refuse(self, message_id: str | None, status: int, why: str) -> None:
        with self._lock:
            self.refused.append((message_id, status, why))

    # ---- statuses --------------------------------------------------------------------------------
    def statuses(self, message_id: str, owner: str, now: datetime) -> list[CornerStatus] | None:
        """The statuses visible now; None when the message is unknown to `owner`; Gone when let go."""
        with self._lock:
            self._expire(now)
            if message_id in self._forgotten:
                raise Gone(message_id)
            message = self._messages.get(message_id)
            if message is None or message.owner != owner:
                return None
            self.status_requests[message_id] += 1
            return message.visible_statuses(now)

    def status_request_started(self) -> None:
        with self._lock:
            self.in_flight_status_requests += 1
            self.most_status_requests_at_once = max(self.most_status_requests_at_once,
                                                    self.in_flight_status_requests)

    def status_request_ended(self) -> None:
        with self._lock:
            self.in_flight_status_requests -= 1

    def forget(self, message_id: str) -> bool:
        """Let a message go, as a provider does once it has kept it long enough: its statuses answer 410."""
        with self._lock:
            found = self._messages.pop(message_id, None)
            if found is not None:
                self._forgotten.add(message_id)
            return found is not None

    def _expire(self, now: datetime) -> None:
        cutoff = now - timedelta(seconds=self.options.keep_s)
        for message_id in [m.message_id for m in self._messages.values() if m.accepted_at < cutoff]:
            del self._messages[message_id]
            self._forgotten.add(message_id)

    # ---- receipts --------------------------------------------------------------------------------
    def add_receipt(self, receipt: WaitingReceipt) -> None:
        with self._lock:
            self._receipts[receipt.receipt_id] = receipt

    def waiting_receipts(self, owner: str, now: datetime, kanal: str | None, avsenderidentifikator: str | None,
                         page_size: int) -> list[WaitingReceipt]:
        """Unread receipts for `owner` that have come by now, oldest first; a kanal (case-insensitive) and an
        avsenderidentifikator narrow them to the sends that named the same."""
        with self._lock:
            found = [
                receipt for receipt in self._receipts.values()
                if receipt.owner == owner and not receipt.read and receipt.available_at <= now
                and (kanal is None or (receipt.kanal or "").lower() == kanal.lower())
                and (avsenderidentifikator is None or receipt.avsenderidentifikator == avsenderidentifikator)
            ]
        return sorted(found, key=lambda receipt: receipt.available_at)[:page_size]

    def mark_read(self, message_id: str, owner: str, now: datetime) -> bool:
        """Mark the receipts `owner` has been offered under `message_id` (a receipt carries its letter's id) read;
        False when there is none unread. One that comes later (an open receipt) is offered in its time."""
        with self._lock:
            offered = [receipt for receipt in self._receipts.values()
                       if receipt.for_message == message_id and receipt.owner == owner and not receipt.read
                       and receipt.available_at <= now]
            for receipt in offered:
                receipt.read = True
            return bool(offered)

    # ---- inspection ------------------------------------------------------------------------------
    def message(self, message_id: str) -> OutMessage | None:
        with self._lock:
            return self._messages.get(message_id)

    def receipts_for(self, message_id: str) -> list[WaitingReceipt]:
        """Every receipt issued for a message (come or not yet, read or not), in the order they come."""
        with self._lock:
            found = [receipt for receipt in self._receipts.values() if receipt.for_message == message_id]
        return sorted(found, key=lambda receipt: receipt.available_at)

    def describe(self) -> list[dict[str, Any]]:
        # One pass over the receipts: a benchmark's 10,000 letters have some 30,000 of them.
        with self._lock:
            messages = list(self._messages.values())
            receipts = sorted(self._receipts.values(), key=lambda receipt: receipt.available_at)
        by_message: dict[str, list[WaitingReceipt]] = {}
        for receipt in receipts:
            by_message.setdefault(receipt.for_message, []).append(receipt)
        return [{
            "messageId": message.message_id,
            "conversationId": message.conversation_id,
            "sender": message.sender,
            "receiver": message.receiver,
            "type": message.message_type,
            "accepted": self.accepted[message.message_id],
            "statusRequests": self.status_requests[message.message_id],
            "statuses": [status.to_json() for status in message.statuses],
            "receipts": [{"type": receipt.receipt_type, "availableAt": receipt.available_at.isoformat(),
                          "read": receipt.read}
                         for receipt in by_message.get(message.message_id, [])],
        } for message in messages]


__all__ = ["Corner2Options", "Corner2Store", "CornerStatus", "Gone", "OutMessage", "WaitingReceipt"]
