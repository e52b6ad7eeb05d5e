"""An automatic peer: a fictional organisation on the sandbox network that receives over DPO and
answers like a real integration point would.

For every `arkivmelding` (or `avtalt`) sent to it, it downloads the package, decrypts and verifies
the ASiC-E, and answers the sender over DPO with `status` MOTTATT, `status` LEVERT and an
`arkivmelding_kvittering` OK; with `reply=True` also an `arkivmelding` reply in the same
conversation (a small PDF and its arkivmelding.xml, encrypted to the sender's certificate from the
service registry). It never answers a `status` or a receipt (receipt loops are a known bug class),
never answers a messageId twice (the ids it has handled are kept in SQLite in its work folder, so a
restart does not answer again), and answers nothing to a message that fails verification. One bad
message never stops the loop.

The peer talks to the sandbox through the same clients the daemon uses in production: TokenClient,
BrokerClient and ServiceRegistryClient, over HTTP on loopback.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import httpx
from cryptography import x509

from gateway.authorisation import Authorisation
from gateway.channels.dpo.client import BROKER_READ_SCOPE, BROKER_WRITE_SCOPE, DPO_RESOURCE_ID, BrokerClient
from gateway.channels.dpo.package import pack_message
from gateway.channels.dpo.unpack import open_package, open_payload
from gateway.clock import Clock, SystemClock
from gateway.errors import GatewayError, PermanentChannelError
from gateway.formats.arkivmelding import ArkivmeldingFile, build_arkivmelding, read_arkivmelding
from gateway.formats.asice import AsicContents, AsicDocument
from gateway.formats.keys import OrgIdentity, TrustStore
from gateway.formats.sbd import (
    RESPONSE_PROCESS,
    Arkivmelding,
    ArkivmeldingKvittering,
    StandardBusinessDocument,
    Status,
    new_sbd,
)
from gateway.maskinporten import GrantKey, Maskinporten, SystemUser, default_client_id, default_system_user_name
from gateway.outbound_http import default_tls_context
from gateway.routing.registry import ServiceRegistryClient
from gateway.sandbox.auth import sandbox_exchange_url
from gateway.trust.policy import SANDBOX_REGISTRY
from gateway.trust.registry import RegistrySigners

log = logging.getLogger(__name__)

ANSWERED_TYPES = ("arkivmelding", "avtalt")
RECORDED_TYPES = ("status", "arkivmelding_kvittering")
# A transfer whose answers keep failing for a passing reason is tried this many times, then given up.
MAX_ATTEMPTS = 5
# Answer messageIds derive from the original's, so a resend after a crash carries the same id.
_ANSWER_NAMESPACE = uuid.UUID("6f1c2a4e-2b1d-4a53-9d55-0c8f1e7a9b31")

# Outcomes of one received transfer, as PeerEvent.outcome.
ANSWERED = "answered"
DUPLICATE = "duplicate"
REJECTED = "rejected"
STATUS = "status"
RECEIPT = "receipt"
UNSUPPORTED = "unsupported"
UNREADABLE = "unreadable"
FAILED = "failed"


@dataclass(frozen=True)
class PeerEvent:
    """What the peer did with one received transfer."""

    transfer_id: str
    outcome: str  # answered, duplicate, rejected, status, receipt, unsupported, unreadable, failed
    message_id: str | None = None
    conversation_id: str | None = None
    sender: str | None = None
    message_type: str | None = None
    detail: str = ""  # the status value, the receipt type, or why the message was refused


@dataclass
class PeerCounters:
    polls: int = 0
    poll_errors: int = 0
    transfers: int = 0
    answered: int = 0
    duplicates: int = 0
    rejected: int = 0
    statuses: int = 0
    receipts: int = 0
    unsupported: int = 0
    unreadable: int = 0
    failed: int = 0
    messages_sent: int = 0


def answer_message_id(original_message_id: str, kind: str) -> str:
    """The messageId of the peer's `kind` answer (kvittering, reply) to a message: stable across restarts."""
    return str(uuid.uuid5(_ANSWER_NAMESPACE, f"{original_message_id}/{kind}"))


