"""DPF: a message to a municipality as a KS SvarUt forsendelse; messages from municipalities through
SvarInn. Two-way; statuses by polling SvarUt's status search.

Sending: each document is encrypted (CMS) to KS's certificate from the service record and posted
with the forsendelse in one multipart request. SvarUt makes the forsendelseId, so a send cut off
after the post is found again by its `eksternReferanse` (the messageId) before anything is posted
twice. Receiving: SvarInn lists what waits; each forsendelse is downloaded, decrypted with our key
and handed over, then acknowledged (kvitterMottak), or refused (mottakFeilet, permanent) when it
cannot be read. SvarInn's acknowledgement is the only answer a sender gets: no status messages.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from cryptography import x509

from gateway.channels.base import (
    Capabilities,
    InboundMessage,
    OutgoingMessage,
    Package,
    SentMessage,
    StatusUpdate,
)
from gateway.channels.dpf.client import (
    MAX_IDS_PER_STATUS_SEARCH,
    ForsendelseNotFound,
    SvarInnClient,
    SvarUtClient,
    UploadDocument,
)
from gateway.channels.dpf.forsendelse import forsendelse_for, updates_for_state
from gateway.channels.dpf.inbound import (
    MAX_TOTAL_BYTES,
    extract_forsendelse,
    file_name_problem,
    sbd_of,
    stated_sender,
)
from gateway.channels.records import ServiceRecord
from gateway.clock import Clock
from gateway.errors import MessageFormatError, PermanentChannelError
from gateway.formats.asice import AsicContents
from gateway.formats.cms import encrypt_file, encrypt_stream
from gateway.formats.keys import OrgIdentity
from gateway.formats.sbd import StandardBusinessDocument
from gateway.trust.receivers import ReceiverTrust
from gateway.trust.store import TrustStore

DPF_MAX_BYTES = 1_000_000_000
ARKIVMELDING_NAME = "arkivmelding.xml"
IN_MEMORY_LIMIT = 4 << 20  # a document up to this size is encrypted in memory

DPF_CAPABILITIES = Capabilities(
    two_way=True,
    statuses_by_polling=True,
    receipt_types=frozenset({"arkivmelding"}),  # LEST: the municipality's archive took it (SvarUt's LEST)
    max_bytes=DPF_MAX_BYTES,
    security_levels=frozenset({3, 4}),
    message_types=frozenset({"arkivmelding"}),
    carries_status_messages=False,
    signs_payloads=False,  # a forsendelse carries no sender's signature; SvarInn (KS) vouches for the sender
    statuses_per_request=MAX_IDS_PER_STATUS_SEARCH,
)


@dataclass(frozen=True)
class PreparedForsendelse:
    forsendelse: dict[str, Any]
    documents: tuple[UploadDocument, ...]


def deleted_at_svarut(reference: str, why: str) -> str:
    """ANNET's words for a forsendelse SvarUt no longer has."""
    return (f"deleted at the provider: SvarUt no longer has forsendelse {reference} ({why}; nor is it found by "
            "the message's id); no further status can come, so the gateway has stopped asking for it")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


