"""Check a claimed drop against the drop contract and turn it into an accepted message."""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

from lxml import etree

from gateway.clock import Clock
from gateway.config import Config
from gateway.contract.schema_messages import describe_schema_error
from gateway.contract.sidecar import (
    FOLDER_SIDECAR_NAME,
    MAX_SIDECAR_BYTES,
    SUPPLIED_ARKIVMELDING_NAME,
    Sidecar,
    read_sidecar,
)
from gateway.drops.claims import ClaimedDrop
from gateway.errors import MessageFormatError
from gateway.formats.arkivmelding import arkivmelding_problems, read_arkivmelding
from gateway.formats.sbd import ARKIVMELDING_PROCESS, PROCESSES, RESPONSE_PROCESS
from gateway.fsio import (
    UnreadableFile,
    file_name_problem,
    kind_of,
    open_regular,
    printable,
    read_regular_file,
    text_name,
)
from gateway.intake.outbox import FLAT_LISTS_FOLDER
from gateway.journal.reader import JournalReader
from gateway.journal.store import Journal
from gateway.xmlsafe import load_schema, parse_bytes

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
    warnings: tuple[str, ...] = ()  # accepted, but worth telling the archivist (in the status file)


def validate_claimed(
    claimed: ClaimedDrop, config: Config, journal: Journal | JournalReader | None, clock: Clock
) -> Verdict:
    """The daemon's verdict on a claimed drop (or, for `efm-gateway validate`, on one in place).

    Reads nothing but regular files, never through a symbolic link, and checks sizes before reading
    or hashing. Every problem text is printable (names that are not UTF-8 show as %XX).
    """
    verdict = _validate(claimed, config, journal, clock)
    return Verdict(
        verdict.accepted,
        tuple(printable(problem) for problem in verdict.problems),
        verdict.message_id,
        verdict.sidecar,
        tuple(printable(warning) for warning in verdict.warnings),
    )


def _validate(claimed: ClaimedDrop, config: Config, journal: Journal | JournalReader | None, clock: Clock) -> Verdict:
    problems: list[str] = []
    warnings: list[str] = []
    name_problem = file_name_problem(claimed.name)
    if name_problem:
        kept_as = text_name(claimed.name)
        problems.append(
            f"the drop name is not usable: {name_problem.replace('the file name', 'the name')}"
            + (f" (it is kept in failed/ as {kept_as!r})" if kept_as != claimed.name else "")
        )
    try:
        content = read_regular_file(claimed.sidecar_path, MAX_SIDECAR_BYTES)
    except UnreadableFile as exc:
        if not os.path.lexists(claimed.sidecar_path):
            reason = f"the drop {claimed.name!r} has no {claimed.sidecar_name}; every drop needs its sidecar"
        else:
            reason = f"{claimed.sidecar_name}: {exc.reason}"
            if "at most" in exc.reason:
                reason = f"{claimed.sidecar_name}: the sidecar is larger than the {MAX_SIDECAR_BYTES} bytes allowed"
        return Verdict(None, (*problems, reason), str(uuid.uuid4()))
    sidecar, sidecar_problems = read_sidecar(content, source=claimed.sidecar_name)
    problems.extend(str(problem) for problem in sidecar_problems)
    message_id = (sidecar.message_id if sidecar else None) or str(uuid.uuid4())
    if sidecar is None:
        return Verdict(None, tuple(problems), message_id)

    arkivmelding_file = sidecar.arkivmelding_file
    listed_names = sidecar.file_names + ([arkivmelding_file] if arkivmelding_file else [])
    present = _present_files(claimed, listed_names, problems)
    if arkivmelding_file is None and claimed.kind == "folder" and SUPPLIED_ARKIVMELDING_NAME in present:
        arkivmelding_file = SUPPLIED_ARKIVMELDING_NAME
    listed = sidecar.file_names + ([arkivmelding_file] if arkivmelding_file else [])
    for name in listed:
        if name not in present and not problems_named(problems, name) and not file_name_problem(name):
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
    # Sizes first: a document too large, or of the wrong size, is refused without reading it.
    total = sum(present.get(document.file, 0) for document in sidecar.documents)
    too_large = total > config.intake.max_drop_bytes
    if too_large:
        problems.append(
            f"the documents add up to {total} bytes, more than the {config.intake.max_drop_bytes} allowed "
            "(intake.max_drop_bytes); split the message"
        )
    for document in sidecar.documents:
        size = present.get(document.file)
        if size is None:
            continue
        if document.size is not None and document.size != size:
            problems.append(
                f"the document {document.file!r} is {size} bytes, but {claimed.sidecar_name} says {document.size}; "
                "it may be incomplete or changed: drop it again with the right <size>"
            )
        elif (
            document.sha256 is not None
            and not too_large
            and _sha256(claimed.folder / document.file) != document.sha256
        ):
            problems.append(
                f"the document {document.file!r} does not match the SHA-256 in {claimed.sidecar_name}; it may "
                "be damaged or changed: drop it again, or correct <sha256>"
            )
        if size == 0:
            warnings.append(f"the document {document.file!r} is empty (0 bytes); it is sent as it is")
    if arkivmelding_file and arkivmelding_file in present:
        problems.extend(_supplied_arkivmelding_problems(claimed, arkivmelding_file, sidecar, config))

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
        received = journal.find_live("in", answered_id) if journal is not None else None
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
    existing = journal.find_live("out", message_id) if journal is not None else None
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
        tuple(warnings),
    )


