"""The channel's receipts: verified (signature, signer = sender, chain to the trust store), counted for a letter
only when they come from the provider it went to, kept until the letter is polled, and not kept for ever.
Corner 2 is a function here (httpx's MockTransport); the receipts are signed by the dev PKI's providers."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.channels.base import SentMessage
from gateway.channels.dpi.channel import DpiChannel, reference_of
from gateway.channels.dpi.client import Corner2Client
from gateway.channels.dpi.forretningsmelding import sign_jwt
from gateway.channels.dpi.kept_receipts import MemoryReceipts
from gateway.channels.dpi.print_certificate import PrintCertificates
from gateway.channels.dpi.receipts import build_receipt
from gateway.clock import FakeClock
from gateway.devcerts import DevPki, create_dev_pki, dev_identity
from gateway.formats.keys import OrgIdentity, TrustStore
from gateway.trust.receivers import ReceiverTrust

US, MAILBOX, PRINTER = "991825827", "944444505", "944444513"


class Corner2:
    """Receipts waiting for us, by the letter they are for; statuses answer SENDT for every letter."""

    def __init__(self) -> None:
        self.waiting: list[tuple[str, str]] = []  # (letter's message id, JWT)
        self.read: list[str] = []
        self.down = False
        self.status_requests = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/dpi/messages/in" and self.down:
            return httpx.Response(503, json={"detail": "maintenance"})
        if path == "/dpi/messages/in":
            if not self.waiting:
                return httpx.Response(204)
            return httpx.Response(200, json=[{"forretningsmelding": jwt} for _, jwt in self.waiting])
        if match := re.fullmatch(r"/dpi/messages/in/(.+)/read", path):
            self.read.append(match[1])
            self.waiting = [(m, jwt) for m, jwt in self.waiting if m != match[1]]
            return httpx.Response(200)
        if re.fullmatch(r"/dpi/messages/out/.+/statuses", path):
            self.status_requests += 1
            return httpx.Response(200, json=[{"status": "SENDT", "timestamp": "2026-12-07T10:00:00.000Z"}])
        return httpx.Response(404, json={"detail": "no such call"})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("pki"), {US: "Sandkasse kommune", MAILBOX: "Postkasse AS",
                                                           PRINTER: "Utskrift AS"})


@pytest.fixture
def corner2() -> Corner2:
    return Corner2()


@pytest.fixture
def channel(pki: DevPki, corner2: Corner2) -> Iterator[DpiChannel]:
    trust = TrustStore.from_pem_files([pki.trust_bundle])
    clock = FakeClock(datetime(2026, 12, 7, 10, tzinfo=UTC))
    with httpx.Client(transport=httpx.MockTransport(corner2.handle)) as http:
        client = Corner2Client("http://corner2.test/dpi", lambda: "token", http)
        yield DpiChannel(lambda avsender: client, dev_identity(pki, US), US, trust, ReceiverTrust(trust),
                         PrintCertificates(None, http, ReceiverTrust(trust), clock), clock, receipt_gap=0,
                         keep_receipts_s=3600, background_receipts=False)


def receipt(identity: OrgIdentity, letter: str, kind: str = "leveringskvittering") -> tuple[str, str]:
    assert identity.orgnr is not None
    sbd = build_receipt(kind, provider_orgnr=identity.orgnr, sender_orgnr=US, message_id=letter,
                        conversation_id=letter, letter_type="digital")
    return letter, sign_jwt(sbd, identity, "RS512")


def sent(letter: str, provider: str = MAILBOX) -> SentMessage:
    return SentMessage(letter, reference_of(letter, provider), datetime(2026, 12, 7, 9, tzinfo=UTC))


def test_a_receipt_from_the_letters_provider_is_its_status_with_the_receipts_words(
        pki: DevPki, corner2: Corner2, channel: DpiChannel) -> None:
    corner2.waiting = [receipt(dev_identity(pki, MAILBOX), "letter-a")]
    updates = channel.poll_statuses([sent("letter-a")])
    assert [(u.status, u.description.split(":")[0]) for u in updates] == [
        ("MOTTATT", "Corner 2 has handed the message on to the receiver's access point"),
        ("LEVERT", "leveringskvittering")]
    assert corner2.read == ["letter-a"]


def test_a_receipt_from_another_provider_does_not_count(pki: DevPki, corner2: Corner2, channel: DpiChannel,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    corner2.waiting = [receipt(dev_identity(pki, PRINTER), "letter-b")]
    with caplog.at_level(logging.WARNING):
        updates = channel.poll_statuses([sent("letter-b", provider=MAILBOX)])
    assert [u.status for u in updates] == ["MOTTATT"]
    assert "comes from 0192:944444513, not from 944444505" in caplog.text


def _outsider() -> OrgIdentity:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Falsk postkasse"),
                      x509.NameAttribute(NameOID.SERIAL_NUMBER, MAILBOX)])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(9).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=9))
                   .sign(key, hashes.SHA256()))
    return OrgIdentity(MAILBOX, key, certificate, ())


def test_a_receipt_signed_outside_the_trust_store_is_not_taken(corner2: Corner2, channel: DpiChannel) -> None:
    corner2.waiting = [receipt(_outsider(), "letter-c")]
    updates = channel.poll_statuses([sent("letter-c")])
    assert [u.status for u in updates] == ["MOTTATT"]
    assert corner2.read == [] and channel.refused_receipts == 1  # left at Corner 2, where an operator sees it


def test_a_receipt_whose_signer_is_not_its_sender_is_not_taken(pki: DevPki, corner2: Corner2,
                                                               channel: DpiChannel) -> None:
    forged = build_receipt("leveringskvittering", provider_orgnr=MAILBOX, sender_orgnr=US, message_id="letter-d",
                           conversation_id="letter-d")
    corner2.waiting = [("letter-d", sign_jwt(forged, dev_identity(pki, PRINTER), "RS512"))]
    channel.poll_statuses([sent("letter-d")])
    assert corner2.read == [] and channel.refused_receipts == 1


def test_a_receipt_waits_for_its_letters_poll_and_is_not_kept_for_ever(pki: DevPki, corner2: Corner2,
                                                                       channel: DpiChannel) -> None:
    mailbox = dev_identity(pki, MAILBOX)
    corner2.waiting = [receipt(mailbox, "letter-e"), receipt(mailbox, "letter-f", "aapningskvittering")]
    assert [u.status for u in channel.poll_statuses([sent("letter-x")])] == ["MOTTATT"]
    assert sorted(corner2.read) == ["letter-e", "letter-f"]  # taken, and kept here
    later = channel.poll_statuses([sent("letter-e")])
    assert [(u.message_id, u.status) for u in later] == [("letter-e", "MOTTATT"), ("letter-e", "LEVERT")]
    assert isinstance(channel.clock, FakeClock)
    channel.clock.advance(3601)
    channel.poll_statuses([sent("letter-x")])
    assert channel.expired_receipts == 1
    assert [u.status for u in channel.poll_statuses([sent("letter-f")])] == ["MOTTATT"]




def test_corner2_refusing_the_receipt_list_is_said_once_and_the_statuses_still_come(
        pki: DevPki, corner2: Corner2, channel: DpiChannel, caplog: pytest.LogCaptureFixture) -> None:
    corner2.down = True
    with caplog.at_level(logging.INFO):
        statuses = [[u.status for u in channel.poll_statuses([sent("letter-g")])] for _ in range(3)]
        assert statuses == [["MOTTATT"], [], []]  # Corner 2's own statuses come regardless
        corner2.down = False
        corner2.waiting = [receipt(dev_identity(pki, MAILBOX), "letter-g")]
        assert [u.status for u in channel.poll_statuses([sent("letter-g")])] == ["LEVERT"]
    assert caplog.text.count("DPI receipts cannot be taken from Corner 2") == 1
    assert "DPI receipts are taken from Corner 2 again" in caplog.text



def test_once_corner2_has_handed_a_letter_on_it_is_asked_seldom(corner2: Corner2, channel: DpiChannel) -> None:
    for _ in range(3):
        channel.poll_statuses([sent("letter-h")])
    assert corner2.status_requests == 1  # SENDT (handed on) the first time: not asked again for a while
    assert isinstance(channel.clock, FakeClock)
    channel.clock.advance(channel.handed_on_poll_s)
    channel.poll_statuses([sent("letter-h")])
    assert corner2.status_requests == 2


class ArrivingWhileKept(MemoryReceipts):
    """Writing down the first page takes long enough for the letter's open receipt to come at Corner 2 meanwhile
    (a loaded machine; Corner 2 issues it moments after the delivery receipt)."""

    def __init__(self, corner2: Corner2, later: tuple[str, str]) -> None:
        super().__init__()
        self.corner2 = corner2
        self.later: tuple[str, str] | None = later

    def keep(self, receipts, now: float) -> None:  # type: ignore[no-untyped-def]
        super().keep(receipts, now)
        if self.later is not None:
            self.corner2.waiting.append(self.later)
            self.later = None


def test_an_open_receipt_that_comes_while_the_page_is_written_down_is_not_marked_read_unseen(
        pki: DevPki, corner2: Corner2, channel: DpiChannel) -> None:
    mailbox = dev_identity(pki, MAILBOX)
    corner2.waiting = [receipt(mailbox, "letter-e")]
    channel.kept = ArrivingWhileKept(corner2, receipt(mailbox, "letter-e", "aapningskvittering"))
    updates = channel.poll_statuses([sent("letter-e")])
    # Corner 2 marks every receipt of the letter read at once: had the mark come before the second look, the
    # open receipt would have gone with it, never seen.
    assert [u.status for u in updates] == ["MOTTATT", "LEVERT", "LEST"]
    assert corner2.waiting == [] and corner2.read == ["letter-e"]
