"""Turn an accepted drop into what goes on the wire: an SBD and the ASiC-E's documents."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.channels.base import OutgoingMessage
from gateway.channels.registry import KINDS
from gateway.contract.sidecar import MAX_SIDECAR_BYTES, RESERVED_DOCUMENT_NAMES, Sidecar, read_accepted_sidecar
from gateway.errors import MessageFormatError
from gateway.formats.arkivmelding import ArkivmeldingFile, build_arkivmelding
from gateway.formats.asice import AsicDocument
from gateway.formats.business import (
    Arkivmelding,
    ArkivmeldingKvittering,
    Avtalt,
    KvitteringMessage,
    Status,
    business_type,
)
from gateway.formats.sbd import StandardBusinessDocument, new_sbd
from gateway.fsio import UnreadableFile, file_name_problem, open_regular, read_regular_file
from gateway.journal.records import MessageRecord

ARKIVMELDING_NAME = "arkivmelding.xml"
DEFAULT_MIME = "application/octet-stream"
_MIME_BY_SUFFIX = {
    ".pdf": "application/pdf",
    ".xml": "application/xml",
    ".txt": "text/plain",
    ".html": "text/html",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}


def mime_type_for(name: str, declared: str | None) -> str:
    return declared or _MIME_BY_SUFFIX.get(Path(name).suffix.lower(), DEFAULT_MIME)


def load_sidecar(claim_folder: Path, sidecar_name: str) -> Sidecar:
    """The sidecar of a claimed drop; intake validated it before accepting the drop.

    Read with intake's rules (a regular file of bounded size, never through a link); a sidecar that
    cannot be read is a permanent error (MessageFormatError): retrying would fail the same way.
    """
    try:
        content = read_regular_file(claim_folder / sidecar_name, MAX_SIDECAR_BYTES)
    except UnreadableFile as exc:
        raise MessageFormatError(f"{sidecar_name}: {exc.reason}") from None
    return read_accepted_sidecar(content, source=sidecar_name)


def check_documents(documents: list[AsicDocument]) -> None:
    """Refuse for good what the packer cannot pack: a name the container cannot hold, the same name
    twice (in any case), or a file that is not a readable regular file."""
    seen: set[str] = set()
    for document in documents:
        folded = document.name.casefold()
        if folded in seen:
            raise MessageFormatError(
                f"the document name {document.name!r} is used twice (upper and lower case count alike)"
            )
        seen.add(folded)
        if document.name != ARKIVMELDING_NAME and (
            folded in RESERVED_DOCUMENT_NAMES or file_name_problem(document.name)
        ):
            raise MessageFormatError(f"{document.name!r} cannot be a document's name in the message container")
        if isinstance(document.source, Path):
            try:
                os.close(open_regular(document.source))
            except UnreadableFile as exc:
                raise MessageFormatError(f"the document {exc.reason}") from None


def compose(
    record: MessageRecord,
    sidecar: Sidecar,
    claim_folder: Path,
    created: datetime,
) -> OutgoingMessage:
    """The SBD and documents for `record`; the documents stream from the claimed drop."""
    assert record.sender and record.receiver and record.process and record.conversation_id
    message_type = sidecar.message_type
    documents: list[AsicDocument] = []
    if message_type == "arkivmelding":
        business = Arkivmelding(
            sikkerhetsnivaa=sidecar.security_level, hoveddokument=ARKIVMELDING_NAME, **_channel_parts(sidecar)
        )
        documents.append(
            AsicDocument(
                ARKIVMELDING_NAME, _arkivmelding(record, sidecar, claim_folder, created), "application/xml"
            )
        )
        documents.extend(_documents(sidecar, claim_folder))
    elif message_type == "arkivmelding_kvittering":
        assert sidecar.receipt is not None
        business = ArkivmeldingKvittering(
            receipt_type=sidecar.receipt.receipt_type,
            related_to_message_id=sidecar.receipt.related_to_message_id,
            messages=tuple(KvitteringMessage(text=text) for text in sidecar.receipt.texts),
        )
    elif message_type == "avtalt":
        assert sidecar.avtalt is not None
        business = Avtalt(identifier=sidecar.avtalt.identifier, content=sidecar.avtalt.content)
        documents.extend(_documents(sidecar, claim_folder))
    elif (letter := business_type(message_type)) is not None and letter.from_drop is not None:
        # A letter (to a citizen): its documents alone, in the business type its channel brings; the channel that
        # carries it reads its options block.
        documents.extend(_documents(sidecar, claim_folder))
        main = documents[0].name if documents else None
        business = letter.from_drop(sidecar.security_level, main, _title(record, sidecar))
    else:
        raise MessageFormatError(f"{message_type} messages cannot be composed for this channel")
    check_documents(documents)
    sbd = new_sbd(
        sender=record.sender,
        receiver=record.receiver,
        business_message=business,
        process=record.process,
        created=created,
        conversation_id=record.conversation_id,
        message_id=record.message_id,
        expected_response=record.deadline,
        sender_on_behalf_of=sidecar.on_behalf_of.removeprefix("0192:") if sidecar.on_behalf_of else None,
    )
    titles = {doc.file: doc.title for doc in sidecar.documents if doc.title}
    return OutgoingMessage(sbd, documents, title=_title(record, sidecar), titles=titles, options=sidecar.options)


def status_sbd(
    *, sender: str, receiver: str, message_id: str, conversation_id: str, process: str, status: str, created: datetime
) -> StandardBusinessDocument:
    """A `status` message about a message we received: it reuses that message's id."""
    return new_sbd(
        sender=sender,
        receiver=receiver,
        business_message=Status(status=status),
        process=process,
        created=created,
        conversation_id=conversation_id,
        message_id=message_id,
    )


def _channel_parts(sidecar: Sidecar) -> dict[str, Any]:
    """The business message's parts the channels' options blocks give (each channel says what its block means)."""
    parts: dict[str, Any] = {}
    for key, value in sidecar.options.items():
        block = KINDS[key].options
        for name, part in (block.business(value) if block is not None else {}).items():
            # The channels' parts and the keys the business message does not model: merged, never replaced.
            parts[name] = {**parts.get(name, {}), **part} if name in ("parts", "extra") else part
    return parts


def _documents(sidecar: Sidecar, claim_folder: Path) -> list[AsicDocument]:
    ordered = sorted(sidecar.documents, key=lambda doc: not doc.main)
    return [AsicDocument(doc.file, claim_folder / doc.file, mime_type_for(doc.file, doc.mime_type)) for doc in ordered]


def _arkivmelding(record: MessageRecord, sidecar: Sidecar, claim_folder: Path, created: datetime) -> Path | bytes:
    """The archive system's own arkivmelding.xml, or one built from the sidecar (small: kept in memory)."""
    supplied = record.detail.get("arkivmelding_file")
    if supplied:
        return claim_folder / supplied
    ordered = sorted(sidecar.documents, key=lambda doc: not doc.main)
    files = [
        ArkivmeldingFile(name=doc.file, title=doc.title or doc.file, main=index == 0)
        for index, doc in enumerate(ordered)
    ]
    return build_arkivmelding(
        title=_title(record, sidecar),
        files=files,
        created=created,
        message_id=record.message_id,
    )


def _title(record: MessageRecord, sidecar: Sidecar) -> str:
    """The sidecar's title, else the main document's, else the drop's name."""
    ordered = sorted(sidecar.documents, key=lambda doc: not doc.main)
    return sidecar.title or (ordered[0].title if ordered and ordered[0].title else record.drop_name or "Melding")
