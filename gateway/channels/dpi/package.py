"""The DPI dokumentpakke: an ASiC-E signed with XAdES, CMS-encrypted to the mailbox's or print service's certificate.

Laid out as Digdir's published examples: `mimetype` (stored, first), the SDP `manifest.xml`, the documents,
`META-INF/signatures.xml` and the ODF `META-INF/manifest.xml`. Documents are streamed and hashed by chunks,
and the encrypted package's fingerprint is the SHA-256 of the CMS bytes (not of the zip), taken as it is written.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from cryptography import x509
from lxml import etree

from gateway.channels.dpi.business import AUTHORITY, DpiFormatError, Fingeravtrykk, party_value
from gateway.channels.dpi.xades import XadesReference, sign_signatures_xml
from gateway.formats import cms
from gateway.formats.keys import OrgIdentity

MIMETYPE = "application/vnd.etsi.asic-e+zip"
SDP_NS = "http://begrep.difi.no/sdp/schema_v10"
ODF_NS = "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"
SDP_MANIFEST = "manifest.xml"
SIGNATURES = "META-INF/signatures.xml"
ODF_MANIFEST = "META-INF/manifest.xml"
MAX_DOKUMENTPAKKE_BYTES = 50 * 1024 * 1024  # the DPI limit (networks.md: DPI 50 MB)
MAX_DOCUMENTS = 200  # the SDP manifest allows 200 vedlegg besides the main document
_CHUNK = 1 << 20
# What no mailbox may carry (executables; Digdir's "Dokumentformat" rules) and what a print service prints (PDF).
_EXECUTABLE_TYPES = {
    "application/x-msdownload", "application/x-msdos-program", "application/x-executable",
    "application/x-sh", "application/x-bat", "application/x-msi", "application/vnd.microsoft.portable-executable",
    "application/java-archive", "application/javascript", "text/javascript", "application/x-dosexec",
}
_EXECUTABLE_SUFFIXES = {".exe", ".bat", ".cmd", ".com", ".scr", ".msi", ".pif", ".cpl", ".vbs", ".js", ".jar",
                        ".sh", ".ps1", ".dll", ".app"}
PRINT_MIME_TYPE = "application/pdf"
_STORED_TYPES = {"application/pdf", "application/zip", "image/jpeg", "image/png"}


@dataclass(frozen=True)
class DpiDocument:
    name: str  # the name in the package (and the mailbox): no folders
    source: Path | bytes  # a file streamed from disk, or the bytes themselves
    mime_type: str
    title: str | None = None  # shown in the mailbox; the name when absent
    # The main document's data file (SDP `<data>`, e.g. a link or the arkivmelding's metadata), not a vedlegg
    main_data: bool = False

    def size(self) -> int:
        return len(self.source) if isinstance(self.source, bytes) else self.source.stat().st_size

    def head(self, size: int) -> bytes:
        if isinstance(self.source, bytes):
            return self.source[:size]
        with open(self.source, "rb") as handle:
            return handle.read(size)


@dataclass(frozen=True)
class ManifestParties:
    """Who the SDP manifest names: the sender always, the person only for digital post (not for print)."""

    avsender_orgnr: str
    postkasseadresse: str | None = None
    personidentifikator: str | None = None
    avsenderidentifikator: str | None = None
    fakturareferanse: str | None = None
    language: str = "NO"  # ISO 639-1, two letters

    def __post_init__(self) -> None:
        if len(self.language) != 2 or not self.language.isalpha():
            raise DpiFormatError(f"the language must be a two-letter ISO 639-1 code, not {self.language!r}")
        if self.avsenderidentifikator is not None and not 1 <= len(self.avsenderidentifikator) <= 100:
            raise DpiFormatError("avsenderidentifikator must be 1 to 100 characters")
        if self.fakturareferanse is not None and not 1 <= len(self.fakturareferanse) <= 40:
            raise DpiFormatError("fakturaReferanse must be 1 to 40 characters")


@dataclass(frozen=True)
class Dokumentpakke:
    path: Path  # the CMS file
    size: int
    fingerprint: Fingeravtrykk  # SHA-256 of the CMS bytes


def _name_problem(name: str) -> str | None:
    if not name or "/" in name or "\\" in name or "\x00" in name or any(ord(ch) < 32 for ch in name):
        return "it must be a plain file name without folders or control characters"
    if name in (".", "..", "mimetype", SDP_MANIFEST) or name.upper().startswith("META-INF"):
        return "the package uses that name itself"
    if not 4 <= len(name) <= 100:
        return "the SDP manifest takes names of 4 to 100 characters"
    return None


def check_documents(documents: Sequence[DpiDocument], *, print_letter: bool = False) -> None:
    """Refuse, before anything is built or sent, what DPI cannot carry: too many or too large documents,
    names the package cannot hold, executables, and for print anything but PDF."""
    if not documents:
        raise DpiFormatError("a DPI letter needs at least one document")
    if len(documents) > MAX_DOCUMENTS + 1:
        raise DpiFormatError(f"a DPI letter carries at most {MAX_DOCUMENTS + 1} documents, not {len(documents)}")
    seen: set[str] = set()
    total = 0
    for document in documents:
        problem = _name_problem(document.name)
        if problem:
            raise DpiFormatError(f"the document name {document.name!r} cannot be used in DPI: {problem}")
        if not 1 <= len(document.mime_type) <= 100 or "/" not in document.mime_type:
            raise DpiFormatError(f"{document.name!r} has no usable MIME type ({document.mime_type!r})")
        if document.title is not None and not 1 <= len(document.title) <= 255:
            raise DpiFormatError(f"the title of {document.name!r} must be 1 to 255 characters")
        if document.name.casefold() in seen:
            raise DpiFormatError(f"the document name {document.name!r} is used twice")
        seen.add(document.name.casefold())
        mime = document.mime_type.split(";")[0].strip().lower()
        suffix = Path(document.name).suffix.lower()
        if mime in _EXECUTABLE_TYPES or suffix in _EXECUTABLE_SUFFIXES:
            raise DpiFormatError(
                f"{document.name!r} ({document.mime_type}) is a program; DPI does not carry executable files")
        if print_letter and (mime != PRINT_MIME_TYPE or not document.head(5) == b"%PDF-"):
            raise DpiFormatError(
                f"{document.name!r} ({document.mime_type}) cannot be printed: a print letter takes PDF documents only")
        try:
            total += document.size()
        except OSError as exc:
            raise DpiFormatError(f"{document.name!r} cannot be read: {exc.strerror}") from None
    if total > MAX_DOKUMENTPAKKE_BYTES:
        raise DpiFormatError(
            f"the documents come to {total} bytes; DPI takes at most {MAX_DOKUMENTPAKKE_BYTES} bytes "
            f"({MAX_DOKUMENTPAKKE_BYTES // (1024 * 1024)} MB) per letter")


def sdp_manifest(parties: ManifestParties, documents: Sequence[DpiDocument]) -> bytes:
    """The SDP `manifest.xml` (namespace schema_v10): documents[0] is the main document, the rest vedlegg
    (or the main document's `<data>` where marked so)."""
    root = etree.Element(f"{{{SDP_NS}}}manifest", nsmap={None: SDP_NS})
    if parties.postkasseadresse or parties.personidentifikator:
        person = etree.SubElement(etree.SubElement(root, f"{{{SDP_NS}}}mottaker"), f"{{{SDP_NS}}}person")
        if parties.personidentifikator:
            etree.SubElement(person, f"{{{SDP_NS}}}personidentifikator").text = parties.personidentifikator
        if parties.postkasseadresse:
            etree.SubElement(person, f"{{{SDP_NS}}}postkasseadresse").text = parties.postkasseadresse
    avsender = etree.SubElement(root, f"{{{SDP_NS}}}avsender")
    etree.SubElement(avsender, f"{{{SDP_NS}}}organisasjon", authority=AUTHORITY).text = party_value(
        parties.avsender_orgnr)
    if parties.avsenderidentifikator:
        etree.SubElement(avsender, f"{{{SDP_NS}}}avsenderidentifikator").text = parties.avsenderidentifikator
    if parties.fakturareferanse:
        etree.SubElement(avsender, f"{{{SDP_NS}}}fakturaReferanse").text = parties.fakturareferanse
    main, rest = documents[0], documents[1:]
    data = [document for document in rest if document.main_data]
    if len(data) > 1 or main.main_data:
        raise DpiFormatError("a DPI letter has at most one data file for its main document, and it is not the main one")
    element = _manifest_document(root, "hoveddokument", main, parties.language)
    for document in data:
        etree.SubElement(element, f"{{{SDP_NS}}}data", href=document.name, mime=document.mime_type)
    for document in rest:
        if not document.main_data:
            _manifest_document(root, "vedlegg", document, parties.language)
    return xml_document(root)


def _manifest_document(root: etree._Element, tag: str, document: DpiDocument, language: str) -> etree._Element:
    element = etree.SubElement(root, f"{{{SDP_NS}}}{tag}", href=document.name, mime=document.mime_type)
    etree.SubElement(element, f"{{{SDP_NS}}}tittel", lang=language).text = document.title or document.name
    return element


def xml_document(root: etree._Element, standalone: str = "yes") -> bytes:
    """The XML with its declaration written as Digdir's (Java) writers do, in double quotes."""
    declaration = f'<?xml version="1.0" encoding="UTF-8" standalone="{standalone}"?>'.encode("ascii")
    return declaration + etree.tostring(root, encoding="UTF-8")


def _odf_manifest(entries: Sequence[tuple[str, str]]) -> bytes:
    root = etree.Element(f"{{{ODF_NS}}}manifest", nsmap={"ns1": ODF_NS})
    prefix = f"{{{ODF_NS}}}"
    for name, mime in (("/", MIMETYPE), *entries):
        etree.SubElement(root, f"{prefix}file-entry", {f"{prefix}full-path": name, f"{prefix}media-type": mime})
    return xml_document(root)


def _entry(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.compress_type = compress
    return info


def _write_document(archive: zipfile.ZipFile, document: DpiDocument) -> bytes:
    mime = document.mime_type.split(";")[0].strip().lower()
    info = _entry(document.name, zipfile.ZIP_STORED if mime in _STORED_TYPES else zipfile.ZIP_DEFLATED)
    digest = hashlib.sha256()
    if isinstance(document.source, bytes):
        archive.writestr(info, document.source)
        digest.update(document.source)
        return digest.digest()
    with open(document.source, "rb") as source, archive.open(info, "w") as entry:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            entry.write(chunk)
    return digest.digest()


def write_asice(
    target: BinaryIO,
    documents: Sequence[DpiDocument],
    parties: ManifestParties,
    identity: OrgIdentity,
    *,
    signing_time: datetime | None = None,
) -> None:
    """Write the signed (unencrypted) ASiC-E to `target`, a seekable file, streaming every document."""
    manifest = sdp_manifest(parties, documents)
    references = [XadesReference(SDP_MANIFEST, "application/xml", hashlib.sha256(manifest).digest())]
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr(_entry("mimetype", zipfile.ZIP_STORED), MIMETYPE.encode("ascii"))
        archive.writestr(_entry(SDP_MANIFEST, zipfile.ZIP_DEFLATED), manifest)
        for document in documents:
            references.append(XadesReference(document.name, document.mime_type, _write_document(archive, document)))
        archive.writestr(_entry(SIGNATURES, zipfile.ZIP_DEFLATED),
                         sign_signatures_xml(references, identity, signing_time))
        archive.writestr(_entry(ODF_MANIFEST, zipfile.ZIP_DEFLATED),
                         _odf_manifest([(reference.name, reference.mime_type) for reference in references]))


class _HashingWriter:
    """Passes writes to a file and hashes them: the fingerprint of the CMS without reading it back."""

    def __init__(self, target: BinaryIO) -> None:
        self.target, self.digest, self.size = target, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.target.write(data)


def build_dokumentpakke(
    documents: Sequence[DpiDocument],
    parties: ManifestParties,
    identity: OrgIdentity,
    recipient: x509.Certificate,
    target: Path,
    *,
    print_letter: bool = False,
    signing_time: datetime | None = None,
) -> Dokumentpakke:
    """Check the documents, write the signed ASiC-E to a temporary file beside `target`, and encrypt it to
    `recipient` into `target`. Memory stays flat whatever the documents' size."""
    check_documents(documents, print_letter=print_letter)
    try:
        with tempfile.TemporaryFile(dir=target.parent, prefix=".asice-") as plain:
            write_asice(plain, documents, parties, identity, signing_time=signing_time)
            plain.seek(0)
            with open(target, "wb") as envelope:
                writer = _HashingWriter(envelope)
                cms.encrypt_stream(plain, writer, recipient, chunk_size=_CHUNK)  # type: ignore[arg-type]
    except BaseException:
        target.unlink(missing_ok=True)  # no half-written package for anyone to send
        raise
    return Dokumentpakke(target, writer.size, Fingeravtrykk.of_digest(writer.digest.digest()))


def cms_fingerprint(source: Path | bytes) -> Fingeravtrykk:
    """The `dokumentpakkefingeravtrykk` of an encrypted package: SHA-256 of the CMS bytes, read by chunks."""
    if isinstance(source, bytes):
        return Fingeravtrykk.of_digest(hashlib.sha256(source).digest())
    digest = hashlib.sha256()
    with open(source, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return Fingeravtrykk.of_digest(digest.digest())
