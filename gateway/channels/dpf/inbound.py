"""A forsendelse from SvarInn, opened: the SBD we make of its metadata, and its documents decrypted.

SvarInn gives one file per forsendelse, encrypted (CMS) to our certificate: the document itself when
there is one, a zip of them when there are more. We write the documents beside an arkivmelding.xml
made from the forsendelse's metadata, so the inbox folder looks as it does for DPO. Our ids come back
in `ekstraMetadata` when the sender is an eFormidling gateway (a reply in our conversation); a
forsendelse without them gets its forsendelseId as messageId and conversationId.

Trust: a forsendelse carries no sender's signature (no ASiC-E, no CAdES). What SvarInn (KS) vouches for
is that it came through a SvarUt account and is addressed to our SvarInn account; what we check is that
it decrypts with our key (it was encrypted to our certificate) and that each file's SHA-256 matches the
list SvarInn gives. The sending organisation's number is only what the forsendelse says: `avsender`
where it carries one (real SvarUt does not), else `svarSendesTil`, the reply-to address. Nobody signs
either, so the number is reported as the sender with words saying where it came from (`StatedSender`),
in the status history and the inbox's message.xml; it is never taken as proof of who sent it, and a
forsendelse never changes the status of a message of ours.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from gateway.channels.dpf.business import PART_KEY, DpfSettings
from gateway.channels.dpf.forsendelse import CONVERSATION_ID_KEY, MESSAGE_ID_KEY, PROCESS_KEY, extra_metadata
from gateway.errors import CryptoError, MessageFormatError, SecurityError
from gateway.formats.arkivmelding import ArkivmeldingFile, build_arkivmelding
from gateway.formats.asice import AsicContents, AsicFile
from gateway.formats.business import Arkivmelding
from gateway.formats.cms import decrypt_stream
from gateway.formats.keys import OrgIdentity
from gateway.formats.sbd import ARKIVMELDING_PROCESS, PROCESSES, StandardBusinessDocument, new_sbd
from gateway.formats.ziplimits import ZIP_ERRORS, ZipLimits, check_declared_sizes, check_expansion, zip_error_text
from gateway.fsio import archive_safe_names
from gateway.identifiers import is_valid_orgnr

ARKIVMELDING_NAME = "arkivmelding.xml"
MAX_FILES = 500
MAX_TOTAL_BYTES = 1_100_000_000
ZIP_LIMITS = ZipLimits(max_entries=MAX_FILES, max_total_bytes=MAX_TOTAL_BYTES, max_ratio=200)
_FORBIDDEN_NAME = re.compile(r'[\x00-\x1f*:"\\/<>|?]')
CHUNK = 1 << 20
NO_DEADLINE = timedelta(days=365)


@dataclass(frozen=True)
class FileMetadata:
    name: str
    mime_type: str
    sha256: str | None


def _uuid_or_none(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value))) if value else None
    except ValueError:
        return None


def _orgnr_of(party: Any) -> str | None:
    if isinstance(party, dict):
        for key in ("orgnr", "digitalId"):
            value = party.get(key)
            if isinstance(value, str) and is_valid_orgnr(value):
                return value
    return None


@dataclass(frozen=True)
class StatedSender:
    """The sending organisation as the forsendelse states it, and in which field: nobody vouches for it."""

    orgnr: str
    field: str  # "avsender" or "svarSendesTil"

    def words(self) -> str:
        where = ("the forsendelse's avsender" if self.field == "avsender"
                 else "the forsendelse's reply-to address (svarSendesTil)")
        return (f"the sender {self.orgnr} is only what {where} says: SvarInn vouches for the SvarUt account it came "
                "through, not for the organisation, and a forsendelse is not signed")


def stated_sender(forsendelse: dict[str, Any]) -> StatedSender | None:
    """The sending organisation as the forsendelse states it: `avsender`, else `svarSendesTil` (the reply-to
    address). Unsigned: see the module's docstring for what SvarInn vouches for."""
    for field in ("avsender", "svarSendesTil"):
        orgnr = _orgnr_of(forsendelse.get(field))
        if orgnr:
            return StatedSender(orgnr, field)
    return None