def small_pdf(text: str) -> bytes:
    """A valid one-page PDF showing one line of (ASCII) text."""
    safe = "".join(ch if 32 <= ord(ch) < 127 and ch not in "()\\" else "?" for ch in text)
    stream = f"BT /F1 14 Tf 72 760 Td ({safe}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode("ascii") + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode("ascii") + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode("ascii")
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode("ascii")
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode("ascii")
    return bytes(out)


class _SeenStore:
    """The messageIds the peer has finished with, and which answers it has sent for each (SQLite)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # survives a killed sandbox (WAL), not a power cut
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS handled (message_id TEXT PRIMARY KEY, sender TEXT, "
            "conversation_id TEXT, outcome TEXT NOT NULL, detail TEXT, at TEXT NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers (message_id TEXT NOT NULL, kind TEXT NOT NULL, "
            "answer_id TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (message_id, kind))"
        )
        self._lock = threading.Lock()

    def outcome(self, message_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT outcome FROM handled WHERE message_id = ?", (message_id,)).fetchone()
        return row[0] if row else None

    def finish(self, sbd: StandardBusinessDocument, outcome: str, detail: str, at: datetime) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO handled VALUES (?, ?, ?, ?, ?, ?)",
                (sbd.message_id, sbd.sender, sbd.conversation_id, outcome, detail, at.isoformat()),
            )

    def answers_sent(self, message_id: str) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT kind FROM answers WHERE message_id = ?", (message_id,)).fetchall()
        return {row[0] for row in rows}

    def answer_sent(self, message_id: str, kind: str, answer_id: str, at: datetime) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?)", (message_id, kind, answer_id, at.isoformat())
            )

    def answered_ids(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT message_id FROM handled WHERE outcome = ? ORDER BY rowid", (ANSWERED,)
            ).fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class AutomaticPeer:
    """A fictional receiver on the sandbox network; `start()` runs it in a background thread."""

    def __init__(
        self,
        orgnr: str,
        identity: OrgIdentity,
        trust: TrustStore,
        token_url: str,
        token_audience: str,
        broker_url: str,
        registry_url: str,
        work_dir: Path,
        reply: bool = False,
        poll_interval: float = 0.5,
        clock: Clock | None = None,
        name: str | None = None,
        system_user: bool = True,
        altinn_exchange_url: str | None = None,
    ) -> None:
        self.orgnr = orgnr
        self.name = name or f"Automatisk mottaker {orgnr}"
        self.identity = identity
        self.trust = trust
        self.reply = reply
        self.poll_interval = poll_interval
        self.clock = clock or SystemClock()
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._http = httpx.Client(timeout=60, verify=default_tls_context())
        # The peer authenticates as a real integration point does: Maskinporten for the registry, Altinn tokens
        # (exchanged) naming its system user for the broker, one per scope.
        maskinporten = Maskinporten(token_url, token_audience, default_client_id(orgnr),
                                    GrantKey(identity.private_key, certificate=identity.certificate), self._http,
                                    self.clock)
        auth = Authorisation(maskinporten, altinn_exchange_url or sandbox_exchange_url(token_url), self._http,
                             self.clock)
        user = SystemUser(orgnr, default_system_user_name(orgnr)) if system_user else None
        self._broker = BrokerClient(broker_url, auth.altinn((BROKER_READ_SCOPE,), user), self._http,
                                    write_tokens=auth.altinn((BROKER_WRITE_SCOPE,), user))
        self._registry = ServiceRegistryClient(registry_url, auth.maskinporten(("eformidling:dpo",)), self._http,
                                               clock=self.clock,
                                               signers=RegistrySigners(trust, SANDBOX_REGISTRY[0]))
        self._seen = _SeenStore(self.work_dir / "peer.sqlite")
        self._poll_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._events: list[PeerEvent] = []
        self._counters = PeerCounters()
        self._attempts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # ---- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"the automatic peer {self.orgnr} is already running")
        if self._closed:
            raise RuntimeError(f"the automatic peer {self.orgnr} was stopped; make a new one")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"efm-sandbox-peer-{self.orgnr}", daemon=True)
        self._thread.start()
        log.info("automatic peer %s (%s) polling every %.1f s", self.orgnr, self.name, self.poll_interval)

    def stop(self) -> None:
        """Stop polling, wait for the current round to end, close the HTTP client and the store."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        with self._poll_lock:
            if not self._closed:
                self._closed = True
                self._http.close()
                self._seen.close()

    def __enter__(self) -> AutomaticPeer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # the loop must outlive any one failure
                self._count("poll_errors")
                log.warning("automatic peer %s: polling the broker failed: %s", self.orgnr, exc)
            self._stop.wait(self.poll_interval)

    # ---- what tests and operators can see ---------------------------------------------------------

    def received_ids(self) -> list[str]:
        """messageIds of the messages this peer has accepted and answered (kept across restarts)."""
        return self._seen.answered_ids()

    def events(self) -> list[PeerEvent]:
        """What happened to each transfer received since this peer object was made, in order."""
        with self._state_lock:
            return list(self._events)

    def counters(self) -> PeerCounters:
        with self._state_lock:
            return PeerCounters(**asdict(self._counters))

    def _count(self, name: str, by: int = 1) -> None:
        with self._state_lock:
            setattr(self._counters, name, getattr(self._counters, name) + by)

    def _record(self, event: PeerEvent, counter: str) -> None:
        with self._state_lock:
            self._events.append(event)
            setattr(self._counters, counter, getattr(self._counters, counter) + 1)

    # ---- one round ----------------------------------------------------------------------------------

    def poll_once(self) -> int:
        """List the published transfers waiting for this peer (not the ones it sent) and handle each;
        returns how many were handled."""
        with self._poll_lock:
            if self._closed:
                return 0
            self._count("polls")
            handled = 0
            for transfer_id in self._broker.list_incoming(DPO_RESOURCE_ID):
                if self._stop.is_set() and self._thread is not None:
                    break
                try:
                    self._handle_transfer(transfer_id)
                    handled += 1
                except Exception as exc:  # one bad message never stops the rest
                    self._failed_attempt(transfer_id, exc)
            return handled

    def _failed_attempt(self, transfer_id: str, exc: Exception) -> None:
        """Leave the transfer for the next round, or after MAX_ATTEMPTS confirm it and give up."""
        attempts = self._attempts.get(transfer_id, 0) + 1
        self._attempts[transfer_id] = attempts
        reason = f"{type(exc).__name__}: {exc}"
        if attempts < MAX_ATTEMPTS:
            log.warning("automatic peer %s: transfer %s failed (attempt %d of %d), will retry: %s",
                        self.orgnr, transfer_id, attempts, MAX_ATTEMPTS, reason)
            self._count("poll_errors")
            return
        log.warning("automatic peer %s: transfer %s failed %d times; giving up on it: %s",
                    self.orgnr, transfer_id, attempts, reason)
        try:
            self._confirm(transfer_id)
        except Exception as confirm_exc:  # the broker may be the problem; the next round tries again
            log.warning("automatic peer %s: could not confirm transfer %s: %s", self.orgnr, transfer_id, confirm_exc)
            return
        self._record(PeerEvent(transfer_id, FAILED, detail=reason), "failed")

    def _handle_transfer(self, transfer_id: str) -> None:
        folder = self.work_dir / "incoming" / transfer_id
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        try:
            self._receive(transfer_id, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _confirm(self, transfer_id: str) -> None:
        self._broker.confirm_download(transfer_id, f"0192:{self.orgnr}")
        self._attempts.pop(transfer_id, None)

    def _receive(self, transfer_id: str, folder: Path) -> None:
        download = folder / "sbd.zip"
        with open(download, "wb") as target:
            self._broker.download(transfer_id, target)
        self._count("transfers")
        try:
            received = open_package(download, folder / "package")
        except OSError:
            raise  # our disk, not the message: try again next round
        except Exception as exc:  # whatever the sender put on the wire, it is refused, not retried
            log.warning("automatic peer %s: transfer %s is not a readable eFormidling package: %s",
                        self.orgnr, transfer_id, exc)
            self._confirm(transfer_id)
            self._record(PeerEvent(transfer_id, UNREADABLE, detail=str(exc)), "unreadable")
            return
        sbd = received.sbd
        event = {
            "transfer_id": transfer_id,
            "message_id": sbd.message_id,
            "conversation_id": sbd.conversation_id,
            "sender": sbd.sender,
            "message_type": sbd.message_type,
        }
        if sbd.receiver != self.orgnr:
            log.warning("automatic peer %s: message %s is addressed to %s, not to us; ignored",
                        self.orgnr, sbd.message_id, sbd.receiver)
            self._confirm(transfer_id)
            self._record(PeerEvent(**event, outcome=UNSUPPORTED, detail=f"addressed to {sbd.receiver}"),
                         "unsupported")
            return
        if sbd.message_type in RECORDED_TYPES:
            # Never answered: a status or receipt that triggers another is how receipt loops start.
            message = sbd.business_message
            detail = message.status if isinstance(message, Status) else getattr(message, "receipt_type", "")
            log.info("automatic peer %s: %s %s for message %s from %s", self.orgnr, sbd.message_type, detail,
                     sbd.message_id, sbd.sender)
            self._confirm(transfer_id)
            if sbd.message_type == "status":
                self._record(PeerEvent(**event, outcome=STATUS, detail=detail), "statuses")
            else:
                self._record(PeerEvent(**event, outcome=RECEIPT, detail=detail), "receipts")
            return
        if sbd.message_type not in ANSWERED_TYPES:
            log.info("automatic peer %s: message %s is a %s, which this peer does not handle; not answered",
                     self.orgnr, sbd.message_id, sbd.message_type)
            self._confirm(transfer_id)
            self._record(PeerEvent(**event, outcome=UNSUPPORTED, detail=sbd.message_type), "unsupported")
            return
        previous = self._seen.outcome(sbd.message_id)
        if previous is not None:
            log.info("automatic peer %s: message %s was received before (%s); not answered again",
                     self.orgnr, sbd.message_id, previous)
            self._confirm(transfer_id)
            self._record(PeerEvent(**event, outcome=DUPLICATE, detail=previous), "duplicates")
            return
        title: str | None = None
        if received.encrypted_asic is not None or sbd.message_type == "arkivmelding":
            try:
                contents = open_payload(received, folder / "work", folder / "files", self.identity, self.trust,
                                        at=self.clock.now())
            except OSError:
                raise  # our disk, not the message: try again next round
            except Exception as exc:  # SecurityError, CryptoError, MessageFormatError, or a corrupt deflate stream
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("automatic peer %s: message %s from %s failed verification and is not answered: %s",
                            self.orgnr, sbd.message_id, sbd.sender, reason)
                self._seen.finish(sbd, REJECTED, reason, self.clock.now())
                self._confirm(transfer_id)
                self._record(PeerEvent(**event, outcome=REJECTED, detail=reason), "rejected")
                return
            title = _title_of(contents)
        try:
            self._answer(sbd, title)
        except PermanentChannelError as exc:  # passing trouble propagates: poll_once retries the transfer
            log.warning("automatic peer %s: answering message %s failed; giving up: %s",
                        self.orgnr, sbd.message_id, exc)
            self._seen.finish(sbd, FAILED, str(exc), self.clock.now())
            self._confirm(transfer_id)
            self._record(PeerEvent(**event, outcome=FAILED, detail=str(exc)), "failed")
            return
        self._seen.finish(sbd, ANSWERED, "", self.clock.now())
        self._confirm(transfer_id)
        log.info("automatic peer %s: answered message %s from %s", self.orgnr, sbd.message_id, sbd.sender)
        self._record(PeerEvent(**event, outcome=ANSWERED), "answered")

    # ---- answers -----------------------------------------------------------------------------------

    def _answer(self, original: StandardBusinessDocument, title: str | None) -> None:
        done = self._seen.answers_sent(original.message_id)
        plan: list[tuple[str, str]] = [("mottatt", "MOTTATT"), ("levert", "LEVERT"), ("kvittering", "OK")]
        if self.reply:
            plan.append(("reply", ""))
        for kind, value in plan:
            if kind in done:
                continue
            now = self.clock.now()
            documents: Sequence[AsicDocument] = ()
            certificate: x509.Certificate | None = None
            outgoing = self.work_dir / "outgoing" / f"{original.message_id}-{kind}"
            if kind in ("mottatt", "levert"):
                answer = new_sbd(
                    sender=self.orgnr, receiver=original.sender, business_message=Status(status=value),
                    process=original.process, created=now, conversation_id=original.conversation_id,
                    message_id=original.message_id,
                )
            elif kind == "kvittering":
                answer = new_sbd(
                    sender=self.orgnr, receiver=original.sender,
                    business_message=ArkivmeldingKvittering(receipt_type="OK",
                                                            related_to_message_id=original.message_id),
                    process=RESPONSE_PROCESS, created=now, conversation_id=original.conversation_id,
                    message_id=answer_message_id(original.message_id, kind),
                )
            else:
                answer, documents = self._reply(original, title, now, outgoing / "documents")
                certificate = self._certificate_of(original.sender)
            package = pack_message(answer, documents, self.identity, certificate, outgoing)
            transfer_id = self._broker.initialise(
                DPO_RESOURCE_ID, f"0192:{self.orgnr}", f"0192:{original.sender}", "sbd.zip", answer.message_id
            )
            self._broker.upload(transfer_id, package)
            self._seen.answer_sent(original.message_id, kind, answer.message_id, now)
            self._count("messages_sent")
            shutil.rmtree(outgoing, ignore_errors=True)
            log.info("automatic peer %s: sent %s %s for message %s to %s", self.orgnr, answer.message_type,
                     value or answer.message_id, original.message_id, original.sender)

    def _reply(
        self, original: StandardBusinessDocument, title: str | None, now: datetime, folder: Path
    ) -> tuple[StandardBusinessDocument, list[AsicDocument]]:
        reply_id = answer_message_id(original.message_id, "reply")
        reply_title = f"Svar på: {title}" if title else f"Svar på melding {original.message_id}"
        folder.mkdir(parents=True, exist_ok=True)
        pdf = folder / "svar.pdf"
        pdf.write_bytes(small_pdf(f"Automatic reply from {self.orgnr} to message {original.message_id}"))
        xml = folder / "arkivmelding.xml"
        xml.write_bytes(build_arkivmelding(
            title=reply_title, files=[ArkivmeldingFile("svar.pdf", reply_title, main=True)], created=now,
            system_name="efm-gateway sandbox peer", sender_name=self.name, message_id=reply_id,
        ))
        level = getattr(original.business_message, "sikkerhetsnivaa", None)
        sbd = new_sbd(
            sender=self.orgnr, receiver=original.sender,
            business_message=Arkivmelding(sikkerhetsnivaa=level, hoveddokument="svar.pdf"),
            process=RESPONSE_PROCESS, created=now, conversation_id=original.conversation_id, message_id=reply_id,
        )
        documents = [AsicDocument("svar.pdf", pdf, "application/pdf"),
                     AsicDocument("arkivmelding.xml", xml, "application/xml")]
        return sbd, documents

    def _certificate_of(self, orgnr: str) -> x509.Certificate:
        answer = self._registry.lookup(orgnr, RESPONSE_PROCESS)
        for record in answer.service_records:
            if record.service == "DPO" and record.certificate_pem:
                return x509.load_pem_x509_certificate(record.certificate_pem.encode("ascii"))
        raise PermanentChannelError(
            f"the service registry has no DPO record with a certificate for {orgnr} on {RESPONSE_PROCESS}; "
            "cannot encrypt a reply to it"
        )


def _title_of(contents: AsicContents) -> str | None:
    for item in contents.files:
        if item.name == "arkivmelding.xml":
            try:
                info = read_arkivmelding(item.path.read_bytes())
            except GatewayError:
                return None
            return info.offentlig_tittel or info.title
    return None


__all__ = [
    "AutomaticPeer",
    "PeerCounters",
    "PeerEvent",
    "answer_message_id",
    "small_pdf",
]
