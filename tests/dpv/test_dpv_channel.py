"""DpvChannel's own rules: the size limit before sending, the notification it asks Altinn for (from
the message's dpv block, from config, the sensitive text for taushetsbelagt), and how Altinn's
correspondence states read as our statuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.channels.base import OutgoingMessage
from gateway.channels.dpv.business import DpvSettings
from gateway.channels.dpv.channel import DPV_MAX_BYTES, DpvChannel, NotificationDefaults, _updates_from
from gateway.channels.dpv.models import CorrespondenceDetails, StatusEvent
from gateway.clock import FakeClock
from gateway.formats.asice import AsicDocument
from gateway.formats.business import Arkivmelding
from gateway.formats.sbd import new_sbd
from gateway.routing.registry import ServiceRecord

SENSITIVE = "urn:no:difi:profile:arkivmelding:taushetsbelagt:ver1.0"
ADMIN = "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0"
SERVICE = ServiceRecord("DPV", ADMIN, (), None, "http://altinn", "4255", "10", 3, "eformidling-dpv-administrasjon")


def _message(documents: list[AsicDocument], process: str = ADMIN, dpv: DpvSettings | None = None) -> OutgoingMessage:
    business = Arkivmelding(parts={"dpv": dpv} if dpv else {})
    sbd = new_sbd(sender="991825827", receiver="974760673", business_message=business, process=process,
                  created=datetime.now(UTC))
    return OutgoingMessage(sbd, documents, title="Vedtak", titles={"vedtak.pdf": "Vedtaket"})


def _channel(clock: FakeClock | None = None) -> DpvChannel:
    return DpvChannel(None, NotificationDefaults(days_to_reply=7), clock or FakeClock())  # type: ignore[arg-type]


def test_documents_over_250_mb_are_refused_before_sending(tmp_path):
    big = tmp_path / "stort.pdf"
    with open(big, "wb") as handle:  # sparse: no disk used
        handle.truncate(DPV_MAX_BYTES + 1)
    problems = _channel().validate(_message([AsicDocument("stort.pdf", big, "application/pdf")]), SERVICE)
    assert any(f"more than the {DPV_MAX_BYTES} DPV (the Altinn mailbox) carries" in p for p in problems)
    assert _channel().validate(_message([AsicDocument("lite.pdf", b"%PDF", "application/pdf")]), SERVICE) == []


def test_a_record_without_a_resource_and_a_message_without_documents_are_refused():
    only_arkivmelding = [AsicDocument("arkivmelding.xml", b"<a/>", "application/xml")]
    problems = _channel().validate(_message(only_arkivmelding), None)
    assert any("at least one document" in p for p in problems)
    assert any("names no Altinn resource" in p for p in problems)


def test_the_correspondence_carries_the_documents_with_titles_and_the_dpv_blocks_notification():
    clock = FakeClock()
    documents = [AsicDocument("arkivmelding.xml", b"<a/>", "application/xml"),
                 AsicDocument("vedtak.pdf", b"%PDF vedtak", "application/pdf"),
                 AsicDocument("kart.pdf", b"%PDF kart", "application/pdf")]
    dpv = DpvSettings(varsel_tekst="Sjå Altinn", varsel_transport_type="SMS", dager_til_svarfrist=14)
    package = _channel(clock).prepare(_message(documents, dpv=dpv), SERVICE, None)  # type: ignore[arg-type]
    correspondence = package.content
    assert [(a.file_name, a.display_name) for a in correspondence.attachments] == [
        ("vedtak.pdf", "Vedtaket"), ("kart.pdf", "kart.pdf")], "the arkivmelding stays behind; main first"
    assert correspondence.notification.channel == "Sms"
    assert correspondence.notification.sms_body == "Sjå Altinn"
    assert correspondence.due_date == clock.now() + timedelta(days=14)
    assert correspondence.resource_id == "eformidling-dpv-administrasjon" and not correspondence.confidential
    assert _channel(clock).describe(package) == "notified by SMS"


def test_config_defaults_fill_in_and_taushetsbelagt_gets_the_sensitive_text():
    documents = [AsicDocument("vedtak.pdf", b"%PDF", "application/pdf")]
    plain = _channel().prepare(_message(documents), SERVICE, None).content  # type: ignore[arg-type]
    assert plain.notification.channel == "EmailAndSms"
    assert plain.notification.email_body == NotificationDefaults().text
    sensitive = _channel().prepare(
        _message(documents, SENSITIVE, DpvSettings(varsel_tekst="Vedtak om barnevern")), SERVICE, None,  # type: ignore[arg-type]
    ).content
    assert sensitive.confidential
    assert sensitive.notification.email_body == NotificationDefaults().sensitive_text, "never the content's words"
    assert "barnevern" not in (sensitive.notification.sms_body or "") + sensitive.summary


def _details(status: str, read: datetime | None = None, text: str | None = None) -> CorrespondenceDetails:
    at = datetime(2026, 12, 1, 12, tzinfo=UTC)
    history = (StatusEvent("Published", None, at),)
    return CorrespondenceDetails("c-1", status, text, at, "m", "974760673", at, at, read, history, (), {})


def test_altinn_states_read_as_our_statuses():
    assert [u.status for u in _updates_from("m", _details("Initialized"))] == []
    assert [u.status for u in _updates_from("m", _details("Published"))] == ["LEVERT"]
    read_at = datetime(2026, 12, 1, 13, tzinfo=UTC)
    updates = _updates_from("m", _details("Read", read=read_at))
    assert [(u.status, u.stamped_at) for u in updates] == [
        ("LEVERT", datetime(2026, 12, 1, 12, tzinfo=UTC)), ("LEST", read_at)]
    [failed] = _updates_from("m", _details("Failed", text="the recipient is reserved"))
    assert failed.status == "FEIL" and "the recipient is reserved" in failed.description
