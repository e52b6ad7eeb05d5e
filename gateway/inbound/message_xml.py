"""The inbox folder's message.xml: what the archive system reads about a received message and its files.

Each document is listed under the name it has on disk; where that is not the sender's name (the archive's
file systems could not hold it: aux.pdf, a:b.pdf, a trailing dot, A.pdf beside a.pdf), the sender's name is
kept beside it as <originalFile>.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from gateway.contract.sidecar import FOLDER_SIDECAR_NAME, DropDocument, Sidecar, write_sidecar
from gateway.formats.arkivmelding import read_arkivmelding
from gateway.formats.asice import AsicContents
from gateway.formats.sbd import StandardBusinessDocument
from gateway.fsio import fsync_dir

MAX_ARKIVMELDING_BYTES = 16 << 20
ARKIVMELDING_NAME = "arkivmelding.xml"


def write_message_xml(
    sbd: StandardBusinessDocument, contents: AsicContents, folder: Path, received: datetime,
    signed_by: str | None = None,
    sender_unverified: str = "",
) -> None:
    """Write `folder`/message.xml for the documents extracted into `folder` (a staging folder of our own)."""
    stored = {file.name: _make_room_for_message_xml(folder, file.path.relative_to(folder).as_posix())
              for file in contents.files}
    arkivmelding_file = stored.get(ARKIVMELDING_NAME)
    title = None
    # The title is read from a bounded arkivmelding.xml only: a huge one stays in the inbox unread.
    if arkivmelding_file and (folder / arkivmelding_file).stat().st_size <= MAX_ARKIVMELDING_BYTES:
        title = read_arkivmelding((folder / arkivmelding_file).read_bytes()).title
    documents = tuple(
        DropDocument(
            file=stored[file.name], mime_type=file.mime_type, size=file.size, main=file.name == contents.main_document,
            original_file=file.name if stored[file.name] != file.name else None,
        )
        for file in contents.files
        if file.name != ARKIVMELDING_NAME
    )
    sidecar = Sidecar(
        receiver=sbd.receiver,
        sender=sbd.sender,
        on_behalf_of=sbd.sender_on_behalf_of,
        message_type=sbd.message_type if sbd.message_type in ("arkivmelding", "avtalt") else "arkivmelding",
        process=sbd.process,
        message_id=sbd.message_id,
        conversation_id=sbd.conversation_id,
        title=title,
        deadline=sbd.expected_response,
        arkivmelding_file=arkivmelding_file,
        documents=documents,
        received=received,
        signed_by=signed_by,
        sender_not_verified=sender_unverified or None,
    )
    # The staging folder is ours alone and is synced before it moves: no temporary name needed.
    with open(folder / FOLDER_SIDECAR_NAME, "xb") as handle:
        handle.write(write_sidecar(sidecar))
        handle.flush()
        os.fsync(handle.fileno())


def _make_room_for_message_xml(folder: Path, stored: str) -> str:
    """A document the sender named message.xml (in any case) moves aside: the inbox's message.xml is ours."""
    if stored.casefold() != FOLDER_SIDECAR_NAME:
        return stored
    taken = {entry.casefold() for entry in os.listdir(folder)}
    stem, _dot, suffix = stored.rpartition(".")
    counter = 2
    while f"{stem} ({counter}).{suffix}".casefold() in taken:
        counter += 1
    aside = f"{stem} ({counter}).{suffix}"
    os.rename(folder / stored, folder / aside)
    fsync_dir(folder)
    return aside
