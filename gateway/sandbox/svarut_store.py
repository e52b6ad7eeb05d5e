"""The sandbox SvarUt/SvarInn's state: accounts, receiving systems and forsendelser, in memory.

A forsendelse is taken (documents decrypted with KS's key, checked against its metadata), made ready
for its receiver's SvarInn (one file, or a zip of several, encrypted to the receiving system's
certificate) and then moves MOTTATT → AKSEPTERT → KLAR_FOR_MOTTAK at once; kvitterMottak makes it
LEST, a permanent mottakFeilet IKKE_LEVERT. A receiver without a receiving system, or one below the
forsendelse's security level, makes it AVVIST. State lives as long as the sandbox process; the files
sit under `<data>/svarut/`. Credentials are derived from the organisation numbers: sandbox only.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from gateway.clock import Clock
from gateway.errors import CryptoError
from gateway.formats.cms import decrypt_stream, encrypt_stream
from gateway.formats.keys import OrgIdentity

_NAMESPACE = uuid.UUID("0b7e2a52-5c1f-4b8e-9a3d-6d2f8c1e4a77")


def account_id_for(orgnr: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"konto:{orgnr}"))


def integration_id_for(orgnr: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"integrasjon:{orgnr}"))


def password_for(orgnr: str, what: str) -> str:
    return hashlib.sha256(f"efm-gateway sandbox {what} {orgnr}".encode()).hexdigest()[:24]


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Party:
    orgnr: str
    name: str
    certificate: x509.Certificate  # the receiving system's public key for SvarInn downloads
    level: int = 4  # the highest security level its receiving system takes


@dataclass
class StoredFile:
    name: str
    mime_type: str
    path: Path
    sha256: str
    size: int


@dataclass
class StoredForsendelse:
    id: str
    sender: str
    receiver: str
    forsendelse: dict[str, Any]
    files: list[StoredFile]
    created: datetime
    status: str = "MOTTATT"
    changed: datetime | None = None
    history: list[tuple[str, datetime]] = field(default_factory=list)
    download: Path | None = None
    failure: str | None = None
    acknowledged_at: datetime | None = None


class SvarUtStore:
    def __init__(self, folder: Path, ks: OrgIdentity, parties: dict[str, Party], clock: Clock) -> None:
        self.folder = folder
        self.ks = ks
        self.parties = parties
        self.clock = clock
        self.forsendelser: dict[str, StoredForsendelse] = {}
        self.counters: dict[str, int] = {"status_sok_requests": 0, "status_sok_ids": 0, "sent": 0,
                                         "acknowledged": 0, "failed": 0, "downloads": 0}
        self._lock = threading.Lock()
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)

    # ---- who may do what ----------------------------------------------------------------------
    def account_owner(self, account_id: str, integration_id: str | None, password: str | None) -> str:
        for orgnr in self.parties:
            if account_id_for(orgnr) == account_id:
                if integration_id != integration_id_for(orgnr) or password != password_for(orgnr, "integrasjon"):
                    raise Refused(401, "IntegrasjonId or IntegrasjonPassord is wrong for this account")
                return orgnr
        raise Refused(404, f"no SvarUt account {account_id}")

    def receiving_system(self, username: str, password: str) -> str:
        if username in self.parties and password == password_for(username, "svarinn"):
            return username
        raise Refused(401, "wrong user name or service password for SvarInn")

    # ---- SvarUt ---------------------------------------------------------------------------------
    def accept(self, sender: str, forsendelse: dict[str, Any], parts: list[tuple[str, bytes]]) -> str:
        """Take a sent forsendelse; `parts` are (file name, bytes) in the order sent. Returns its id."""
        documents = forsendelse.get("dokumenter")
        if not isinstance(forsendelse.get("tittel"), str) or not forsendelse["tittel"]:
            raise Refused(400, "tittel is required")
        receiver = (forsendelse.get("mottaker") or {}).get("digitalId")
        if not isinstance(receiver, str):
            raise Refused(400, "mottaker.digitalId is required for a digital-only forsendelse")
        if not isinstance(documents, list) or not documents:
            raise Refused(400, "a forsendelse needs at least one document (dokumenter)")
        names = [d.get("filnavn") for d in documents if isinstance(d, dict)]
        if names != [name for name, _ in parts]:
            raise Refused(400, f"the file parts {[n for n, _ in parts]} do not match dokumenter {names}")
        if len(set(names)) != len(names):
            raise Refused(400, "filnavn must be unique in a forsendelse")
        forsendelse_id = str(uuid.uuid4())
        now = self.clock.now()
        folder = self.folder / forsendelse_id
        folder.mkdir()
        files = []
        for document, (name, content) in zip(documents, parts, strict=True):
            if forsendelse.get("kryptert"):
                plain = io.BytesIO()
                try:
                    decrypt_stream(io.BytesIO(content), plain, self.ks.private_key, self.ks.certificate)
                except CryptoError as exc:
                    raise Refused(400, f"{name} could not be decrypted with SvarUt's key: {exc}") from None
                content = plain.getvalue()
            path = folder / f"{len(files)}.doc"
            path.write_bytes(content)
            files.append(StoredFile(name, str(document.get("mimeType") or "application/octet-stream"), path,
                                    hashlib.sha256(content).hexdigest(), len(content)))
        stored = StoredForsendelse(forsendelse_id, sender, receiver, forsendelse, files, now)
        self._move(stored, "MOTTATT")
        self._move(stored, "AKSEPTERT")
        party = self.parties.get(receiver)
        level = 4 if forsendelse.get("krevNiva4Innlogging") else 3
        if party is None:
            stored.failure = f"{receiver} has no SvarInn receiving system in the sandbox"
            self._move(stored, "AVVIST")
        elif party.level < level:
            stored.failure = f"{receiver}'s receiving system takes security level {party.level}, not {level}"
            self._move(stored, "AVVIST")
        else:
            stored.download = self._download_file(stored, party.certificate)
            self._move(stored, "KLAR_FOR_MOTTAK")
        with self._lock:
            self.forsendelser[forsendelse_id] = stored
            self.counters["sent"] += 1
        return forsendelse_id

    def _download_file(self, stored: StoredForsendelse, certificate: x509.Certificate) -> Path:
        if len(stored.files) == 1:
            plain = stored.files[0].path.read_bytes()
        else:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for stored_file in stored.files:
                    archive.write(stored_file.path, stored_file.name)
            plain = buffer.getvalue()
        return self._encrypted(stored, plain, certificate)

    def _encrypted(self, stored: StoredForsendelse, plain: bytes, certificate: x509.Certificate) -> Path:
        target = self.folder / stored.id / "download.cms"
        with open(target, "wb") as handle:
            encrypt_stream(io.BytesIO(plain), handle, certificate)
        return target

    def _move(self, stored: StoredForsendelse, status: str) -> None:
        now = self.clock.now()
        stored.status, stored.changed = status, now
        stored.history.append((status, now))

    def delete(self, forsendelse_id: str) -> bool:
        """Forget a forsendelse, as SvarUt does once it is deleted there: no status search or look-up finds it."""
        with self._lock:
            stored = self.forsendelser.pop(forsendelse_id, None)
        if stored is None:
            return False
        shutil.rmtree(self.folder / stored.id, ignore_errors=True)  # a known id only: never a path from outside
        return True

    def by_external_reference(self, sender: str, reference: str) -> list[str]:
        with self._lock:
            return [f.id for f in self.forsendelser.values()
                    if f.sender == sender and f.forsendelse.get("eksternReferanse") == reference]

    def statuses(self, sender: str, ids: list[str]) -> list[dict[str, Any]]:
        with self._lock:
            self.counters["status_sok_requests"] += 1
            self.counters["status_sok_ids"] += len(ids)
            found = [self.forsendelser.get(i) for i in ids]
        return [
            {"id": f.id, "status": f.status, "sisteStatusEndring": (f.changed or f.created).isoformat()}
            for f in found if f is not None and f.sender == sender
        ]

    # ---- SvarInn --------------------------------------------------------------------------------
    def waiting_for(self, receiver: str, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            waiting = [f for f in self.forsendelser.values()
                       if f.receiver == receiver and f.status == "KLAR_FOR_MOTTAK"]
        return [self.svarinn_view(f) for f in sorted(waiting, key=lambda f: f.created)[:limit]]

    def svarinn_view(self, stored: StoredForsendelse) -> dict[str, Any]:
        """A forsendelse as hentNyeForsendelser shows it."""
        sent = stored.forsendelse
        sender = self.parties.get(stored.sender)
        reply_to = sent.get("svarSendesTil") or {}
        return {
            "id": stored.id,
            "tittel": sent.get("tittel"),
            "date": int(stored.created.timestamp() * 1000),
            "avsender": {"navn": sender.name if sender else stored.sender},
            "mottaker": {"navn": (sent.get("mottaker") or {}).get("navn"), "orgnr": stored.receiver},
            "svarSendesTil": {"navn": reply_to.get("navn"), "orgnr": reply_to.get("digitalId")} if reply_to else None,
            "svarPaForsendelse": sent.get("svarPaForsendelse"),
            "forsendelseType": sent.get("forsendelsestype"),
            "eksternRef": sent.get("eksternReferanse"),
            "metadataFraAvleverendeSystem": sent.get("metadataFraAvleverendeSystem") or {},
            "metadataForImport": sent.get("metadataForImport") or {},
            "status": "Akseptert",
            "niva": "4" if sent.get("krevNiva4Innlogging") else "3",
            "filmetadata": [
                {"filnavn": f.name, "mimetype": f.mime_type, "sha256hash": f.sha256, "dokumentType": None,
                 "size": f.size}
                for f in stored.files
            ],
            "downloadUrl": f"/tjenester/svarinn/forsendelse/{stored.id}",
        }

    def download_of(self, receiver: str, forsendelse_id: str) -> Path:
        with self._lock:
            stored = self.forsendelser.get(forsendelse_id)
            if stored is None or stored.receiver != receiver or stored.download is None:
                raise Refused(404, f"no forsendelse {forsendelse_id} for this receiving system")
            self.counters["downloads"] += 1
            return stored.download

    def acknowledge(self, receiver: str, forsendelse_id: str) -> None:
        with self._lock:
            stored = self._receivers_own(receiver, forsendelse_id)
            if stored.status != "LEST":
                stored.acknowledged_at = self.clock.now()
                self._move(stored, "LEST")
                self.counters["acknowledged"] += 1

    def failed(self, receiver: str, forsendelse_id: str, reason: str, permanent: bool) -> None:
        with self._lock:
            stored = self._receivers_own(receiver, forsendelse_id)
            stored.failure = reason
            self.counters["failed"] += 1
            if permanent and stored.status == "KLAR_FOR_MOTTAK":
                self._move(stored, "IKKE_LEVERT")

    def _receivers_own(self, receiver: str, forsendelse_id: str) -> StoredForsendelse:
        stored = self.forsendelser.get(forsendelse_id)
        if stored is None or stored.receiver != receiver:
            raise Refused(404, f"no forsendelse {forsendelse_id} for this receiving system")
        return stored

    # ---- sandbox extras -------------------------------------------------------------------------
    def inject(self, sender: str, receiver: str, kind: str, title: str = "Feil forsendelse") -> str:
        """A hostile or broken forsendelse for `receiver`'s SvarInn: wrong_key, bad_zip or dotdot."""
        party = self.parties.get(receiver)
        if party is None:
            raise Refused(404, f"{receiver} has no receiving system")
        forsendelse_id = str(uuid.uuid4())
        folder = self.folder / forsendelse_id
        folder.mkdir()
        now = self.clock.now()
        names = {"wrong_key": ["brev.pdf"], "bad_zip": ["a.pdf", "b.pdf"], "dotdot": ["a.pdf", "../evil.pdf"]}
        if kind not in names:
            raise Refused(400, f"unknown kind {kind!r}; use wrong_key, bad_zip or dotdot")
        files = []
        for index, name in enumerate(names[kind]):
            path = folder / f"{index}.doc"
            path.write_bytes(b"%PDF-1.4 sandbox\n")
            files.append(StoredFile(name, "application/pdf", path, hashlib.sha256(path.read_bytes()).hexdigest(),
                                    path.stat().st_size))
        stored = StoredForsendelse(forsendelse_id, sender, receiver, {
            "tittel": title, "svarSendesTil": {"navn": sender, "digitalId": sender},
        }, files, now)
        if kind == "wrong_key":
            stranger = self.ks.certificate  # encrypted to someone else's key
            stored.download = self._encrypted(stored, files[0].path.read_bytes(), stranger)
        elif kind == "bad_zip":
            stored.download = self._encrypted(stored, b"PK\x03\x04 this is not a zip", party.certificate)
        else:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                for stored_file in files:
                    archive.writestr(stored_file.name, stored_file.path.read_bytes())
            stored.download = self._encrypted(stored, buffer.getvalue(), party.certificate)
        self._move(stored, "MOTTATT")
        self._move(stored, "KLAR_FOR_MOTTAK")
        with self._lock:
            self.forsendelser[forsendelse_id] = stored
        return forsendelse_id

    def send_as(self, sender: str, receiver: str, title: str, message_id: str, conversation_id: str) -> str:
        """A forsendelse from `sender` (a municipality's archive) to `receiver`'s SvarInn, with our ids."""
        forsendelse = {
            "tittel": title, "mottaker": {"navn": receiver, "digitalId": receiver},
            "svarSendesTil": {"navn": sender, "digitalId": sender}, "kunDigitalLevering": True,
            "eksternReferanse": message_id, "metadataFraAvleverendeSystem": {"ekstraMetadata": [
                {"key": "eformidling.messageId", "value": message_id},
                {"key": "eformidling.conversationId", "value": conversation_id}]},
            "dokumenter": [{"filnavn": "brev.pdf", "mimeType": "application/pdf"}],
        }
        return self.accept(sender, forsendelse, [("brev.pdf", f"%PDF-1.4 {title}\n".encode())])

    def seed(self, sender: str, states: list[str]) -> list[str]:
        """Forsendelser from `sender` already in `states` (one each), without documents: for status tests."""
        now = self.clock.now()
        made = []
        with self._lock:
            for state in states:
                stored = StoredForsendelse(str(uuid.uuid4()), sender, "", {"tittel": "seeded"}, [], now)
                stored.status, stored.changed = state, now
                stored.history.append((state, now))
                self.forsendelser[stored.id] = stored
                made.append(stored.id)
        return made

    def summary(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"id": f.id, "sender": f.sender, "receiver": f.receiver, "status": f.status,
                 "eksternReferanse": f.forsendelse.get("eksternReferanse"), "tittel": f.forsendelse.get("tittel"),
                 "forsendelsestype": f.forsendelse.get("forsendelsestype"),
                 "mottaker": (f.forsendelse.get("mottaker") or {}).get("navn"),
                 "svarSendesTil": (f.forsendelse.get("svarSendesTil") or {}).get("navn"),
                 "krevNiva4Innlogging": bool(f.forsendelse.get("krevNiva4Innlogging")),
                 "failure": f.failure, "history": [s for s, _ in f.history],
                 "acknowledged_at": f.acknowledged_at.isoformat() if f.acknowledged_at else None,
                 "files": [{"name": x.name, "sha256": x.sha256, "size": x.size} for x in f.files]}
                for f in self.forsendelser.values()
            ]

    def plain_files(self, forsendelse_id: str) -> dict[str, bytes]:
        with self._lock:
            stored = self.forsendelser[forsendelse_id]
        return {f.name: f.path.read_bytes() for f in stored.files}