def _default_process(sidecar: Sidecar, conversation_process: str | None) -> str:
    """Receipts use the response process; a reply stays in the process of the conversation it answers."""
    if sidecar.message_type == "arkivmelding_kvittering":
        return RESPONSE_PROCESS
    if sidecar.in_reply_to and conversation_process:
        return conversation_process
    return _DEFAULT_PROCESS_BY_TYPE[sidecar.message_type]


def problems_named(problems: list[str], name: str) -> list[str]:
    """The problems already said about the file `name` (so it is not also called missing)."""
    quoted = repr(name)
    return [problem for problem in problems if quoted in problem]


def _present_files(claimed: ClaimedDrop, listed: list[str], problems: list[str]) -> dict[str, int]:
    """Regular, readable files of the drop with their sizes; anything else is a problem.

    A folder drop is everything in its folder; a flat drop only the files its sidecar lists (in the
    outbox, where `efm-gateway validate` looks, other drops lie beside them).
    """
    present: dict[str, int] = {}
    if claimed.kind == "folder":
        with os.scandir(claimed.folder) as listing:
            candidates = [(entry.name, entry.stat(follow_symlinks=False)) for entry in listing]
    else:
        candidates = []
        for name in dict.fromkeys(listed):
            if file_name_problem(name):
                continue
            try:
                candidates.append((name, os.lstat(claimed.folder / name)))
            except FileNotFoundError:
                continue
    for name, info in candidates:
        if name == claimed.sidecar_name:
            continue
        name_problem = file_name_problem(name)
        if name_problem:
            if name not in listed:  # the sidecar's check already named it
                problems.append(name_problem)
            continue
        if stat.S_ISLNK(info.st_mode):
            problems.append(f"{name!r} is a symbolic link; drop the file itself")
        elif stat.S_ISDIR(info.st_mode):
            if claimed.kind == "folder":
                problems.append(f"{name!r} is a folder inside the drop; drops hold files only")
            else:
                problems.append(FLAT_LISTS_FOLDER.format(sidecar=claimed.sidecar_name, name=name))
        elif not stat.S_ISREG(info.st_mode):
            problems.append(f"{name!r} is {kind_of(info.st_mode)}, not a regular file; drop the file itself")
        else:
            try:
                os.close(open_regular(claimed.folder / name))
            except UnreadableFile as exc:
                problems.append(exc.reason)
                continue
            present[name] = info.st_size
    return present


MAX_ARKIVMELDING_BYTES = 16 << 20


def _supplied_arkivmelding_problems(
    claimed: ClaimedDrop, file_name: str, sidecar: Sidecar, config: Config
) -> list[str]:
    """An arkivmelding.xml the archive system supplied: well-formed, safe, schema-valid (when
    intake.arkivmelding_schema is set), and naming exactly the drop's documents."""
    try:
        content = read_regular_file(claimed.folder / file_name, MAX_ARKIVMELDING_BYTES)
        tree = parse_bytes(content, source=file_name)
    except UnreadableFile as exc:
        return [exc.reason]
    except MessageFormatError as exc:
        return [f"{exc}; supply a valid arkivmelding, or leave it out and one is built from the sidecar"]
    problems: list[str] = []
    if config.intake.arkivmelding_schema is not None:
        validator = arkivmelding_schema(config.intake.arkivmelding_schema)
        if not validator.validate(tree):
            for error in list(validator.error_log)[:10]:
                field_name, text = describe_schema_error(error.message)
                where = f"{file_name} line {error.line}" + (f", <{field_name}>" if field_name else "")
                problems.append(f"{where}: {text} (checked against arkivmelding.xsd)")
            return problems
    try:
        info = read_arkivmelding(content)
    except MessageFormatError as exc:
        return [str(exc).replace(SUPPLIED_ARKIVMELDING_NAME, file_name, 1)]
    for problem in arkivmelding_problems(info, [*sidecar.file_names, SUPPLIED_ARKIVMELDING_NAME]):
        problems.append(problem.replace(SUPPLIED_ARKIVMELDING_NAME, file_name, 1))
    return problems


@cache
def arkivmelding_schema(path: Path) -> etree.XMLSchema:
    return load_schema(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    fd = open_regular(path)
    try:
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()
