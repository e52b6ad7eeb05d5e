"""Answers about our own messages: an incoming business message that speaks of a message we sent (a status,
a receipt) adds a status to it instead of going to the inbox.

Which business messages are answers is a registry (`AnswerReaders`), not a list in the receiver: each kind
of answer has a reader that says which of our messages it is about and what status it brings; the
eFormidling ones (`status`, `arkivmelding_kvittering`) are there by default, and a channel whose business
messages bring answers of their own gives the receiver a registry with its readers added.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.contract.statuses import Status
from gateway.formats.business import ArkivmeldingKvittering
from gateway.formats.business import Status as StatusMessage
from gateway.formats.sbd import StandardBusinessDocument
from gateway.journal.completion import record_status
from gateway.journal.records import MessageRecord
from gateway.journal.store import Journal
from gateway.logsetup import event_fields

log = logging.getLogger(__name__)

RECEIPT_OK = ("OK", "WARNING")


@dataclass(frozen=True)
class Answer:
    """What an incoming business message says of one of our messages."""

    about: str  # the messageId of ours it answers
    status: Status
    description: str  # the status event's words
    what: str  # what it is, for the log: "status MOTTATT", "arkivmelding_kvittering ERROR"
    said: str  # what it said, for the log line once applied: "MOTTATT", "receipt OK"
    unknown: str  # what it is, for the log line when `about` is no message of ours
    errors: tuple[str, ...] = ()  # the problems it names, kept in the row's errors
    logged_status: bool = True  # the log line's event carries the status


AnswerReader = Callable[[StandardBusinessDocument, Any], Answer]


def _status_answer(sbd: StandardBusinessDocument, business: StatusMessage) -> Answer:
    status = Status.MOTTATT if business.status == "MOTTATT" else Status.LEVERT
    return Answer(
        about=sbd.message_id, status=status, description=f"{status.value.lower()} by {sbd.sender}",
        what=f"status {business.status}", said=status.value, unknown=f"status {business.status}",
    )


def _receipt_answer(sbd: StandardBusinessDocument, receipt: ArkivmeldingKvittering) -> Answer:
    related = (receipt.related_to_message_id or "").lower()
    common = {"about": related, "what": f"arkivmelding_kvittering {receipt.receipt_type}",
              "said": f"receipt {receipt.receipt_type}", "unknown": f"receipt {sbd.message_id}", "logged_status": False}
    if receipt.receipt_type in RECEIPT_OK:
        return Answer(status=Status.LEST,
                      description=f"arkivmelding_kvittering {receipt.receipt_type} from {sbd.sender}", **common)
    problems = (f"the receiver answered {receipt.receipt_type}", *(m.text for m in receipt.messages if m.text))
    return Answer(status=Status.FEIL, description="; ".join(problems), errors=problems, **common)


class AnswerReaders:
    """The business messages that are answers about our messages, by their class, each with its reader."""

    def __init__(self, readers: Mapping[type, AnswerReader] | None = None) -> None:
        self.readers: dict[type, AnswerReader] = dict(
            readers if readers is not None else {StatusMessage: _status_answer, ArkivmeldingKvittering: _receipt_answer}
        )

    def with_readers(self, readers: Mapping[type, AnswerReader]) -> AnswerReaders:
        """These readers and `readers` (a channel's own answers) beside them."""
        return AnswerReaders({**self.readers, **readers})

    def read(self, sbd: StandardBusinessDocument) -> Answer | None:
        """The answer `sbd` carries, or None when it is a message for the archive system."""
        business = sbd.business_message
        for kind in type(business).__mro__:
            reader = self.readers.get(kind)
            if reader is not None:
                return reader(sbd, business)
        return None


def apply_answer(journal: Journal, channel_name: str, sbd: StandardBusinessDocument, answer: Answer) -> None:
    """Add the answer's status to the message of ours it is about, when that message went to its sender."""
    record = journal.find_live("out", answer.about)
    if record is None:
        log.info("%s for unknown message %s ignored", answer.unknown, answer.about)
        return
    if not from_its_receiver(record, sbd, answer.what):
        return
    # The event and what it finishes, in one step, stamped with the time the receiver sent it.
    if not record_status(journal, record.row, answer.status, sbd.created, answer.description,
                         errors=list(answer.errors) or None):
        # The same answer again (its transfer offered again after a crash, or taken by two nodes): noted once, and
        # said to be a repeat, not a second answer.
        log.info("message %s: %s from %s came again; it was noted already", answer.about, answer.said, sbd.sender)
        return
    log.info("message %s: %s from %s", answer.about, answer.said, sbd.sender,
             extra=event_fields(answer.about, record.drop_name, channel_name,
                                answer.status.value if answer.logged_status else None))


def from_its_receiver(record: MessageRecord, sbd: StandardBusinessDocument, what: str) -> bool:
    """An answer counts only from the organisation our message went to."""
    if record.receiver == sbd.sender:
        return True
    log.warning(
        "%s for message %s came from %s, but that message went to %s: a forgery or a mistake; dropped, "
        "not applied", what, record.message_id, sbd.sender, record.receiver,
    )
    return False


__all__ = ["Answer", "AnswerReader", "AnswerReaders", "apply_answer"]
