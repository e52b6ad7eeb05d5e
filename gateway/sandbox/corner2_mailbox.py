"""The providers behind the sandbox's Corner 2: one digital mailbox and one print service, as a real provider
(Digipost, e-Boks, the print and dispatch service) takes a letter and answers with receipts.

- Digital: the letter goes to the person whose mailbox address the business message names; the documents are
  decrypted with the mailbox's key and kept byte for byte. A leveringskvittering comes when the letter is in the
  mailbox (at once, or at its virkningstidspunkt), an aapningskvittering `open_delay_s` later when the letter
  asks for one. Notifications are recorded; one the person cannot get (not notifiable, no address) becomes a
  varslingfeiletkvittering for its channel.
- Print: the letter is printed for the postal address it names: mottakskvittering at once, leveringskvittering
  `print_delay_s` later, and for a person who has moved a returpostkvittering `return_delay_s` later.
- A dokumentpakke the provider cannot open, or a mailbox address nobody has, gets a `feil` receipt.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.formats.keys import OrgIdentity
from gateway.sandbox.corner2_checks import Forretningsmelding
from gateway.sandbox.corner2_package import LetterFile, OpenedPackage, PackageProblem, discard, open_dokumentpakke
from gateway.sandbox.corner2_receipts import receipt_sbd, sign_receipt
from gateway.sandbox.corner2_store import Corner2Options, Corner2Store, WaitingReceipt
from gateway.sandbox.persons import DpiDirectory, SandboxPerson


@dataclass(frozen=True)
class Notification:
    channel: str  # epost | sms
    to: str | None
    text: str
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"channel": self.channel, "to": self.to, "text": self.text, "at": self.at.isoformat()}


@dataclass
class Letter:
    """A digital letter in a person's mailbox."""

    message_id: str
    sender: str
    title: str | None
    documents: list[LetterFile]
    delivered_at: datetime
    opened_at: datetime | None = None
    notifications: list[Notification] = field(default_factory=list)
    avsender: str | None = None  # the business message's avsender (who the letter is from)
    manifest_avsender: str | None = None  # the package manifest's

    def to_json(self) -> dict[str, Any]:
        return {"messageId": self.message_id, "sender": self.sender, "title": self.title,
                "avsender": self.avsender, "manifestAvsender": self.manifest_avsender,
                "deliveredAt": self.delivered_at.isoformat(),
                "openedAt": self.opened_at.isoformat() if self.opened_at else None,
                "documents": [document.to_json() for document in self.documents],
                "notifications": [notification.to_json() for notification in self.notifications]}


@dataclass
class PrintJob:
    message_id: str
    sender: str
    address: dict[str, Any]
    return_to: dict[str, Any]
    colour: str | None
    post_type: str | None
    documents: list[LetterFile]
    received_at: datetime
    returned: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"messageId": self.message_id, "sender": self.sender, "address": self.address,
                "retur": self.return_to, "utskriftstype": self.colour, "posttype": self.post_type,
                "receivedAt": self.received_at.isoformat(), "returned": self.returned,
                "documents": [document.to_json() for document in self.documents]}


