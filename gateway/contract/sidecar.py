"""Read and write the drop sidecar (`message.xml` / `<name>.xml`), described by sidecar.xsd."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lxml import etree

from gateway.channels.registry import KINDS
from gateway.contract.schema_messages import describe_schema_error
from gateway.contract.sidecar_schema import (  # noqa: F401 - NAMESPACE, SCHEMA_PATH and schema are read from here
    NAMESPACE,
    SCHEMA_PATH,
    SidecarSchema,
    channel_options,
    schema,
)
from gateway.errors import MessageFormatError
from gateway.fsio import file_name_problem
from gateway.identifiers import receiver_problem
from gateway.xmlsafe import parse_bytes

FOLDER_SIDECAR_NAME = "message.xml"
SUPPLIED_ARKIVMELDING_NAME = "arkivmelding.xml"
MAX_SIDECAR_BYTES = 4 << 20
MAX_DOCUMENTS = 1000  # sidecar.xsd's maxOccurs for <document>
# Names the ASiC-E container or the message itself uses: a document cannot have them (in any case).
RESERVED_DOCUMENT_NAMES = ("mimetype", "manifest.xml", SUPPLIED_ARKIVMELDING_NAME)
TYPES_WITHOUT_DOCUMENTS = frozenset({"arkivmelding_kvittering", "avtalt"})


@dataclass(frozen=True)
class DropDocument:
    file: str
    title: str | None = None
    mime_type: str | None = None
    main: bool = False
    size: int | None = None
    sha256: str | None = None
    original_file: str | None = None  # inbox only: the sender's name, when `file` had to differ from it


@dataclass(frozen=True)
class ReceiptInfo:
    receipt_type: str
    related_to_message_id: str
    texts: tuple[str, ...] = ()


@dataclass(frozen=True)
class AvtaltContent:
    identifier: str
    content: str


@dataclass(frozen=True)
class Sidecar:
    """What an archive system says about one message (or what the gateway says about a received one)."""

    receiver: str
    message_type: str = "arkivmelding"
    sender: str | None = None
    on_behalf_of: str | None = None
    process: str | None = None
    message_id: str | None = None
    conversation_id: str | None = None
    in_reply_to: str | None = None
    title: str | None = None
    security_level: int | None = None
    channel: str | None = None  # a pinned channel (its name, as in status files) instead of the routing rule
    deadline: datetime | None = None
    client_reference: str | None = None
    # The channels' options blocks, read by each channel (gateway/channels/<name>/options.py): channel key -> value.
    options: Mapping[str, Any] = field(default_factory=dict)
    receipt: ReceiptInfo | None = None
    avtalt: AvtaltContent | None = None
    arkivmelding_file: str | None = None
    documents: tuple[DropDocument, ...] = field(default_factory=tuple)
    received: datetime | None = None
    signed_by: str | None = None  # inbox only: who signed for the sender, where that is allowed
    sender_not_verified: str | None = None  # inbox only: why nobody vouches for the sender (DPF), in words

    @property
    def file_names(self) -> list[str]:
        return [doc.file for doc in self.documents]


@dataclass(frozen=True)
class SidecarProblem:
    """One thing wrong with a sidecar, with where it is and what to do."""

    source: str
    line: int | None
    field: str | None
    text: str

    def __str__(self) -> str:
        where = self.source
        if self.line:
            where += f" line {self.line}"
        if self.field:
            where += f", <{self.field}>"
        return f"{where}: {self.text}"


def _q(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


def read_sidecar(content: bytes, source: str = FOLDER_SIDECAR_NAME) -> tuple[Sidecar | None, list[SidecarProblem]]:
    """Parse, schema-validate and check a sidecar. Returns the sidecar (None when unreadable) and all problems."""
    if len(content) > MAX_SIDECAR_BYTES:
        return None, [SidecarProblem(source, None, None, f"the sidecar is larger than {MAX_SIDECAR_BYTES} bytes")]
    try:
        tree = parse_bytes(content, source=source)
    except MessageFormatError as exc:
        return None, [SidecarProblem(source, None, None, _strip_source(str(exc), source))]
    root = tree.getroot()
    if root.tag != _q("message"):
        return None, [
            SidecarProblem(
                source,
                root.sourceline,
                None,
                f"the root element is <{etree.QName(root).localname}> in namespace "
                f'{etree.QName(root).namespace or "(none)"!r}; a sidecar is <message xmlns="{NAMESPACE}">',
            )
        ]
    documents = root.findall(f"{_q('documents')}/{_q('document')}")
    if len(documents) > MAX_DOCUMENTS:
        return None, [
            SidecarProblem(
                source,
                documents[MAX_DOCUMENTS].sourceline,
                "documents",
                f"{len(documents)} documents are listed; a message may carry at most {MAX_DOCUMENTS}: "
                "split it into several messages",
            )
        ]
    validator = SidecarSchema()
    if not validator.validate(tree):
        problems = []
        for error in validator.error_log:
            field_name, text = describe_schema_error(error.message)
            problems.append(SidecarProblem(source, error.line, field_name, text))
        return None, problems
    sidecar = _to_sidecar(root)
    return sidecar, _semantic_problems(sidecar, root, source)


def read_accepted_sidecar(content: bytes, source: str = FOLDER_SIDECAR_NAME) -> Sidecar:
    """Parse a sidecar that intake validated already (a claimed drop's, which nobody else can change).

    Still the safe parser; the schema and semantic checks are not repeated.
    """
    root = parse_bytes(content, source=source).getroot()
    if root.tag != _q("message"):
        raise MessageFormatError(f"{source}: not a sidecar")
    return _to_sidecar(root)


def _strip_source(text: str, source: str) -> str:
    return text.removeprefix(f"{source}: ")


def _text(parent: etree._Element, name: str) -> str | None:
    child = parent.find(_q(name))
    if child is None:
        return None
    text = _string(child)
    return text.strip() if text.strip() or child.text is not None else None


def _string(element: etree._Element) -> str:
    """The element's whole text content, as the schema sees it: text on both sides of a comment or
    processing instruction counts (`.text` alone stops at the first of them)."""
    return str(element.xpath("string()"))


def _to_sidecar(root: etree._Element) -> Sidecar:
    documents = []
    docs_element = root.find(_q("documents"))
    if docs_element is not None:
        for doc in docs_element.findall(_q("document")):
            size = _text(doc, "size")
            sha = _text(doc, "sha256")
            documents.append(
                DropDocument(
                    file=_whole_text(doc, "file"),
                    title=_text(doc, "title"),
                    mime_type=_text(doc, "mimeType"),
                    main=doc.get("main", "false").strip() in ("true", "1"),
                    size=int(size) if size is not None else None,
                    sha256=sha.lower() if sha else None,
                    original_file=_whole_text(doc, "originalFile") if doc.find(_q("originalFile")) is not None
                    else None,
                )
            )
    options = {}
    for element, (key, block) in channel_options().items():
        found = root.find(_q(element))
        if found is not None:
            options[key] = block.read(found)
    receipt = None
    receipt_element = root.find(_q("receipt"))
    if receipt_element is not None:
        receipt = ReceiptInfo(
            receipt_type=_text(receipt_element, "receiptType") or "",
            related_to_message_id=(_text(receipt_element, "relatedToMessageId") or "").lower(),
            texts=tuple(_string(t).strip() for t in receipt_element.findall(_q("text"))),
        )
    avtalt = None
    avtalt_element = root.find(_q("avtalt"))
    if avtalt_element is not None:
        avtalt = AvtaltContent(
            identifier=_text(avtalt_element, "identifier") or "",
            content=_whole_text(avtalt_element, "content"),
        )
    level = _text(root, "securityLevel")
    deadline = _text(root, "deadline")
    received = _text(root, "received")
    return Sidecar(
        receiver=_text(root, "receiver") or "",
        message_type=_text(root, "type") or "arkivmelding",
        sender=_text(root, "sender"),
        on_behalf_of=_text(root, "onBehalfOf"),
        process=_text(root, "process"),
        message_id=_lower(_text(root, "messageId")),
        conversation_id=_lower(_text(root, "conversationId")),
        in_reply_to=_lower(_text(root, "inReplyTo")),
        title=_text(root, "title"),
        security_level=int(level) if level else None,
        channel=_text(root, "channel"),
        deadline=datetime.fromisoformat(deadline) if deadline else None,
        client_reference=_text(root, "clientReference"),
        options=options,
        receipt=receipt,
        avtalt=avtalt,
        arkivmelding_file=_text(root, "arkivmeldingFile"),
        documents=tuple(documents),
        received=datetime.fromisoformat(received) if received else None,
        signed_by=_text(root, "signedBy"),
        sender_not_verified=_text(root, "senderNotVerified"),
    )


def _whole_text(parent: etree._Element, name: str) -> str:
    """Unstripped text content (a file name is taken as written)."""
    child = parent.find(_q(name))
    return _string(child) if child is not None else ""


def _lower(value: str | None) -> str | None:
    return value.lower() if value else value


def _semantic_problems(sidecar: Sidecar, root: etree._Element, source: str) -> list[SidecarProblem]:
    problems: list[SidecarProblem] = []

    def add(field_name: str, text: str, element: etree._Element | None = None) -> None:
        line = element.sourceline if element is not None else None
        problems.append(SidecarProblem(source, line, field_name, text))

    def line_of(name: str, parent: etree._Element = root) -> etree._Element | None:
        return parent.find(_q(name))

    problem = receiver_problem(sidecar.receiver)
    if problem:
        add("receiver", problem, line_of("receiver"))
    for name, value in (("sender", sidecar.sender), ("onBehalfOf", sidecar.on_behalf_of)):
        if value is not None:
            party_problem = receiver_problem(value)
            if party_problem:
                add(name, party_problem, line_of(name))
    names = [kind.name for kind in KINDS.values()]
    if sidecar.channel is not None and sidecar.channel not in names:
        add("channel", f"{sidecar.channel!r} is not allowed; use one of {', '.join(names)}", line_of("channel"))
    if sidecar.deadline is not None and sidecar.deadline.tzinfo is None:
        add("deadline", "the deadline has no time zone; add one, like +01:00 or Z", line_of("deadline"))
    if sidecar.message_type == "arkivmelding_kvittering" and sidecar.receipt is None:
        add("receipt", "a message of type arkivmelding_kvittering needs a <receipt> element", None)
    if sidecar.message_type == "avtalt" and sidecar.avtalt is None:
        add("avtalt", "a message of type avtalt needs an <avtalt> element", None)
    if sidecar.message_type not in TYPES_WITHOUT_DOCUMENTS and not sidecar.documents:
        add(
            "documents",
            f"a {sidecar.message_type} message must list at least one document in <documents>",
            line_of("documents"),
        )

    doc_elements = root.findall(f"{_q('documents')}/{_q('document')}")
    seen: dict[str, str] = {}
    for document, element in zip(sidecar.documents, doc_elements, strict=True):
        name_problem = file_name_problem(document.file)
        folded = document.file.casefold()
        if name_problem:
            add("file", name_problem, element)
        elif folded in RESERVED_DOCUMENT_NAMES:
            add(
                "file",
                f"{document.file!r} cannot be a document's name: the message container uses it itself "
                f"({', '.join(RESERVED_DOCUMENT_NAMES)} are taken); rename the document"
                + (", or name your arkivmelding in <arkivmeldingFile>" if folded == SUPPLIED_ARKIVMELDING_NAME else ""),
                element,
            )
        if document.file in seen.values():
            add("file", f"the file {document.file!r} is listed twice; list each document once", element)
        elif folded in seen:
            add(
                "file",
                f"the files {seen[folded]!r} and {document.file!r} differ only in upper and lower case; the "
                "receiver's archive may not tell them apart: rename one",
                element,
            )
        seen.setdefault(folded, document.file)
    mains = [doc for doc in sidecar.documents if doc.main]
    if len(mains) > 1:
        add("document @main", f'{len(mains)} documents are marked main="true"; mark at most one')
    if sidecar.arkivmelding_file is not None:
        name_problem = file_name_problem(sidecar.arkivmelding_file)
        if name_problem:
            add("arkivmeldingFile", name_problem, line_of("arkivmeldingFile"))
        if sidecar.arkivmelding_file.casefold() in seen:
            add(
                "arkivmeldingFile",
                f"{sidecar.arkivmelding_file!r} is named both as arkivmelding and as a document; name it once",
                line_of("arkivmeldingFile"),
            )
    return problems


def write_sidecar(sidecar: Sidecar) -> bytes:
    """The XML form of `sidecar` (used for inbox message.xml and by tests)."""
    root = etree.Element(_q("message"), nsmap={None: NAMESPACE}, version="1")

    def put(parent: etree._Element, name: str, value: object) -> None:
        if value is not None:
            etree.SubElement(parent, _q(name)).text = str(value)

    put(root, "receiver", sidecar.receiver)
    put(root, "sender", sidecar.sender)
    put(root, "onBehalfOf", sidecar.on_behalf_of)
    put(root, "type", sidecar.message_type)
    put(root, "process", sidecar.process)
    put(root, "messageId", sidecar.message_id)
    put(root, "conversationId", sidecar.conversation_id)
    put(root, "inReplyTo", sidecar.in_reply_to)
    put(root, "title", sidecar.title)
    put(root, "securityLevel", sidecar.security_level)
    put(root, "channel", sidecar.channel)
    put(root, "deadline", sidecar.deadline.isoformat() if sidecar.deadline else None)
    put(root, "clientReference", sidecar.client_reference)
    for key, value in sidecar.options.items():
        block = KINDS[key].options
        assert block is not None, f"channel {key} takes no options block"
        block.write(value, etree.SubElement(root, _q(block.element)))
    if sidecar.receipt:
        receipt = etree.SubElement(root, _q("receipt"))
        put(receipt, "receiptType", sidecar.receipt.receipt_type)
        put(receipt, "relatedToMessageId", sidecar.receipt.related_to_message_id)
        for text in sidecar.receipt.texts:
            put(receipt, "text", text)
    if sidecar.avtalt:
        avtalt = etree.SubElement(root, _q("avtalt"))
        put(avtalt, "identifier", sidecar.avtalt.identifier)
        put(avtalt, "content", sidecar.avtalt.content)
    put(root, "arkivmeldingFile", sidecar.arkivmelding_file)
    if sidecar.documents:
        documents = etree.SubElement(root, _q("documents"))
        for doc in sidecar.documents:
            element = etree.SubElement(documents, _q("document"))
            if doc.main:
                element.set("main", "true")
            put(element, "file", doc.file)
            put(element, "title", doc.title)
            put(element, "mimeType", doc.mime_type)
            put(element, "size", doc.size)
            put(element, "sha256", doc.sha256)
            put(element, "originalFile", doc.original_file)
    put(root, "received", sidecar.received.isoformat() if sidecar.received else None)
    put(root, "signedBy", sidecar.signed_by)
    put(root, "senderNotVerified", sidecar.sender_not_verified)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
