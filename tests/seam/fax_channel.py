"""A channel defined outside gateway/: fax, to organisations whose service record says they have a fax number.

It brings what every channel brings (gateway/channels/kind.py): its `channels.fax` settings block with its own
check and environment rows, its `<fax>` options block in the sidecar, its routing answer, its business types (its
part of arkivmelding, the cover page, and a message type of its own, the fax service's transmission report) and its
adapter, which posts each message as JSON to the fax service at `fax_url` (a loopback server in the tests).
Nothing in gateway/ outside gateway/channels/ is edited for it: `register(KIND)` plugs it in.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from lxml import etree

from gateway.channels.base import Capabilities, OutgoingMessage, Package, SentMessage, StatusUpdate
from gateway.channels.kind import (
    ChannelKind,
    ChannelRouting,
    ChannelTools,
    MessageFacts,
    RouteWords,
    SettingsBlock,
    SidecarOptions,
    Verdict,
)
from gateway.channels.options_xml import child_text, put_child
from gateway.channels.records import ServiceRecord
from gateway.errors import ConfigError, PermanentChannelError, RetryableChannelError
from gateway.formats.business import Arkivmelding, BusinessPart, BusinessType, extra_field, wire
from gateway.identifiers import orgnr_problem

FAX_TEST_URL = "https://fax.test.example/api"


@dataclass(frozen=True)
class FaxSettings:
    enabled: bool = True
    fax_url: str | None = None
    station_id: str | None = None  # who the fax says it is from: an organisation number
    resolution: str = "standard"

    @property
    def configured(self) -> bool:
        return self.enabled and bool(self.fax_url)


def check(prefix: str, block: Any) -> None:
    if block.configured and block.station_id is None:
        raise ConfigError(f"{prefix}: channels.fax.station_id is missing; the fax service needs it")
    if block.station_id is not None and orgnr_problem(block.station_id):
        raise ConfigError(f"{prefix}: channels.fax.station_id: {orgnr_problem(block.station_id)}")


@dataclass(frozen=True)
class FaxOptions:
    cover_page: str | None = None
    resolution: str | None = None


def read_options(block: etree._Element) -> FaxOptions:
    return FaxOptions(child_text(block, "coverPage"), child_text(block, "resolution"))


def write_options(options: FaxOptions, block: etree._Element) -> None:
    put_child(block, "coverPage", options.cover_page)
    put_child(block, "resolution", options.resolution)


@dataclass(frozen=True)
class FaxCover:
    """The fax's part of arkivmelding: `"fax": {"coverPage": …, "resolution": …}` beside its own keys."""

    cover_page: str | None = wire("coverPage")
    resolution: str | None = wire("resolution")
    extra: Mapping[str, Any] = extra_field()


@dataclass(frozen=True)
class FaxReport:
    """A business message of the fax's own: the fax service's transmission report, type `faxrapport`."""

    fax_number: str | None = wire("faxNummer")
    pages: int | None = wire("sider", "int")
    result: str | None = wire("resultat")
    extra: Mapping[str, Any] = extra_field()


FAX_REPORT_STANDARD = "urn:example:telefaks:xsd::faxrapport"
BUSINESS = (
    BusinessPart(Arkivmelding, "fax", FaxCover),
    BusinessType("faxrapport", FaxReport, FAX_REPORT_STANDARD),
)


def business(options: FaxOptions) -> Mapping[str, Any]:
    """The options block travels as the fax's part of arkivmelding."""
    return {"parts": {"fax": FaxCover(options.cover_page or "", options.resolution or "")}}


def can_carry(facts: MessageFacts, records: Sequence[ServiceRecord]) -> Verdict:
    with_number = [record for record in records if record.fields.get("faxNumber")]
    if not with_number:
        return Verdict(False)
    number = str(with_number[0].fields["faxNumber"])
    return Verdict(True, f"receiver has a fax number ending in {number[-2:]}: FAX", with_number[0])


FAX_CAPABILITIES = Capabilities(
    two_way=False,
    statuses_by_polling=False,
    receipt_types=frozenset(),
    max_bytes=1 << 20,
    security_levels=frozenset({3}),
    message_types=frozenset({"arkivmelding"}),
)