def _when(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
    return moment if moment is None or moment.tzinfo else None


class Providers:
    """The digital mailbox and the print service; `deliver` takes a message Corner 2 hands on."""

    def __init__(self, folder: Path, directory: DpiDirectory, mailbox: OrgIdentity, printer: OrgIdentity,
                 store: Corner2Store, options: Corner2Options) -> None:
        self.folder = folder
        self.directory = directory
        self.mailbox_identity = mailbox
        self.print_identity = printer
        self.store = store
        self.options = options
        self._lock = threading.Lock()
        self._letters: dict[str, list[Letter]] = {}
        self._print_jobs: list[PrintJob] = []

    # ---- what tests and the inspection endpoint read -------------------------------------------------
    def mailbox(self, fnr: str) -> list[Letter]:
        with self._lock:
            return list(self._letters.get(fnr, []))

    def deliveries(self, message_id: str) -> int:
        """How many times the letter `message_id` reached a mailbox or the printer."""
        with self._lock:
            letters = sum(1 for found in self._letters.values() for letter in found if letter.message_id == message_id)
            return letters + sum(1 for job in self._print_jobs if job.message_id == message_id)

    def delivery_counts(self) -> Counter[str]:
        """`deliveries` for every letter at once, by message id."""
        with self._lock:
            counted = Counter(letter.message_id for found in self._letters.values() for letter in found)
            counted.update(job.message_id for job in self._print_jobs)
        return counted

    def print_jobs(self) -> list[PrintJob]:
        with self._lock:
            return list(self._print_jobs)

    # ---- taking a message ----------------------------------------------------------------------------
    def handled_by(self, message: Forretningsmelding) -> str | None:
        """Why the message cannot be handed on to the provider it names, or None when it can."""
        provider = {"digital": self.directory.mailbox_provider, "utskrift": self.directory.print_provider}
        if message.receiver != provider[message.type]:
            return (f"fant ikke aksesspunkt for mottaker 0192:{message.receiver} ({message.type}): the sandbox's "
                    f"{message.type} provider is 0192:{provider[message.type]}")
        return None

    def deliver(self, message: Forretningsmelding, cms: Path, now: datetime) -> None:
        if message.type == "digital":
            self._deliver_digital(message, cms, now)
        else:
            self._print(message, cms, now)

    def _receipt(self, message: Forretningsmelding, receipt_type: str, at: datetime, identity: OrgIdentity,
                 owner: str, kanal: str | None, **details: str) -> None:
        assert identity.orgnr is not None
        sbd = receipt_sbd(receipt_type, provider=identity.orgnr, sender=message.sender, message_id=message.message_id,
                          conversation_id=message.conversation_id, process=message.process, at=at, **details)
        self.store.add_receipt(WaitingReceipt(str(uuid.uuid4()), owner, message.message_id, receipt_type,
                                              sign_receipt(sbd, identity), at, kanal, message.avsenderidentifikator))

    def _deliver_digital(self, message: Forretningsmelding, cms: Path, now: datetime) -> None:
        stored = self.store.message(message.message_id)
        owner, kanal = (stored.owner, stored.kanal) if stored else (message.sender, None)
        address = str((message.business.get("mottaker") or {}).get("postkasseadresse") or "")
        person = self.directory.by_mailbox_address(address)
        identity = self.mailbox_identity
        if person is None:
            self._receipt(message, "feil", now, identity, owner, kanal, feiltype="KLIENT",
                          detaljer=f"Ukjent postkasseadresse {address!r}: ingen mottaker i denne postkassen")
            return
        folder = self.folder / "mailbox" / person.fnr / message.message_id
        try:
            opened = open_dokumentpakke(cms, identity.private_key, identity.certificate, folder)
            self._check_addressee(opened, person)
        except PackageProblem as exc:
            discard(folder)
            self._receipt(message, "feil", now, identity, owner, kanal, feiltype="KLIENT",
                          detaljer=f"Dokumentpakken kunne ikke tas imot: {exc}")
            return
        effective = _when(message.business.get("virkningstidspunkt"))
        delivered = max(now, effective) if effective else now
        avsender = ((message.business.get("avsender") or {}).get("virksomhetsidentifikator") or {}).get("value")
        letter = Letter(message.message_id, message.sender, message.business.get("ikkesensitivtittel"),
                        opened.documents, delivered, avsender=avsender, manifest_avsender=opened.avsender)
        self._receipt(message, "leveringskvittering", delivered, identity, owner, kanal)
        if message.business.get("aapningskvittering") is True:
            letter.opened_at = delivered + timedelta(seconds=self.options.open_delay_s)
            self._receipt(message, "aapningskvittering", letter.opened_at, identity, owner, kanal)
        self._notify(message, person, letter, owner, kanal)
        with self._lock:
            self._letters.setdefault(person.fnr, []).append(letter)

    @staticmethod
    def _check_addressee(opened: OpenedPackage, person: SandboxPerson) -> None:
        if opened.person and opened.person != person.fnr:
            raise PackageProblem("the manifest's personidentifikator is not the mailbox owner's")
        if opened.mailbox_address and opened.mailbox_address != person.mailbox_address:
            raise PackageProblem("the manifest's postkasseadresse is not the one the forretningsmelding names")

    def _notify(self, message: Forretningsmelding, person: SandboxPerson, letter: Letter, owner: str,
                kanal: str | None) -> None:
        varsler = message.business.get("varsler") or {}
        wanted = {"epost": varsler.get("epostvarsel"), "sms": varsler.get("smsvarsel")}
        if not any(wanted.values()):
            # No notification asked for: the mailbox notifies by the person's own KRR contact details.
            wanted = {"epost": {"epostadresse": person.email, "varslingstekst": "Du har fått ny digital post"}
                      if person.email else None}
        for channel, order in wanted.items():
            if not order:
                continue
            to = order.get("epostadresse" if channel == "epost" else "mobiltelefonnummer")
            if not person.notifiable or not to:
                why = ("mottaker kan ikke varsles (reservert mot varsling eller utdatert kontaktinformasjon)"
                       if not person.notifiable else f"ingen adresse for {channel}")
                self._receipt(message, "varslingfeiletkvittering", letter.delivered_at, self.mailbox_identity, owner,
                              kanal, varslingskanal=channel, beskrivelse=why)
                continue
            letter.notifications.append(Notification(channel, to, str(order.get("varslingstekst") or ""),
                                                     letter.delivered_at))

    def _print(self, message: Forretningsmelding, cms: Path, now: datetime) -> None:
        stored = self.store.message(message.message_id)
        owner, kanal = (stored.owner, stored.kanal) if stored else (message.sender, None)
        identity = self.print_identity
        folder = self.folder / "print" / message.message_id
        try:
            opened = open_dokumentpakke(cms, identity.private_key, identity.certificate, folder)
        except PackageProblem as exc:
            discard(folder)
            self._receipt(message, "feil", now, identity, owner, kanal, feiltype="KLIENT",
                          detaljer=f"Dokumentpakken kunne ikke tas imot for utskrift: {exc}")
            return
        address = dict(message.business.get("mottaker") or {})
        job = PrintJob(message.message_id, message.sender, address, dict(message.business.get("retur") or {}),
                       message.business.get("utskriftstype"), message.business.get("posttype"), opened.documents,
                       now)
        self._receipt(message, "mottakskvittering", now, identity, owner, kanal)
        self._receipt(message, "leveringskvittering", now + timedelta(seconds=self.options.print_delay_s), identity,
                      owner, kanal)
        person = self.directory.by_postal_address(str(address.get("navn", "")), str(address.get("adresselinje1", "")),
                                                  str(address.get("postnummer", "")))
        if person is not None and person.moved:
            job.returned = True
            self._receipt(message, "returpostkvittering", now + timedelta(seconds=self.options.return_delay_s),
                          identity, owner, kanal)
        with self._lock:
            self._print_jobs.append(job)


__all__ = ["Letter", "Notification", "PrintJob", "Providers"]
