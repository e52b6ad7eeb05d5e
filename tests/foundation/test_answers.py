"""Which incoming business messages are answers about our own messages is a registry, not a list in the
receiver: the eFormidling status and kvittering by default, a channel's own kinds beside them."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from gateway.contract.statuses import Status
from gateway.formats.business import Arkivmelding, ArkivmeldingKvittering, Avtalt, KvitteringMessage
from gateway.formats.business import Status as StatusMessage
from gateway.formats.sbd import ARKIVMELDING_PROCESS, RESPONSE_PROCESS, StandardBusinessDocument, new_sbd
from gateway.inbound.answers import Answer, AnswerReaders, apply_answer
from gateway.journal.phases import Phase

from .test_status_rules import _sent_message

THEM, US = "910075918", "991825827"


def _sbd(business, message_id: str | None = None, sender: str = THEM) -> StandardBusinessDocument:
    process = ARKIVMELDING_PROCESS if isinstance(business, Arkivmelding | Avtalt) else RESPONSE_PROCESS
    return new_sbd(sender=sender, receiver=US, business_message=business, process=process,
                   created=datetime.now(UTC), message_id=message_id or str(uuid.uuid4()))


def test_a_status_and_a_kvittering_are_answers_and_an_arkivmelding_is_not():
    readers = AnswerReaders()
    ours = str(uuid.uuid4())
    levert = readers.read(_sbd(StatusMessage(status="LEVERT"), message_id=ours))
    assert levert is not None and (levert.about, levert.status) == (ours, Status.LEVERT)
    ok = readers.read(_sbd(ArkivmeldingKvittering(receipt_type="OK", related_to_message_id=ours.upper())))
    assert ok is not None and (ok.about, ok.status, ok.errors) == (ours, Status.LEST, ())
    error = readers.read(_sbd(ArkivmeldingKvittering(
        receipt_type="ERROR", related_to_message_id=ours, messages=(KvitteringMessage(text="unknown case"),))))
    assert error is not None and error.status == Status.FEIL
    assert error.errors == ("the receiver answered ERROR", "unknown case")
    assert readers.read(_sbd(Arkivmelding(sikkerhetsnivaa=3))) is None


def test_a_channel_adds_its_own_kind_of_answer_without_the_receiver_listing_it():
    def agreed(sbd: StandardBusinessDocument, business: Avtalt) -> Answer:
        return Answer(about=business.identifier or "", status=Status.LEVERT, description="agreed",
                      what="avtalt", said="LEVERT", unknown="avtalt")

    sbd = _sbd(Avtalt(identifier="our-id"))
    assert AnswerReaders().read(sbd) is None
    answer = AnswerReaders().with_readers({Avtalt: agreed}).read(sbd)
    assert answer is not None and answer.about == "our-id"
    assert AnswerReaders({}).read(_sbd(StatusMessage(status="LEVERT"))) is None, "a registry without them"


def test_an_answer_counts_only_from_the_receiver_of_our_message(harness, caplog):
    h = harness(quiet_period_seconds=0)
    record = _sent_message(h, expects_receipt=True)
    readers = AnswerReaders()
    forged = _sbd(StatusMessage(status="LEVERT"), message_id=record.message_id, sender="974760673")
    with caplog.at_level(logging.INFO):
        apply_answer(h.journal, "DPV", forged, readers.read(forged))
    assert h.journal.get(record.row).phase == Phase.SENT
    assert "a forgery or a mistake" in caplog.text

    real = _sbd(StatusMessage(status="LEVERT"), message_id=record.message_id, sender=record.receiver)
    apply_answer(h.journal, "DPV", real, readers.read(real))
    assert h.journal.get(record.row).phase == Phase.DELIVERED  # a receipt is still expected
    receipt = _sbd(ArkivmeldingKvittering(receipt_type="OK", related_to_message_id=record.message_id),
                   sender=record.receiver)
    apply_answer(h.journal, "DPV", receipt, readers.read(receipt))
    assert h.journal.get(record.row).phase == Phase.DONE


def test_the_same_answer_twice_is_one_status_and_its_repeat_is_said_as_one(harness, caplog):
    """A transfer offered again (a crash before it was acknowledged, two nodes that both took it): its answer counts
    once, and the log tells the repeat from a second answer."""
    h = harness(quiet_period_seconds=0)
    record = _sent_message(h, expects_receipt=False)
    levert = _sbd(StatusMessage(status="LEVERT"), message_id=record.message_id, sender=record.receiver)
    with caplog.at_level(logging.INFO, logger="gateway.inbound.answers"):
        for _ in range(2):
            apply_answer(h.journal, "DPO", levert, AnswerReaders().read(levert))
    assert [event.status for event in h.journal.events(record.row)].count(Status.LEVERT) == 1
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    first = f"message {record.message_id}: LEVERT from {record.receiver}"
    assert said == [first, f"{first} came again; it was noted already"], said
