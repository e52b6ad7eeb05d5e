"""Adding a channel touches gateway/channels/, config and the sandbox only: a channel defined here, in the tests,
plugs in with `register` and brings its settings block, its sidecar options block, its routing answer and its
business types; a drop is accepted, routed to it by its own reason and sent through it to a fax service on
loopback."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from gateway.channels.records import InfoRecord, RegistryAnswer, ServiceRecord
from gateway.channels.registry import KINDS, ChannelTools, build_channels, register, unregister
from gateway.clock import FakeClock
from gateway.config import load_config
from gateway.contract.sidecar import read_sidecar, write_sidecar
from gateway.errors import ConfigError
from gateway.folders import prepare_folders
from gateway.formats.business import Arkivmelding, BusinessType, business_type
from gateway.formats.sbd import SbdFormatError, from_json, new_sbd, to_json
from gateway.formats.sbd_xml import from_xml, to_xml
from gateway.intake.service import Intake
from gateway.journal.phases import Phase
from gateway.journal.store import Journal
from gateway.outbound.sender import Sender
from gateway.receipts.writer import StatusWriter
from tests.foundation.drops import OUR_ORGNR, VALID_RECEIVER, make_folder_drop, pdf_bytes, sidecar_xml, write_config
from tests.seam.fax_channel import (
    FAX_REPORT_STANDARD,
    FAX_TEST_URL,
    KIND,
    FaxCover,
    FaxOptions,
    FaxReport,
    fax_service_answer,
)

ADMIN = "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0"
NETWORK = "network:\n  service_registry_url: http://127.0.0.1:9/sr\n  token_url: http://127.0.0.1:9/token\n"
ARKIVMELDING = "urn:no:difi:arkivmelding:xsd::arkivmelding"


@pytest.fixture
def fax_plugged_in() -> Iterator[None]:
    register(KIND)
    yield
    unregister(KIND.key)


class _FaxService(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        status, answer = fax_service_answer(body) if self.path == "/api/faxes" else (404, b"{}")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fax_service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FaxService)
    _FaxService.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()


def _config(root: Path, extra: str) -> Path:
    path = write_config(root, quiet_period_seconds=0)
    path.write_text(path.read_text() + extra)
    return path


class _Registry:
    """The receiver's records as a lookup gives them: a DPV record, and a record for the fax channel whose own
    field (faxNumber) only that channel reads."""

    def lookup(self, identifier, process, security_level=None, conversation_id=None) -> RegistryAnswer:
        records = [
            ServiceRecord("DPV", process, (), None, None, "4255", "10", 3, "eformidling-dpv-administrasjon"),
            ServiceRecord("FAX", process, (ARKIVMELDING,), None, None, None, None, 3, None,
                          fields={"faxNumber": "+4722334455"}),
        ]
        return RegistryAnswer(InfoRecord(identifier, "Mottaker"), records)


def test_the_channels_settings_block_is_parsed_by_the_channel(fax_plugged_in, tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, NETWORK + "channels:\n  fax:\n    fax_url: http://127.0.0.1:9/api\n"
                                           f"    station_id: '{OUR_ORGNR}'\n    resolution: fine\n"))
    assert config.channels.fax.resolution == "fine" and list(config.channels.enabled()) == ["fax"]

    with pytest.raises(ConfigError, match=r"channels\.fax\.station_id is missing; the fax service needs it"):
        load_config(_config(tmp_path, NETWORK + "channels:\n  fax:\n    fax_url: http://127.0.0.1:9/api\n"))
    with pytest.raises(ConfigError, match=r"channels\.fax\.resolution is 'grainy'; use one of standard, fine"):
        load_config(_config(tmp_path, "channels:\n  fax:\n    resolution: grainy\n"))
    with pytest.raises(ConfigError, match=r"channels\.fax\.fax_url must be an http\(s\) URL"):
        load_config(_config(tmp_path, f"{NETWORK}channels:\n  fax:\n    fax_url: ftp://x\n    station_id: '1'\n"))
    # Its row of the environment table fills its URL outside the sandbox.
    test_environment = ("network:\n  environment: test\n  client_id: klient\n"
                        f"channels:\n  fax:\n    station_id: '{OUR_ORGNR}'\n")
    assert load_config(_config(tmp_path, test_environment)).channels.fax.fax_url == FAX_TEST_URL


def test_an_unknown_channel_is_refused_naming_the_known_ones_and_the_fax_is_one_once_plugged_in(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'channels.fax'; known keys here are channels.dpf"):
        load_config(_config(tmp_path, "channels:\n  fax: {}\n"))
    register(KIND)
    try:
        assert "fax" in load_config(_config(tmp_path, "channels:\n  fax: {}\n")).channels.blocks
    finally:
        unregister(KIND.key)


def test_the_sidecar_takes_the_channels_options_block_and_explains_its_errors(fax_plugged_in) -> None:
    sidecar, problems = read_sidecar(sidecar_xml(extra="<fax><coverPage>Til saksbehandler</coverPage>"
                                                       "<resolution>fine</resolution></fax>"))
    assert problems == [] and sidecar is not None
    assert sidecar.options == {"fax": FaxOptions("Til saksbehandler", "fine")}
    again, _problems = read_sidecar(write_sidecar(sidecar))
    assert again == sidecar

    _none, problems = read_sidecar(sidecar_xml(extra="<fax><resolution>grainy</resolution></fax>"))
    assert [str(problem) for problem in problems] == [
        "message.xml line 5, <resolution>: 'grainy' is not allowed; use one of standard, fine"]
    _none, problems = read_sidecar(sidecar_xml(extra="<fax/><fax/>"))
    assert [problem.field for problem in problems] == ["fax"]
    assert "unknown or in the wrong place" in problems[0].text


def test_without_the_channel_its_block_is_an_unknown_element() -> None:
    _none, problems = read_sidecar(sidecar_xml(extra="<fax><coverPage>x</coverPage></fax>"))
    assert [problem.field for problem in problems] == ["fax"]
    assert "unknown or in the wrong place" in problems[0].text


def test_the_channel_brings_its_business_types_and_takes_them_away_again() -> None:
    created = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    register(KIND)
    try:
        # A message type of its own: named from its class, written and read in both wire forms.
        report = new_sbd(sender=OUR_ORGNR, receiver=VALID_RECEIVER, process=ADMIN, created=created,
                         business_message=FaxReport(fax_number="+4722334455", pages=3, result="OK"))
        assert (report.message_type, report.standard) == ("faxrapport", FAX_REPORT_STANDARD)
        report_json, report_xml = to_json(report), to_xml(report)
        assert json.loads(report_json)["faxrapport"] == {"faxNummer": "+4722334455", "sider": 3, "resultat": "OK"}
        assert from_json(report_json) == report and from_xml(report_xml) == report
        # Its part of arkivmelding, under its own key beside arkivmelding's.
        letter = new_sbd(sender=OUR_ORGNR, receiver=VALID_RECEIVER, process=ADMIN, created=created,
                         business_message=Arkivmelding(hoveddokument="brev.pdf",
                                                       parts={"fax": FaxCover("Til arkivet", "fine")}))
        letter_json = to_json(letter)
        assert json.loads(letter_json)["arkivmelding"] == {
            "hoveddokument": "brev.pdf", "fax": {"coverPage": "Til arkivet", "resolution": "fine"}}
        assert from_json(letter_json) == letter and from_xml(to_xml(letter)) == letter
        # A second channel may not take a name that is taken: refused, and nothing of it is added.
        rival = dataclasses.replace(KIND, name="TELEX", key="telex",
                                    business=(BusinessType("status", FaxReport, "urn:x::status"),))
        with pytest.raises(ConfigError, match=r"channel TELEX cannot be added: .*'status' is registered already"):
            register(rival)
        assert business_type("status").cls is not FaxReport and "telex" not in KINDS
    finally:
        unregister(KIND.key)

    # Without the channel its type is refused by name, and its part is a key arkivmelding keeps unread.
    for read, data in ((from_json, report_json), (from_xml, report_xml)):
        with pytest.raises(SbdFormatError, match=r"'faxrapport' is not a supported business message: no channel"):
            read(data)
    unread = from_json(letter_json)
    assert unread.business_message.parts == {}
    assert unread.business_message.extra == {"fax": {"coverPage": "Til arkivet", "resolution": "fine"}}
    assert json.loads(to_json(unread)) == json.loads(letter_json)


def test_a_drop_is_routed_to_the_plugged_in_channel_and_sent_through_it(fax_plugged_in, fax_service, tmp_path):
    config = load_config(_config(
        tmp_path,
        NETWORK + f"channels:\n  fax:\n    fax_url: {fax_service}\n    station_id: '{OUR_ORGNR}'\n"
        "routing:\n  organisations: [FAX, DPV]\n",
    ))
    prepare_folders(config)
    clock = FakeClock()
    journal = Journal(config.folders.journal_path, clock)
    statuses = StatusWriter(journal, config.folders.status, clock)
    http = httpx.Client(timeout=10)
    try:
        letter = pdf_bytes("faks")
        make_folder_drop(config.folders.outbox, "faks", files={"brev.pdf": letter}, sidecar=sidecar_xml(
            extra="<fax><coverPage>Til arkivet</coverPage><resolution>fine</resolution></fax>"))
        Intake(config, journal, statuses, clock).run_once()
        [record] = journal.in_phase(Phase.ACCEPTED)
        # The channel is built from its block as any other: the tools it does not use (keys, tokens) are absent.
        tools = ChannelTools(orgnr=OUR_ORGNR, identity=None, trust=None, auth=None, http=http, clock=clock)  # type: ignore[arg-type]
        channels = build_channels(config.channels.enabled(), tools)
        assert list(channels) == ["FAX"]
        sender = Sender(config, journal, statuses, clock, _Registry(), channels)
        try:
            sender.send_one(record)
        finally:
            sender.close()

        sent = journal.get(record.row)
        assert sent.phase == Phase.SENT and sent.channel == "FAX"
        assert sent.route_reason == "receiver has a fax number ending in 55: FAX; faxed at fine resolution"
        [fax] = _FaxService.received
        assert (fax["to"], fax["from"], fax["coverPage"], fax["resolution"]) == (
            "+4722334455", OUR_ORGNR, "Til arkivet", "fine")
        pages = {page["name"]: base64.b64decode(page["content"]) for page in fax["pages"]}
        assert pages["brev.pdf"] == letter and "arkivmelding.xml" in pages
        assert sent.detail["reference"] == f"fax-{record.message_id[:8]}"
        assert sent.receiver == VALID_RECEIVER
        assert sent.detail["service_record"]["fields"] == {"faxNumber": "+4722334455"}  # journaled with the route
        statuses.flush()
        [status_file] = sorted(config.folders.status.glob("faks*.xml"))
        assert "receiver has a fax number ending in 55: FAX" in status_file.read_text(encoding="utf-8")
    finally:
        http.close()
        statuses.close()
        journal.close()