class FaxChannel:
    name = "FAX"
    capabilities = FAX_CAPABILITIES

    def __init__(self, url: str, station_id: str, resolution: str, http: httpx.Client) -> None:
        self.url = url.rstrip("/")
        self.station_id = station_id
        self.resolution = resolution
        self.http = http

    def validate(self, message: OutgoingMessage, service: ServiceRecord | None) -> list[str]:
        return [] if service is not None and service.fields.get("faxNumber") else ["the receiver has no fax number"]

    def prepare(self, message: OutgoingMessage, service: ServiceRecord | None, work: Path) -> Package:
        assert service is not None
        business_message = message.sbd.business_message
        cover = business_message.parts.get("fax") if isinstance(business_message, Arkivmelding) else None
        cover = cover or FaxCover()
        pages = [
            {"name": document.name, "content": base64.b64encode(
                document.source if isinstance(document.source, bytes) else document.source.read_bytes()).decode()}
            for document in message.documents
        ]
        content = {
            "to": service.fields["faxNumber"],
            "from": self.station_id,
            "resolution": cover.resolution or self.resolution,
            "coverPage": cover.cover_page or "",
            "title": message.title,
            "pages": pages,
        }
        return Package(message.sbd.message_id, message.sbd.sender, message.sbd.receiver, content)

    def describe(self, package: Package) -> str:
        return f"faxed at {package.content['resolution']} resolution"

    def send(self, package: Package, reference: str | None, on_reference: Callable[[str], None]) -> str:
        # Journaled before the upload, as every channel does: the fax service files a fax under the message's id, so
        # a second post after a crash is the same fax.
        reference = reference or f"fax-{package.message_id[:8]}"
        on_reference(reference)
        try:
            answer = self.http.post(f"{self.url}/faxes", json={"messageId": package.message_id, **package.content})
        except httpx.HTTPError as exc:
            raise RetryableChannelError(f"the fax service does not answer ({type(exc).__name__})") from None
        if answer.status_code != 201:
            raise PermanentChannelError(f"the fax service refused the fax (HTTP {answer.status_code})")
        return str(answer.json()["faxId"])

    def already_sent(self, reference: str) -> bool:
        return True

    def poll_statuses(self, sent: Sequence[SentMessage]) -> list[StatusUpdate]:
        return []

    def list_inbound(self) -> list[str]:
        return []

    def fetch_inbound(self, reference: str, target: BinaryIO) -> int:
        raise PermanentChannelError("fax receives nothing")

    def open_inbound(self, reference: str, download: BinaryIO, work: Path) -> Any:
        raise PermanentChannelError("fax receives nothing")

    def acknowledge_inbound(self, reference: str) -> None:
        pass

    def reject_inbound(self, reference: str, reason: str) -> None:
        pass

    def send_status(self, sbd: Any) -> None:
        pass


def build(block: Any, tools: ChannelTools) -> FaxChannel:
    return FaxChannel(block.fax_url, block.station_id, block.resolution, tools.http)


KIND = ChannelKind(
    name="FAX",
    key="fax",
    registry_scope="eformidling:fax",
    settings=SettingsBlock(
        schema=FaxSettings,
        url_keys=("fax_url",),
        urls={"test": {"fax_url": FAX_TEST_URL}},
        choices={"resolution": ("standard", "fine")},
        check=check,
    ),
    build=build,
    routing=ChannelRouting(words=RouteWords(absent="no fax number", route="FAX"), can_carry=can_carry,
                           rank={"organisations": 40}),
    options=SidecarOptions(element="fax", schema=Path(__file__).with_name("fax_options.xsd"), read=read_options,
                           write=write_options, business=business),
    business=BUSINESS,
)


def fax_service_answer(request_body: bytes) -> tuple[int, bytes]:
    """What the loopback fax service answers a POST /faxes with: 201 and the fax's id."""
    posted = json.loads(request_body)
    return 201, json.dumps({"faxId": f"fax-{posted['messageId'][:8]}"}).encode()
