"""The shipped sample drops follow the sidecar schema, sidecars survive a write/read round trip, and
status files follow the status schema."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.channels.dpf.options import DpfOptions
from gateway.channels.dpv.options import DpvNotification
from gateway.contract.sidecar import (
    AvtaltContent,
    DropDocument,
    ReceiptInfo,
    Sidecar,
    read_sidecar,
    write_sidecar,
)
from gateway.contract.sidecar import schema as sidecar_schema
from gateway.contract.status import NAMESPACE as STATUS_NS
from gateway.contract.status import StatusEvent, StatusReport, render_status
from gateway.contract.status import schema as status_schema
from gateway.contract.statuses import Status

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_drops"


def _sample_sidecars() -> list[Path]:
    folder_sidecars = sorted(SAMPLES.glob("*/message.xml"))
    flat_sidecars = sorted(p for p in SAMPLES.glob("*/*.xml") if p.name != "message.xml")
    return folder_sidecars + flat_sidecars


SIDECARS = _sample_sidecars()


def test_the_samples_are_there():
    names = {str(p.relative_to(SAMPLES)) for p in SIDECARS}
    assert {
        "brev-til-sandkasse-peer/message.xml",
        "melding-til-altinn-postkasse/message.xml",
        "ugyldig-mottaker/message.xml",
        "flat/melding-flat.xml",
    } <= names


@pytest.mark.parametrize("path", SIDECARS, ids=lambda p: str(p.relative_to(SAMPLES)))
def test_every_sample_sidecar_validates_against_the_schema(path):
    tree = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
    assert sidecar_schema().validate(tree), sidecar_schema().error_log


@pytest.mark.parametrize("path", SIDECARS, ids=lambda p: str(p.relative_to(SAMPLES)))
def test_every_sample_sidecar_round_trips(path):
    sidecar, _problems = read_sidecar(path.read_bytes(), source=path.name)
    assert sidecar is not None
    written = write_sidecar(sidecar)
    assert sidecar_schema().validate(etree.fromstring(written).getroottree()), sidecar_schema().error_log
    again, _problems = read_sidecar(written)
    assert again == sidecar


def test_the_good_samples_have_no_problems_and_the_bad_one_has_two():
    problems = {str(p.relative_to(SAMPLES)): read_sidecar(p.read_bytes(), source=p.name)[1] for p in SIDECARS}
    assert problems["brev-til-sandkasse-peer/message.xml"] == []
    assert problems["melding-til-altinn-postkasse/message.xml"] == []
    assert problems["flat/melding-flat.xml"] == []
    # Only the receiver is wrong in the sidecar itself; the missing brev.pdf is found when the drop is checked.
    [receiver] = problems["ugyldig-mottaker/message.xml"]
    assert receiver.field == "receiver" and "check digit" in receiver.text and receiver.line == 5


def test_the_flat_samples_declared_size_and_hash_match_its_document():
    import hashlib

    sidecar, _ = read_sidecar((SAMPLES / "flat" / "melding-flat.xml").read_bytes())
    assert sidecar is not None
    [document] = sidecar.documents
    content = (SAMPLES / "flat" / document.file).read_bytes()
    assert document.size == len(content)
    assert document.sha256 == hashlib.sha256(content).hexdigest()


def test_the_folder_samples_list_exactly_their_files_except_the_invalid_one():
    for folder in ("brev-til-sandkasse-peer", "melding-til-altinn-postkasse"):
        sidecar, _ = read_sidecar((SAMPLES / folder / "message.xml").read_bytes())
        present = {p.name for p in (SAMPLES / folder).iterdir()} - {"message.xml"}
        assert sidecar is not None and set(sidecar.file_names) == present


# ---- round trip of every field ----------------------------------------------------------------------

FULL = Sidecar(
    receiver="0192:910075918",
    message_type="arkivmelding_kvittering",
    sender="991825827",
    on_behalf_of="910075918",
    process="urn:no:difi:profile:arkivmelding:response:ver1.0",
    message_id=str(uuid.uuid4()),
    conversation_id=str(uuid.uuid4()),
    in_reply_to=str(uuid.uuid4()),
    title="Kvittering for «vedtak» & <svar>",
    security_level=4,
    deadline=datetime(2026, 5, 1, 12, 0, 30, 123000, tzinfo=timezone(timedelta(hours=2))),
    client_reference="2026/1234-5",
    options={"dpv": DpvNotification("Du har fått brev", "Sensitivt brev", 14), "dpf": DpfOptions("Byggesak")},
    receipt=ReceiptInfo("OK", str(uuid.uuid4()), ("mottatt", "arkivert i sak 2026/12")),
    avtalt=AvtaltContent("urn:avtalt:test", '{"a": 1}'),
    arkivmelding_file="arkivmelding.xml",
    documents=(
        DropDocument("vedtak.pdf", "Vedtak", "application/pdf", True, 604, "ab" * 32),
        DropDocument("vedlegg æøå.txt", None, "text/plain", False, 0, None),
    ),
    received=datetime(2026, 5, 1, 10, 0, tzinfo=UTC),
)


def test_a_sidecar_with_every_field_round_trips_and_validates():
    written = write_sidecar(FULL)
    assert sidecar_schema().validate(etree.fromstring(written).getroottree()), sidecar_schema().error_log
    again, _problems = read_sidecar(written)
    assert again == FULL


_xml_text = st.text(
    alphabet=st.characters(
        codec="utf-8",
        exclude_categories=("Cc", "Cs"),
        exclude_characters="\ufffe\uffff",
        include_characters="\t\n",
    ),
    min_size=1,
    max_size=40,
).map(str.strip).filter(bool)
_file_names = st.from_regex(r"[A-Za-z0-9æøåÆØÅ][A-Za-z0-9 _æøåÆØÅ-]{0,20}\.(pdf|txt|xml)", fullmatch=True)
_offsets = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
_moments = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=_offsets)


@st.composite
def _sidecars(draw) -> Sidecar:
    names = draw(st.lists(_file_names, min_size=1, max_size=4, unique=True))
    main_index = draw(st.none() | st.integers(0, len(names) - 1))
    documents = tuple(
        DropDocument(
            file=name,
            title=draw(st.none() | _xml_text),
            mime_type=draw(st.none() | st.sampled_from(["application/pdf", "text/plain"])),
            main=index == main_index,
            size=draw(st.none() | st.integers(0, 1 << 40)),
            sha256=draw(st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
        )
        for index, name in enumerate(names)
    )
    return Sidecar(
        receiver=draw(st.sampled_from(["910075918", "0192:991825827", "01017012345"])),
        message_type=draw(st.sampled_from(["arkivmelding", "digital", "print"])),
        process=draw(st.none() | st.just("urn:no:difi:profile:arkivmelding:administrasjon:ver1.0")),
        message_id=draw(st.none() | st.uuids().map(str)),
        conversation_id=draw(st.none() | st.uuids().map(str)),
        title=draw(st.none() | _xml_text),
        security_level=draw(st.none() | st.sampled_from([3, 4])),
        deadline=draw(st.none() | _moments),
        client_reference=draw(st.none() | _xml_text.filter(lambda t: len(t.split()) == 1)),
        options=draw(st.just({}) | st.builds(DpvNotification, st.none() | _xml_text, st.none() | _xml_text).map(
            lambda notification: {"dpv": notification})),
        documents=documents,
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_sidecars())
def test_any_sidecar_round_trips_through_its_xml_form(sidecar):
    written = write_sidecar(sidecar)
    assert sidecar_schema().validate(etree.fromstring(written).getroottree()), sidecar_schema().error_log
    again, _problems = read_sidecar(written)
    assert again == sidecar


# ---- status files -----------------------------------------------------------------------------------

T0 = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)


def _report(**changes) -> StatusReport:
    fields = {
        "message_id": str(uuid.uuid4()),
        "direction": "outgoing",
        "events": (
            StatusEvent(Status.OPPRETTET, T0, "the drop was accepted"),
            StatusEvent(Status.SENDT, T0 + timedelta(seconds=5), "sent through DPO"),
            StatusEvent(Status.MOTTATT, T0 + timedelta(seconds=9)),
            StatusEvent(Status.LEVERT, T0 + timedelta(minutes=1), "levert til mottaker"),
        ),
        "updated": T0 + timedelta(minutes=1, seconds=1),
        "conversation_id": str(uuid.uuid4()),
        "drop_name": "brev-til-sandkasse-peer",
        "client_reference": "2026/1234-5",
        "sender": "991825827",
        "receiver": "910075918",
        "message_type": "arkivmelding",
        "process": "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0",
        "deadline": T0 + timedelta(hours=24),
        "channel": "DPO",
        "route_reason": "receiver has a DPO record for this process",
        "errors": ("the first attempt failed: 503 from the broker", "retried: ok"),
    }
    fields.update(changes)
    return StatusReport(**fields)


def _valid_status(content: bytes) -> etree._Element:
    root = etree.fromstring(content)
    assert status_schema().validate(root.getroottree()), status_schema().error_log
    return root


def test_a_full_status_file_validates_and_reads_as_the_archive_system_expects():
    report = _report()
    root = _valid_status(render_status(report))
    ns = {"s": STATUS_NS}
    assert root.findtext("s:messageId", namespaces=ns) == report.message_id
    assert root.findtext("s:clientReference", namespaces=ns) == "2026/1234-5"
    assert root.findtext("s:route/s:channel", namespaces=ns) == "DPO"
    assert root.findtext("s:route/s:reason", namespaces=ns) == "receiver has a DPO record for this process"
    assert root.findtext("s:current", namespaces=ns) == "LEVERT"
    history = [e.findtext("s:value", namespaces=ns) for e in root.findall("s:history/s:status", ns)]
    assert history == ["OPPRETTET", "SENDT", "MOTTATT", "LEVERT"]
    assert [e.text for e in root.findall("s:errors/s:error", ns)] == list(report.errors)


def test_history_is_in_time_order_whatever_order_the_events_came_in():
    events = _report().events
    root = _valid_status(render_status(_report(events=tuple(reversed(events)))))
    ns = {"s": STATUS_NS}
    times = [e.findtext("s:time", namespaces=ns) for e in root.findall("s:history/s:status", ns)]
    assert times == sorted(times)


def test_a_rejected_drops_status_file_validates():
    report = _report(
        events=(StatusEvent(Status.FEIL, T0, "the drop was rejected: message.xml line 5, <receiver>: ..."),),
        channel=None,
        route_reason=None,
        deadline=None,
        errors=("message.xml line 5, <receiver>: 910075919 is not a valid organisation number",),
    )
    root = _valid_status(render_status(report))
    assert root.findtext(f"{{{STATUS_NS}}}current") == "FEIL"
    assert root.find(f"{{{STATUS_NS}}}route") is None


def test_an_incoming_message_status_file_validates():
    report = _report(
        direction="incoming",
        drop_name=None,
        events=(
            StatusEvent(Status.INNKOMMENDE_MOTTATT, T0),
            StatusEvent(Status.INNKOMMENDE_LEVERT, T0 + timedelta(hours=1)),
        ),
        errors=(),
    )
    root = _valid_status(render_status(report))
    assert root.findtext(f"{{{STATUS_NS}}}current") == "INNKOMMENDE_LEVERT"


@pytest.mark.parametrize("channel", ["DPO", "DPF", "DPV", "DPI", "DPE"])
def test_every_channel_is_allowed_in_a_status_file(channel):
    _valid_status(render_status(_report(channel=channel)))


def test_expired_status_file_says_levetid_utlopt_even_after_mottatt():
    events = (
        StatusEvent(Status.OPPRETTET, T0),
        StatusEvent(Status.SENDT, T0 + timedelta(seconds=1)),
        StatusEvent(Status.MOTTATT, T0 + timedelta(seconds=2)),
        StatusEvent(Status.LEVETID_UTLOPT, T0 + timedelta(days=1)),
    )
    root = _valid_status(render_status(_report(events=events)))
    assert root.findtext(f"{{{STATUS_NS}}}current") == "LEVETID_UTLOPT"
