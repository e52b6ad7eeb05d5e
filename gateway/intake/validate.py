"""Check a claimed drop against the drop contract and turn it into an accepted message."""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.clock import Clock
from gateway.config import Config
from gateway.contract.sidecar import (
    FOLDER_SIDECAR_NAME,
    SUPPLIED_ARKIVMELDING_NAME,
    Sidecar,
    read_sidecar,
)
from gateway.formats.sbd import ARKIVMELDING_PROCESS, PROCESSES, RESPONSE_PROCESS
from gateway.fsio import file_name_problem
from gateway.intake.claim import ClaimedDrop
from gateway.journal.store import Journal

_DEFAULT_PROCESS_BY_TYPE = {
    "arkivmelding": ARKIVMELDING_PROCESS,
    "arkivmelding_kvittering": RESPONSE_PROCESS,
    "avtalt": "urn:no:difi:profile:avtalt:avtalt:ver1.0",
    "digital": "urn:no:difi:profile:digitalpost:info:ver1.0",
    "print": "urn:no:difi:profile:digitalpost:vedtak:ver1.0",
}


@dataclass(frozen=True)
class AcceptedDrop:
    claimed: ClaimedDrop
    sidecar: Sidecar
    message_id: str
    conversation_id: str
    process: str
    sender: str
    deadline: datetime
    arkivmelding_file: str | None
    total_bytes: int


@dataclass(frozen=True)
class Verdict:
    """What validation concluded: an accepted drop, or the problems (and whatever ids could be read)."""

    accepted: AcceptedDrop | None
    problems: tuple[str, ...]
    message_id: str
    sidecar: Sidecar | None = None