def sender_of(forsendelse: dict[str, Any]) -> str | None:
    stated = stated_sender(forsendelse)
    return stated.orgnr if stated else None


def file_name_problem(name: str) -> str | None:
    if not name or name in (".", "..") or _FORBIDDEN_NAME.search(name) or len(name) > 226:
        return f"the file name {name[:80]!r} is not a plain file name (no folders, '..' or special characters)"
    if name.casefold() == ARKIVMELDING_NAME:
        return f"the forsendelse carries a file named {ARKIVMELDING_NAME}, which the gateway writes itself"
    return None


def files_of(forsendelse: dict[str, Any]) -> list[FileMetadata]:
    entries = forsendelse.get("filmetadata")
    if not isinstance(entries, list) or not entries:
        raise MessageFormatError("the forsendelse lists no files (filmetadata)")
    files = []
    for entry in entries:
        name = entry.get("filnavn") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise MessageFormatError("a file of the forsendelse has no name (filmetadata.filnavn)")
        problem = file_name_problem(name)
        if problem:
            raise SecurityError(problem)
        digest = entry.get("sha256hash")
        files.append(FileMetadata(name, str(entry.get("mimetype") or "application/octet-stream"),
                                  digest.lower() if isinstance(digest, str) and digest else None))
    if len({f.name.casefold() for f in files}) != len(files):
        raise SecurityError("the forsendelse lists a file name twice")
    return files


def sbd_of(forsendelse: dict[str, Any], receiver: str, received_at: datetime) -> StandardBusinessDocument:
    """The SBD of a forsendelse: who, what, and the ids (ours when the sender kept them)."""
    forsendelse_id = _uuid_or_none(forsendelse.get("id"))
    if forsendelse_id is None:
        raise MessageFormatError("the forsendelse has no id")
    sender = sender_of(forsendelse)
    if sender is None:
        raise MessageFormatError(
            f"forsendelse {forsendelse_id} names no sending organisation (avsender or svarSendesTil with a "
            "valid organisation number); it cannot be received as an eFormidling message"
        )
    addressed_to = _orgnr_of(forsendelse.get("mottaker")) or receiver
    metadata = extra_metadata(forsendelse)
    process = metadata.get(PROCESS_KEY)
    if process not in PROCESSES or not process.startswith("urn:no:difi:profile:arkivmelding:"):
        process = ARKIVMELDING_PROCESS
    level = str(forsendelse.get("niva") or "")
    forsendelse_type = forsendelse.get("forsendelseType")
    business = Arkivmelding(
        sikkerhetsnivaa=int(level) if level in ("3", "4") else None,
        parts={PART_KEY: DpfSettings(forsendelse_type=forsendelse_type)} if isinstance(forsendelse_type, str) else {},
    )
    created = received_at
    if isinstance(forsendelse.get("date"), int | float):
        created = datetime.fromtimestamp(forsendelse["date"] / 1000, UTC)
    return new_sbd(
        sender=sender,
        receiver=addressed_to,
        business_message=business,
        process=process,
        created=created,
        message_id=_uuid_or_none(metadata.get(MESSAGE_ID_KEY)) or forsendelse_id,
        conversation_id=_uuid_or_none(metadata.get(CONVERSATION_ID_KEY)) or forsendelse_id,
        # A forsendelse has no deadline; it stays in SvarInn until taken, so it never arrives late.
        expected_response=received_at + NO_DEADLINE,
    )


def title_of(forsendelse: dict[str, Any]) -> str:
    title = forsendelse.get("tittel")
    return title.strip() if isinstance(title, str) and title.strip() else "Forsendelse fra SvarUt"


