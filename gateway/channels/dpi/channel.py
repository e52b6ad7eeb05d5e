"""DPI through the `Channel` interface: letters to citizens over Corner 2, to their digital mailbox or to print.

prepare: the documents checked (50 MB, types, names) before anything is built, the dokumentpakke (ASiC-E with
XAdES) encrypted to the mailbox provider's certificate from the person's record or to the print service's
(fetched from KRR, cached), both checked against the trust store first. send: the reference journaled, then the
SBD signed as a JWT carrying the Maskinporten token the request carries and the package's fingerprint, and the
multipart POST. Statuses come by polling: Corner 2's own per message (timeouts, no overlap, back-off, 404/410
ending it; client.StatusPolling) and the providers' receipts, which Corner 2 holds for us (mottak, levering,
åpning, returpost, feil, varsling feilet), each with its own words. One-way: nothing comes in but receipts.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from gateway.channels.base import Capabilities, InboundMessage, OutgoingMessage, Package, SentMessage, StatusUpdate
from gateway.channels.dpi.business import (
    Avsender,
    Digital,
    DpiFormatError,
    EpostVarsel,
    PostAdresse,
    Retur,
    SmsVarsel,
    Utskrift,
    Varsler,
)
from gateway.channels.dpi.client import (
    MAX_DOKUMENTPAKKE_BYTES,
    Corner2Client,
    IncomingMessage,
    ReceiptPolling,
    StatusPolling,
)
from gateway.channels.dpi.forretningsmelding import build_sbd, check_sender, read_jwt, sign_jwt
from gateway.channels.dpi.kept_receipts import KeptReceipts, MemoryReceipts
from gateway.channels.dpi.options import DigitalOptions, DpiOptions, PostalAddress, PrintOptions
from gateway.channels.dpi.package import DpiDocument, ManifestParties, build_dokumentpakke, check_documents
from gateway.channels.dpi.print_certificate import PrintCertificates, check
from gateway.channels.dpi.receipts import Receipt, receipt_from_sbd
from gateway.channels.dpi.routing import is_print_record
from gateway.channels.records import ServiceRecord
from gateway.clock import Clock
from gateway.errors import ChannelError, JournalError, PermanentChannelError, SecurityError
from gateway.formats.keys import OrgIdentity, TrustStore
from gateway.trust.receivers import ReceiverTrust
from gateway.trust.store import Purpose

log = logging.getLogger(__name__)

LETTER_TYPES = frozenset({"digital", "print"})


@dataclass(frozen=True)
class LetterDefaults:
    """channels.dpi's defaults for what a sidecar leaves out."""

    language: str = "NO"
    email_text: str = "Du har fått et brev i den digitale postkassen din."
    sms_text: str = "Du har fått et brev i den digitale postkassen din."
    print_colour: str = "SORT_HVIT"
    post_type: str = "B"
    returned_post: str = "DIREKTE_RETUR"
    avsenderidentifikator: str | None = None
    fakturareferanse: str | None = None
    kanal: str | None = None


@dataclass(frozen=True)
class Letter:
    """A prepared letter: the business message (fingerprint and token added at send), its package, its ids."""

    business: Digital | Utskrift
    package: Path
    fingerprint: Any
    provider: str  # the mailbox provider's or print service's organisation: the SBD's receiver
    avsender: str
    conversation_id: str
    expected_response: datetime | None


def reference_of(message_id: str, provider: str) -> str:
    """The channel's reference: the letter's message id (Corner 2 and the receipts know it by that), and the
    provider it went to (only that provider's receipts count for it)."""
    return f"{message_id}/{provider}"


def split_reference(reference: str) -> tuple[str, str | None]:
    """(message id, provider) of a reference; the provider None where the reference does not name one."""
    message_id, _, provider = reference.partition("/")
    return message_id, provider or None


def _address(given: PostalAddress | None, registry: Any) -> PostAdresse | None:
    if given is not None:
        lines = [*given.lines, None, None, None, None]
        return PostAdresse(given.name, lines[0], lines[1], lines[2], lines[3], given.postal_code, given.postal_area,
                           given.country)
    if isinstance(registry, dict) and registry.get("name"):
        street = registry.get("street")
        country = registry.get("country")
        return PostAdresse(str(registry["name"]), street, None, None, None, registry.get("postalCode"),
                           registry.get("postalArea"), country)
    return None