class DpfChannel:
    name = "DPF"
    capabilities = DPF_CAPABILITIES

    def __init__(
        self,
        svarut: SvarUtClient,
        svarinn: SvarInnClient | None,
        identity: OrgIdentity,
        clock: Clock,
        sender_name: str = "",
        receivers: ReceiverTrust | None = None,
        trust: TrustStore | None = None,
    ) -> None:
        self.svarut = svarut
        self.svarinn = svarinn
        self.identity = identity
        self.clock = clock
        self.sender_name = sender_name
        # The certificate documents are encrypted to must be KS SvarUt's; `trust` alone: any trusted one.
        self.receivers = receivers or (ReceiverTrust(trust) if trust is not None else None)
        self._listed: dict[str, dict[str, Any]] = {}  # forsendelseId -> its SvarInn metadata
        self._lock = threading.Lock()

    # ---- sending ---------------------------------------------------------------------------------
    def validate(self, message: OutgoingMessage, service: ServiceRecord | None) -> list[str]:
        problems = []
        message_type = message.sbd.message_type
        if message_type not in DPF_CAPABILITIES.message_types:
            problems.append(f"DPF (SvarUt) does not carry {message_type} messages")
        documents = [d for d in message.documents if d.name != ARKIVMELDING_NAME]
        if message_type == "arkivmelding" and not documents:
            problems.append("a DPF message (a SvarUt forsendelse) needs at least one document besides the arkivmelding")
        for document in documents:
            problem = file_name_problem(document.name)
            if problem:
                problems.append(f"{document.name}: SvarUt refuses it: {problem}")
        total = sum(d.size() for d in documents)
        if total > DPF_MAX_BYTES:
            problems.append(f"the documents add up to {total} bytes, more than the {DPF_MAX_BYTES} DPF carries; "
                            "split the message")
        if service is None or not service.certificate_pem:
            problems.append("the service registry's DPF record gives no certificate (KS SvarUt's) to encrypt the "
                            "documents to")
        return problems

    def prepare(self, message: OutgoingMessage, service: ServiceRecord | None, work: Path) -> Package:
        assert service is not None and service.certificate_pem
        note = ""
        if self.receivers is not None:
            # Chain, validity, revocation, key usage, and that it is KS's: checked before a byte is encrypted.
            checked = self.receivers.check(message.sbd.receiver, service.certificate_pem, dpf=True)
            ks_certificate, note = checked.certificate, checked.note
        else:
            ks_certificate = x509.load_pem_x509_certificate(service.certificate_pem.encode())
        documents = [d for d in message.documents if d.name != ARKIVMELDING_NAME]
        uploads = []
        for index, document in enumerate(documents):
            if isinstance(document.source, bytes) or document.size() <= IN_MEMORY_LIMIT:
                plain = document.source if isinstance(document.source, bytes) else document.source.read_bytes()
                envelope = io.BytesIO()
                encrypt_stream(io.BytesIO(plain), envelope, ks_certificate)
                uploads.append(UploadDocument(document.name, envelope.getvalue()))
            else:
                work.mkdir(parents=True, exist_ok=True)
                encrypted = work / f"dokument-{index}.cms"
                encrypt_file(document.source, encrypted, ks_certificate)
                uploads.append(UploadDocument(document.name, encrypted))
        title = message.title or (documents[0].name if documents else "Melding")
        forsendelse = forsendelse_for(message.sbd, title, [(d.name, d.mime_type) for d in documents],
                                      self.sender_name, service.organisation_name)
        content = PreparedForsendelse(forsendelse, tuple(uploads))
        return Package(message.sbd.message_id, message.sbd.sender, message.sbd.receiver, content, note=note)

    def describe(self, package: Package) -> str:
        content = package.content
        words = "SvarUt forsendelse"
        if isinstance(content, PreparedForsendelse) and content.forsendelse.get("krevNiva4Innlogging"):
            words = "SvarUt forsendelse at security level 4"
        return f"{words}; {package.note}" if package.note else words

    def send(self, package: Package, reference: str | None, on_reference: Callable[[str], None]) -> str:
        if reference is not None:
            return reference  # journaled only once SvarUt had made the forsendelse
        # An earlier attempt may have been cut off after SvarUt took it and before its id was journaled.
        earlier = self.svarut.find_by_external_reference(package.message_id)
        if earlier:
            on_reference(earlier[0])
            return earlier[0]
        content: PreparedForsendelse = package.content
        forsendelse_id = self.svarut.send(content.forsendelse, content.documents)
        on_reference(forsendelse_id)
        return forsendelse_id

    def already_sent(self, reference: str) -> bool:
        return True  # a DPF reference is journaled only once its forsendelse exists

    # ---- statuses --------------------------------------------------------------------------------
    def poll_statuses(self, sent: Sequence[SentMessage]) -> list[StatusUpdate]:
        """The statuses of `sent`; a forsendelse SvarUt no longer has ends its message's polling (ANNET).

        A status search answered 404 or 410 is asked again in halves, down to each forsendelse alone, to find
        which SvarUt no longer has; one is called deleted only when the account, asked for the message's
        ekstern referanse, answers without it. A wrong account (every search 404, and the look-up too) is
        then an error of the round, never every message "deleted". An id the search merely leaves out (one
        of another account, after the account changed) is no news, and is asked for again.
        """
        by_reference = {message.reference: message.message_id for message in sent}
        updates: list[StatusUpdate] = []
        entries, not_found = self._search(list(by_reference))
        for entry in entries:
            reference = str(entry.get("id"))
            message_id = by_reference.get(reference)
            if message_id is None:
                continue
            changed = _parse_time(entry.get("sisteStatusEndring"))
            for update in updates_for_state(str(entry.get("status")), reference, changed):
                updates.append(StatusUpdate(message_id, update.status, update.stamped_at, update.description))
        for reference, why in not_found.items():
            message_id = by_reference[reference]
            if self._gone(reference, message_id):
                updates.append(StatusUpdate(message_id, "ANNET", None, deleted_at_svarut(reference, why),
                                            ends_polling=True))
        return updates

    def _search(self, references: list[str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The status search's entries for `references`, and the references SvarUt answered 404 or 410 for
        when asked for them alone (with its words). A batch answered so is asked in halves, down to each
        reference alone, to find which it is."""
        try:
            return self.svarut.status_search(references), {}
        except ForsendelseNotFound as exc:
            if len(references) == 1:
                return [], {references[0]: str(exc)}
        middle = len(references) // 2
        first_entries, first_missing = self._search(references[:middle])
        second_entries, second_missing = self._search(references[middle:])
        return first_entries + second_entries, first_missing | second_missing

    def _gone(self, reference: str, message_id: str) -> bool:
        """Whether SvarUt, asked for the forsendelser sent under `message_id` (our eksternReferanse), answers
        without `reference`: then it no longer has it. An error here (a wrong account too) fails the round."""
        return reference not in self.svarut.find_by_external_reference(message_id)

    # ---- receiving -------------------------------------------------------------------------------
    def list_inbound(self) -> list[str]:
        if self.svarinn is None:
            return []
        listed = self.svarinn.new_forsendelser()
        with self._lock:
            for forsendelse in listed:
                if isinstance(forsendelse.get("id"), str):
                    self._listed[forsendelse["id"]] = forsendelse
        return [str(forsendelse["id"]) for forsendelse in listed if isinstance(forsendelse.get("id"), str)]

    def _metadata(self, reference: str) -> dict[str, Any]:
        with self._lock:
            found = self._listed.get(reference)
        if found is None:
            self.list_inbound()
            with self._lock:
                found = self._listed.get(reference)
        if found is None:
            raise MessageFormatError(f"SvarInn no longer lists forsendelse {reference}")
        return found

    def fetch_inbound(self, reference: str, target: BinaryIO) -> int:
        if self.svarinn is None:
            raise PermanentChannelError("DPF receiving is not configured (channels.dpf.svarinn_url)")
        return self.svarinn.download(reference, target, max_bytes=MAX_TOTAL_BYTES)

    def open_inbound(self, reference: str, download: BinaryIO, work: Path) -> InboundMessage:
        forsendelse = self._metadata(reference)
        sbd = sbd_of(forsendelse, self.identity.orgnr, self.clock.now())

        def extract(target: Path, durable: bool) -> AsicContents:
            return extract_forsendelse(forsendelse, sbd, download, self.identity, work, target, durable)

        stated = stated_sender(forsendelse)
        # SvarInn names no sending organisation of its own: the transport vouches for no sender (see inbound.py).
        return InboundMessage(sbd, extract, transport_sender=None,
                              sender_unverified=stated.words() if stated else "")

    def acknowledge_inbound(self, reference: str) -> None:
        assert self.svarinn is not None
        self.svarinn.acknowledge(reference)
        with self._lock:
            self._listed.pop(reference, None)

    def reject_inbound(self, reference: str, reason: str) -> None:
        assert self.svarinn is not None
        # Permanent: we will never be able to take it, so SvarUt should send it on by another way.
        self.svarinn.reject(reference, reason, permanent=True)
        with self._lock:
            self._listed.pop(reference, None)

    def send_status(self, sbd: StandardBusinessDocument) -> None:
        raise PermanentChannelError("DPF carries no status messages; SvarInn's kvitterMottak answers the sender")