def extract_forsendelse(
    forsendelse: dict[str, Any],
    sbd: StandardBusinessDocument,
    download: BinaryIO,
    identity: OrgIdentity,
    work: Path,
    target: Path,
    durable: bool,
) -> AsicContents:
    """Decrypt the downloaded file with our key, write its documents and an arkivmelding.xml to `target`."""
    files = files_of(forsendelse)
    work.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    plain_path = work / "forsendelse.plain"
    download.seek(0)
    try:
        with open(plain_path, "wb") as plain:
            try:
                decrypt_stream(download, plain, identity.private_key, identity.certificate)
            except CryptoError as exc:
                raise CryptoError(f"the forsendelse could not be decrypted with our key: {exc}") from exc
        written: list[AsicFile] = []
        # Names the archive's file system may refuse (aux.pdf, "rapport.") are written under safe ones.
        stored_as = archive_safe_names([f.name for f in files])
        if len(files) == 1:
            written.append(_copy_single(plain_path, files[0], target / stored_as[files[0].name], durable))
        else:
            written.extend(_unzip(plain_path, files, target, durable, stored_as))
    finally:
        plain_path.unlink(missing_ok=True)
    arkivmelding = build_arkivmelding(
        title=title_of(forsendelse),
        files=[ArkivmeldingFile(f.path.name, f.name, main=index == 0) for index, f in enumerate(written)],
        created=sbd.created,
        system_name="SvarUt",
        message_id=sbd.message_id,
    )
    arkivmelding_path = target / ARKIVMELDING_NAME
    _write(arkivmelding_path, arkivmelding, durable)
    listed = [AsicFile(ARKIVMELDING_NAME, arkivmelding_path, "application/xml", len(arkivmelding)), *written]
    # DPF carries no sender's signature: SvarInn (KS) is who vouches for the sender.
    return AsicContents(files=listed, signer=None, main_document=written[0].name)


def _write(path: Path, content: bytes, durable: bool) -> None:
    with open(path, "xb") as handle:
        handle.write(content)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())


def _check_digest(meta: FileMetadata, digest: str) -> None:
    if meta.sha256 and meta.sha256 != digest:
        raise SecurityError(f"{meta.name}: its SHA-256 does not match the one SvarUt lists (filmetadata)")


def _copy_single(plain_path: Path, meta: FileMetadata, destination: Path, durable: bool) -> AsicFile:
    digest = hashlib.sha256()
    size = 0
    with open(plain_path, "rb") as source, open(destination, "xb") as sink:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            sink.write(chunk)
        if durable:
            sink.flush()
            os.fsync(sink.fileno())
    _check_digest(meta, digest.hexdigest())
    return AsicFile(meta.name, destination, meta.mime_type, size)


def _unzip(
    plain_path: Path, files: list[FileMetadata], target: Path, durable: bool, stored_as: dict[str, str]
) -> list[AsicFile]:
    by_name = {f.name: f for f in files}
    written: list[AsicFile] = []
    try:
        with zipfile.ZipFile(plain_path) as archive:
            infos = archive.infolist()
            check_declared_sizes(infos, ZIP_LIMITS, "the forsendelse's zip")
            names = [info.filename for info in infos]
            for info in infos:
                problem = file_name_problem(info.filename)
                if problem:
                    raise SecurityError(f"the forsendelse's zip holds an entry that is not a plain file: {problem}")
                if stat.S_ISLNK(info.external_attr >> 16) or info.is_dir():
                    raise SecurityError(f"the forsendelse's zip entry {info.filename!r} is a link or a folder")
                if info.flag_bits & 0x1:
                    raise MessageFormatError(f"the forsendelse's zip entry {info.filename!r} is password protected")
            if sorted(names) != sorted(by_name):
                raise MessageFormatError(
                    f"the forsendelse's zip holds {sorted(names)}, but SvarUt lists {sorted(by_name)}"
                )
            for name in [f.name for f in files]:  # the order SvarUt lists: the main document first
                info = archive.getinfo(name)
                meta = by_name[name]
                destination = target / stored_as[name]
                digest = hashlib.sha256()
                size = 0
                with archive.open(info) as source, open(destination, "xb") as sink:
                    while chunk := source.read(CHUNK):
                        size += len(chunk)
                        check_expansion(info, size, ZIP_LIMITS, "the forsendelse's zip")
                        digest.update(chunk)
                        sink.write(chunk)
                    if durable:
                        sink.flush()
                        os.fsync(sink.fileno())
                _check_digest(meta, digest.hexdigest())
                written.append(AsicFile(name, destination, meta.mime_type, size))
    except ZIP_ERRORS as exc:
        raise MessageFormatError(f"the forsendelse's files are not a readable zip: {zip_error_text(exc)}") from exc
    return written