class DpiChannel:
    name = "DPI"

    def __init__(self, clients: Callable[[str], Corner2Client], identity: OrgIdentity, own_orgnr: str,
                 trust: TrustStore, receivers: ReceiverTrust, print_certificates: PrintCertificates, clock: Clock,
                 defaults: LetterDefaults | None = None, statuses_per_request: int = 50,
                 receipt_gap: float = 1.0, keep_receipts_s: float = 7 * 24 * 3600.0,
                 background_receipts: bool = True, handed_on_poll_s: float = 900.0,
                 kept: KeptReceipts | None = None) -> None:
        self.clients = clients  # the Corner 2 client for an avsender (its token names it when not us)
        self.client = clients(own_orgnr)
        self.identity = identity
        self.own_orgnr = own_orgnr
        self.trust = trust
        self.receivers = receivers
        self.print_certificates = print_certificates
        self.clock = clock
        self.defaults = defaults or LetterDefaults()
        self.polling = StatusPolling(self.client, clock)
        self.capabilities = Capabilities(
            # After LEVERT a letter is still watched: an open receipt (LEST) or returned post (FEIL) may come later.
            two_way=False, statuses_by_polling=True, receipt_types=LETTER_TYPES, max_bytes=MAX_DOKUMENTPAKKE_BYTES,
            security_levels=frozenset({3, 4}), message_types=LETTER_TYPES,
            # A call asks for these one by one; calls run side by side (StatusPolling keeps one message's polls
            # from overlapping), and one receipt listing serves them all.
            statuses_per_request=statuses_per_request,
        )
        self.receipt_polling = ReceiptPolling(self.client, self.defaults.kanal)
        self.receipt_gap = receipt_gap
        self.refused_receipts = 0
        self._receipts_lock = threading.Lock()
        self._last_receipt_round = float("-inf")
        self._last_expiry = float("-inf")
        # Receipts taken from Corner 2, not yet handed on: in the journal under the daemon (kept_receipts.py)
        self.kept: KeptReceipts = kept if kept is not None else MemoryReceipts()
        self._round: list[Receipt] = []  # the receipts of the page being taken, written down before marked read
        self.keep_receipts_s = keep_receipts_s
        self.expired_receipts = 0
        self.background_receipts = background_receipts
        self._receipt_thread: threading.Thread | None = None
        self._receipts_failing = False
        self.handed_on_poll_s = handed_on_poll_s
        self._handed_on: dict[str, float] = {}  # letters Corner 2 has handed on -> when last asked (monotonic)

    # ---- sending ---------------------------------------------------------------------------------
    def _documents(self, message: OutgoingMessage) -> list[DpiDocument]:
        return [DpiDocument(doc.name, doc.source, doc.mime_type, title=message.titles.get(doc.name))
                for doc in message.documents]

    def validate(self, message: OutgoingMessage, service: ServiceRecord | None) -> list[str]:
        if message.sbd.message_type not in LETTER_TYPES:
            return [f"DPI carries letters to citizens (sidecar <type> digital or print), not "
                    f"{message.sbd.message_type}"]
        if service is None:
            return ["DPI needs the person's record from the service registry"]
        try:
            check_documents(self._documents(message), print_letter=is_print_record(service))
        except DpiFormatError as exc:
            return [f"refused before anything was sent: {exc}"]
        return []

    def prepare(self, message: OutgoingMessage, service: ServiceRecord | None, work: Path) -> Package:
        assert service is not None
        options = message.options.get("dpi") or DpiOptions()
        sbd = message.sbd
        avsender_orgnr = sbd.sender_on_behalf_of or sbd.sender
        printing = is_print_record(service)
        avsender = Avsender(avsender_orgnr, self.defaults.avsenderidentifikator, self.defaults.fakturareferanse)
        provider = str(service.fields.get("orgnrPostkasse") or "")
        if printing:
            checked = self.print_certificates.certificate(service.certificate_pem)
            business: Digital | Utskrift = self._utskrift(avsender, options.print or PrintOptions(), service)
            parties = ManifestParties(avsender_orgnr, avsenderidentifikator=avsender.avsenderidentifikator,
                                      fakturareferanse=avsender.fakturareferanse)
        else:
            checked = check(self.receivers, service.certificate_pem, f"the mailbox provider {provider}",
                            owner_expected=provider or None)
            digital = options.digital or DigitalOptions()
            business = self._digital(avsender, digital, service, message, sbd.business_message)
            parties = ManifestParties(avsender_orgnr, postkasseadresse=business.postkasseadresse,
                                      personidentifikator=sbd.receiver,
                                      avsenderidentifikator=avsender.avsenderidentifikator,
                                      fakturareferanse=avsender.fakturareferanse, language=business.spraak)
        work.mkdir(parents=True, exist_ok=True)
        pakke = build_dokumentpakke(self._documents(message), parties, self.identity, checked.certificate,
                                    work / "asic.cms", print_letter=printing)
        letter = Letter(business, pakke.path, pakke.fingerprint, provider or checked.owner, avsender_orgnr,
                        sbd.conversation_id, sbd.expected_response)
        return Package(sbd.message_id, sbd.sender, provider or checked.owner, letter, note=checked.note)

    def _digital(self, avsender: Avsender, options: DigitalOptions, service: ServiceRecord,
                 message: OutgoingMessage, nextmove: Any) -> Digital:
        fields = service.fields
        channels = options.notification_channels or "EmailAndSms"
        email, mobile = fields.get("epostAdresse"), fields.get("mobilnummer")
        varsler = Varsler(
            epost=EpostVarsel(email, options.email_text or self.defaults.email_text)
            if email and channels in ("Email", "EmailAndSms") else None,
            sms=SmsVarsel(mobile, options.sms_text or self.defaults.sms_text)
            if mobile and channels in ("Sms", "EmailAndSms") else None,
        )
        level = getattr(nextmove, "sikkerhetsnivaa", None) or 3
        return Digital(
            avsender=avsender, postkasseadresse=str(fields.get("postkasseAdresse")),
            ikkesensitivtittel=(options.title or message.title or "Brev")[:255],
            spraak=(options.language or self.defaults.language).upper(), sikkerhetsnivaa=level,
            virkningstidspunkt=options.effective, aapningskvittering=bool(options.open_receipt), varsler=varsler,
        )

    def _utskrift(self, avsender: Avsender, options: PrintOptions, service: ServiceRecord) -> Utskrift:
        receiver = _address(options.receiver_address, service.fields.get("postAddress"))
        if receiver is None:
            raise PermanentChannelError("a print letter needs the receiver's postal address: the registry has none "
                                        "for the person; give it in the sidecar's <dpi><print><receiverAddress>")
        returned = _address(options.return_address, service.fields.get("returnAddress"))
        if returned is None:
            raise PermanentChannelError("a print letter needs a return address: the registry has none; give it in "
                                        "the sidecar's <dpi><print><returnAddress>")
        return Utskrift(avsender=avsender, mottaker=receiver,
                        retur=Retur(returned, options.returned_post or self.defaults.returned_post),
                        utskriftstype=options.colour or self.defaults.print_colour,
                        posttype=options.post_type or self.defaults.post_type)

    def describe(self, package: Package) -> str:
        letter: Letter = package.content
        if isinstance(letter.business, Utskrift):
            return (f"printed by {package.receiver} and posted ({letter.business.posttype}-post, "
                    f"{letter.business.utskriftstype}); {package.note}")
        varsler = letter.business.varsler
        notified = " and ".join(kind for kind, on in (("e-mail", varsler.epost), ("SMS", varsler.sms)) if on)
        return (f"to the digital mailbox at {package.receiver}, notified by {notified or 'nothing'}; "
                f"{package.note}")

    def send(self, package: Package, reference: str | None, on_reference: Callable[[str], None]) -> str:
        letter: Letter = package.content
        client = self.clients(letter.avsender)
        if reference is not None and client.already_sent(split_reference(reference)[0]):
            return reference
        reference = reference_of(package.message_id, letter.provider)
        on_reference(reference)
        # The token the request carries goes into the SBD too: Corner 2 checks that they agree.
        token = client.tokens()
        business = dataclasses.replace(letter.business, fingerprint=letter.fingerprint, maskinportentoken=token)
        sbd = build_sbd(business, sender=package.sender, receiver=letter.provider, message_id=package.message_id,
                        conversation_id=letter.conversation_id, expected_response=letter.expected_response)
        client.send(sign_jwt(sbd, self.identity), letter.package, self.defaults.kanal)
        return reference

    def already_sent(self, reference: str) -> bool:
        return self.client.already_sent(split_reference(reference)[0])

    # ---- statuses ----------------------------------------------------------------------------------
    def poll_statuses(self, sent: Sequence[SentMessage]) -> list[StatusUpdate]:
        by_message = [dataclasses.replace(message, message_id=split_reference(message.reference)[0])
                      for message in sent]
        providers = {message.message_id: split_reference(message.reference)[1] for message in by_message}
        updates = self.polling.poll(self._to_ask(by_message))
        now = self.clock.monotonic()
        with self._receipts_lock:
            for update in updates:
                if update.status == "MOTTATT":  # Corner 2 has handed it on: the provider's receipts tell the rest
                    self._handed_on.setdefault(update.message_id, now)
                elif update.ends_polling:
                    self._handed_on.pop(update.message_id, None)
        self._take_receipts()
        for receipt in self.kept.take(providers):
            message_id = receipt.message_id
            provider = providers[message_id]
            if provider is not None and receipt.provider.removeprefix("0192:") != provider:
                # A receipt counts only when it comes from the provider the letter went to.
                log.warning("a DPI receipt (%s) for message %s comes from %s, not from %s, where the letter went; "
                            "it is ignored", receipt.type, message_id, receipt.provider, provider)
                continue
            updates.append(StatusUpdate(message_id, receipt.status, receipt.timestamp, receipt.description))
        return updates

    def _to_ask(self, sent: list[SentMessage]) -> list[SentMessage]:
        """The letters whose Corner 2 statuses are worth a request now: every round until Corner 2 has handed a
        letter on, then once per `handed_on_poll_s` (only a letter it let go, 404/410, can still change there)."""
        now = self.clock.monotonic()
        asked = []
        with self._receipts_lock:
            for message in sent:
                since = self._handed_on.get(message.message_id)
                if since is None or now - since >= self.handed_on_poll_s:
                    asked.append(message)
                    if since is not None:
                        self._handed_on[message.message_id] = now
        return asked

    def _take_receipts(self) -> None:
        """A round of receipts from Corner 2, at most one per `receipt_gap` seconds (the poller asks for a batch
        in chunks side by side; one listing serves them all), on a thread of its own: taking thousands of receipts
        (one request each to mark them read) never holds up the letters' status polls. Each verified receipt is
        written down (`kept`: the journal under the daemon) before it is marked read at Corner 2, which never
        offers a read receipt again, and handed on when its letter is polled: a crash in between loses none.
        Marking read later would lose more: Corner 2 marks every receipt of the letter it has by then."""
        now = self.clock.monotonic()
        with self._receipts_lock:
            if now - self._last_receipt_round < self.receipt_gap:
                return
            if self._receipt_thread is not None and self._receipt_thread.is_alive():
                return
            self._last_receipt_round = now
            # Receipts whose letter is never polled again (finished, or sent by another system on the same
            # client) are not kept for ever.
            if now - self._last_expiry >= 60:  # a week's limit needs no sweep every round
                self._last_expiry = now
                self.expired_receipts += self.kept.expire(self.clock.now().timestamp() - self.keep_receipts_s)
            for message_id in [m for m, since in self._handed_on.items() if now - since > self.keep_receipts_s]:
                del self._handed_on[message_id]
            if not self.background_receipts:
                self._receipt_thread = None
            else:
                self._receipt_thread = threading.Thread(target=self._receipt_round, name="dpi-receipts",
                                                        daemon=True)
                self._receipt_thread.start()
                return
        self._receipt_round()

    def _receipt_round(self) -> None:
        try:
            self.receipt_polling.poll(self._keep, settle=self._write_down)
        except (JournalError, sqlite3.Error) as exc:
            self._round.clear()
            log.warning("DPI receipts are left at Corner 2 this round: they cannot be written down (%s)", exc)
            return
        except ChannelError as exc:
            self._round.clear()
            if not self._receipts_failing:
                log.warning("DPI receipts cannot be taken from Corner 2: %s; each status round tries again", exc)
            self._receipts_failing = True
            return
        if self._receipts_failing:
            log.info("DPI receipts are taken from Corner 2 again")
        self._receipts_failing = False

    def _keep(self, waiting: IncomingMessage) -> str | None:
        try:
            signed = read_jwt(waiting.forretningsmelding)
            check_sender(signed)
            self.trust.verify(signed.certificate, purpose=Purpose.SIGNING, role="the receipt's signer")
            receipt = receipt_from_sbd(signed)
        except (SecurityError, DpiFormatError) as exc:
            # Never taken: it stays at Corner 2, where an operator can see it, and the next round skips past it.
            self.refused_receipts += 1
            log.warning("a DPI receipt was not accepted: %s", exc)
            return None
        self._round.append(receipt)
        return receipt.message_id

    def _write_down(self) -> None:
        """The page's verified receipts, written down before any of them is marked read at Corner 2."""
        receipts, self._round = self._round, []
        self.kept.keep(receipts, self.clock.now().timestamp())

    # ---- one-way: nothing comes in but receipts ---------------------------------------------------
    def list_inbound(self) -> list[str]:
        return []

    def fetch_inbound(self, reference: str, target: BinaryIO) -> int:
        raise PermanentChannelError("DPI brings no messages to us")

    def open_inbound(self, reference: str, download: BinaryIO, work: Path) -> InboundMessage:
        raise PermanentChannelError("DPI brings no messages to us")

    def acknowledge_inbound(self, reference: str) -> None:
        raise PermanentChannelError("DPI brings no messages to us")

    def reject_inbound(self, reference: str, reason: str) -> None:
        raise PermanentChannelError("DPI brings no messages to us")

    def send_status(self, sbd: Any) -> None:
        raise PermanentChannelError("DPI carries no status messages")


__all__ = ["DpiChannel", "Letter", "LetterDefaults", "reference_of", "split_reference"]