def validate_claimed(claimed: ClaimedDrop, config: Config, journal: Journal, clock: Clock) -> Verdict:
    problems: list[str] = []
    sidecar_path = claimed.sidecar_path
    try:
        content = sidecar_path.read_bytes()
    except FileNotFoundError:
        return Verdict(
            None,
            (f"the drop {claimed.name!r} has no {claimed.sidecar_name}; every drop needs its sidecar",),
            str(uuid.uuid4()),
        )
    sidecar, sidecar_problems = read_sidecar(content, source=claimed.sidecar_name)
    problems.extend(str(problem) for problem in sidecar_problems)
    message_id = (sidecar.message_id if sidecar else None) or str(uuid.uuid4())
    if sidecar is None:
        return Verdict(None, tuple(problems), message_id)

    arkivmelding_file = sidecar.arkivmelding_file
    present = _present_files(claimed, problems)
    if arkivmelding_file is None and claimed.kind == "folder" and SUPPLIED_ARKIVMELDING_NAME in present:
        arkivmelding_file = SUPPLIED_ARKIVMELDING_NAME
    listed = sidecar.file_names + ([arkivmelding_file] if arkivmelding_file else [])
    for name in listed:
        if name not in present and not file_name_problem(name):
            problems.append(
                f"{claimed.sidecar_name}: the document {name!r} is listed but not in the drop; add it or remove it "
                "from <documents>"
            )
    if claimed.kind == "folder":
        for name in sorted(set(present) - set(listed) - {FOLDER_SIDECAR_NAME}):
            problems.append(
                f"the file {name!r} is in the drop folder but not listed in {FOLDER_SIDECAR_NAME}; list it in "
                "<documents> or remove it"
            )
    total = 0
    for document in sidecar.documents:
        size = present.get(document.file)
        if size is None:
            continue
        total += size
        if document.size is not None and document.size != size:
            problems.append(
                f"the document {document.file!r} is {size} bytes, but {claimed.sidecar_name} says {document.size}; "
                "it may be incomplete or changed: drop it again with the right <size>"
            )
        elif document.sha256 is not None and _sha256(claimed.folder / document.file) != document.sha256:
            problems.append(
                f"the document {document.file!r} does not match the SHA-256 in {claimed.sidecar_name}; it may be "
                "damaged or changed: drop it again, or correct <sha256>"
            )
    if total > config.intake.max_drop_bytes:
        problems.append(
            f"the documents add up to {total} bytes, more than the {config.intake.max_drop_bytes} allowed "
            "(intake.max_drop_bytes); split the message"
        )

    now = clock.now()
    deadline = sidecar.deadline or now + timedelta(hours=config.messages.default_lifetime_hours)
    if deadline.tzinfo is not None and deadline <= now:
        problems.append(
            f"{claimed.sidecar_name}: the <deadline> {deadline.isoformat()} has already passed; give a later deadline "
            "or leave it out (default: 24 hours)"
        )
    if sidecar.message_type in ("digital", "print") and len(sidecar.receiver.removeprefix("0192:")) != 11:
        problems.append(
            f"{claimed.sidecar_name}: a {sidecar.message_type} message goes to a person; <receiver> must be an "
            "11-digit national identity number"
        )
    if sidecar.sender and sidecar.sender.removeprefix("0192:") != config.organisation.orgnr:
        problems.append(
            f"{claimed.sidecar_name}: <sender> {sidecar.sender} is not this gateway's organisation "
            f"({config.organisation.orgnr}); leave <sender> out, or use <onBehalfOf> for a sub-unit"
        )
    conversation_id = sidecar.conversation_id
    conversation_process = None
    receiver = sidecar.receiver
    answered_id = sidecar.receipt.related_to_message_id if sidecar.receipt else sidecar.in_reply_to
    if answered_id:
        # A reply or receipt continues the conversation of a message we received.
        received = journal.find_live("in", answered_id)
        field_name = "relatedToMessageId" if sidecar.receipt else "inReplyTo"
        if received is None:
            problems.append(
                f"{claimed.sidecar_name}: <{field_name}> {answered_id} is not a message this gateway has received; "
                "check the messageId (see message.xml in the inbox folder)"
            )
        else:
            if conversation_id and conversation_id != received.conversation_id:
                problems.append(
                    f"{claimed.sidecar_name}: <conversationId> {conversation_id} differs from the conversation of "
                    f"the message it answers ({received.conversation_id}); leave <conversationId> out"
                )
            conversation_id = received.conversation_id
            conversation_process = received.process
            if received.sender and receiver.removeprefix("0192:") != received.sender:
                problems.append(
                    f"{claimed.sidecar_name}: <receiver> {receiver} is not the sender of the message it answers "
                    f"({received.sender}); send the answer to {received.sender}"
                )
    if sidecar.process and sidecar.process not in PROCESSES:
        problems.append(
            f"{claimed.sidecar_name}: <process> {sidecar.process!r} is not an eFormidling process; use one like "
            f"{ARKIVMELDING_PROCESS}, or leave <process> out"
        )
    existing = journal.find_live("out", message_id)
    if existing is not None:
        problems.append(
            f"{claimed.sidecar_name}: the messageId {message_id} was already used by the drop "
            f"{existing.drop_name!r}; every message needs its own messageId (leave it out to get a new one)"
        )
    if problems:
        return Verdict(None, tuple(problems), message_id, sidecar)
    return Verdict(
        AcceptedDrop(
            claimed=claimed,
            sidecar=sidecar,
            message_id=message_id,
            conversation_id=conversation_id or str(uuid.uuid4()),
            process=sidecar.process or _default_process(sidecar, conversation_process),
            sender=config.organisation.orgnr,
            deadline=deadline,
            arkivmelding_file=arkivmelding_file,
            total_bytes=total,
        ),
        (),
        message_id,
        sidecar,
    )


def _default_process(sidecar: Sidecar, conversation_process: str | None) -> str:
    """Receipts use the response process; a reply stays in the process of the conversation it answers."""
    if sidecar.message_type == "arkivmelding_kvittering":
        return RESPONSE_PROCESS
    if sidecar.in_reply_to and conversation_process:
        return conversation_process
    return _DEFAULT_PROCESS_BY_TYPE[sidecar.message_type]


def _present_files(claimed: ClaimedDrop, problems: list[str]) -> dict[str, int]:
    """Regular files in the claimed drop with their sizes; anything else is a problem."""
    present: dict[str, int] = {}
    with os.scandir(claimed.folder) as listing:
        for entry in listing:
            name = entry.name
            info = entry.stat(follow_symlinks=False)
            name_problem = file_name_problem(name)
            if name_problem:
                problems.append(name_problem)
                continue
            if stat.S_ISLNK(info.st_mode):
                problems.append(f"{name!r} is a symbolic link; drop the file itself")
            elif stat.S_ISDIR(info.st_mode):
                problems.append(f"{name!r} is a folder inside the drop; drops hold files only")
            elif stat.S_ISREG(info.st_mode):
                present[name] = info.st_size
            else:
                problems.append(f"{name!r} is not a regular file")
    return present


def _sha256(path: os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
