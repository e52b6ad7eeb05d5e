"""ASiC-E containers: writing a signed one from files on disk, reading and verifying one from a peer.

Both directions stream the documents; only the manifests and the signature are held in memory.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography import x509
from lxml import etree

from gateway.formats import cades
from gateway.formats.keys import OrgIdentity
from gateway.identifiers import to_party_value

MIMETYPE = "application/vnd.etsi.asic-e+zip"
ASIC_NS = "http://uri.etsi.org/02918/v1.2.1#"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
ODF_NS = "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"
EFM_MANIFEST = "manifest.xml"
ASIC_MANIFEST = "META-INF/ASiCManifest.xml"
SIGNATURE_MIME = "application/x-pkcs7-signature"
PARTY_AUTHORITY = "iso6523-actorid-upis"
ODF_MANIFEST = "META-INF/manifest.xml"
_SHA256_URI = "http://www.w3.org/2001/04/xmlenc#sha256"
CHUNK = 1 << 20
# Already-compressed formats gain nothing from deflate; storing them saves CPU on large files.
_STORED_MIME_TYPES = {
    "application/pdf",
    "application/zip",
    "image/jpeg",
    "image/png",
    "video/mp4",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.oasis.opendocument.text",
}


@dataclass(frozen=True)
class AsicDocument:
    name: str
    source: Path | bytes  # a file streamed from disk, or the bytes themselves (small generated files)
    mime_type: str

    def size(self) -> int:
        return len(self.source) if isinstance(self.source, bytes) else self.source.stat().st_size


@dataclass(frozen=True)
class AsicLimits:
    max_entries: int = 500
    max_total_bytes: int = 2 * 1024**3
    max_ratio: int = 200


@dataclass(frozen=True)
class AsicFile:
    name: str  # as the sender named it
    path: Path  # where it was written: under a name any archive's file system can hold (fsio.archive_safe_names)
    mime_type: str
    size: int


@dataclass(frozen=True)
class AsicContents:
    files: list[AsicFile]
    signer: x509.Certificate | None  # None: the channel carries no sender's signature (DPF)
    main_document: str | None
    # What the trust check accepted with a reservation (the signer's revocation status could not be had,
    # trust.revocation warn): written into the incoming message's status.
    trust_warnings: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------- writing


def _xml(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)


def _party(parent: etree._Element, tag: str, identifier: str) -> None:
    organisation = etree.SubElement(etree.SubElement(parent, tag), "organisasjon", authority=PARTY_AUTHORITY)
    organisation.text = to_party_value(identifier)


def efm_manifest(sender: str, receiver: str, main_document: AsicDocument) -> bytes:
    """The eFormidling `manifest.xml`: receiver, sender and the main document, as the reference writes it."""
    root = etree.Element("manifest")
    _party(root, "mottaker", receiver)
    _party(root, "avsender", sender)
    main = etree.SubElement(root, "hoveddokument", href=main_document.name, mime=main_document.mime_type)
    etree.SubElement(main, "tittel", lang="no").text = "Hoveddokument"
    return _xml(root)


def _asic_manifest(signature_name: str, references: Sequence[tuple[str, str, bytes]]) -> bytes:
    root = etree.Element(f"{{{ASIC_NS}}}ASiCManifest", nsmap={None: ASIC_NS, "ds": DS_NS})
    etree.SubElement(root, f"{{{ASIC_NS}}}SigReference", URI=signature_name, MimeType=SIGNATURE_MIME)
    for name, mime_type, digest in references:
        reference = etree.SubElement(root, f"{{{ASIC_NS}}}DataObjectReference", URI=name, MimeType=mime_type)
        etree.SubElement(reference, f"{{{DS_NS}}}DigestMethod", Algorithm=_SHA256_URI)
        etree.SubElement(reference, f"{{{DS_NS}}}DigestValue").text = base64.b64encode(digest).decode("ascii")
    return _xml(root)


def _odf_manifest(references: Sequence[tuple[str, str, bytes]]) -> bytes:
    root = etree.Element(f"{{{ODF_NS}}}manifest", nsmap={"manifest": ODF_NS})
    attribute = f"{{{ODF_NS}}}"
    etree.SubElement(root, f"{attribute}file-entry", {f"{attribute}full-path": "/", f"{attribute}media-type": MIMETYPE})
    for name, mime_type, _ in references:
        etree.SubElement(
            root, f"{attribute}file-entry", {f"{attribute}full-path": name, f"{attribute}media-type": mime_type}
        )
    return _xml(root)


def _check_document_names(documents: Sequence[AsicDocument]) -> None:
    if not documents:
        raise ValueError("an ASiC-E container needs at least one document")
    seen: set[str] = set()
    for document in documents:
        name = document.name
        if name.casefold() in seen:
            raise ValueError(f"the document name {name!r} is used twice")
        seen.add(name.casefold())
        if name in ("mimetype", EFM_MANIFEST) or name.upper().startswith("META-INF/") or name_problem(name):
            raise ValueError(f"{name!r} cannot be a document name in an ASiC-E container")


def write_asice(
    target: BinaryIO, documents: Sequence[AsicDocument], sender: str, receiver: str, identity: OrgIdentity
) -> None:
    """Write a signed ASiC-E to `target` (seekable, so no entry needs a data descriptor).

    documents[0] is the main document. Documents are streamed from their paths.
    """
    _check_document_names(documents)
    if not target.seekable():
        raise ValueError(
            "write_asice needs a seekable target (a file): Java readers refuse stored entries with data descriptors"
        )
    references: list[tuple[str, str, bytes]] = []
    with zipfile.ZipFile(target, "w", allowZip64=True) as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE.encode("ascii"), compress_type=zipfile.ZIP_STORED)
        manifest = efm_manifest(sender, receiver, documents[0])
        archive.writestr(EFM_MANIFEST, manifest, compress_type=zipfile.ZIP_DEFLATED)
        references.append((EFM_MANIFEST, "application/xml", hashlib.sha256(manifest).digest()))
        for document in documents:
            references.append((document.name, document.mime_type, _stream_document(archive, document)))
        asic_manifest = _asic_manifest(signature_name := f"META-INF/signature-{uuid.uuid4()}.p7s", references)
        archive.writestr(ASIC_MANIFEST, asic_manifest, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr(
            signature_name, cades.sign_detached(asic_manifest, identity), compress_type=zipfile.ZIP_DEFLATED
        )
        archive.writestr(ODF_MANIFEST, _odf_manifest(references), compress_type=zipfile.ZIP_DEFLATED)


def _stream_document(archive: zipfile.ZipFile, document: AsicDocument) -> bytes:
    compression = zipfile.ZIP_STORED if document.mime_type in _STORED_MIME_TYPES else zipfile.ZIP_DEFLATED
    if isinstance(document.source, bytes):
        info = zipfile.ZipInfo(document.name, date_time=time.localtime()[:6])
        info.compress_type = compression
        archive.writestr(info, document.source)
        return hashlib.sha256(document.source).digest()
    info = zipfile.ZipInfo.from_file(document.source, arcname=document.name)
    info.compress_type = compression
    digest = hashlib.sha256()
    with open(document.source, "rb") as source, archive.open(info, "w") as entry:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            entry.write(chunk)
    return digest.digest()


def name_problem(name: str) -> str | None:
    if not name or "\x00" in name:
        return "an empty name or a NUL byte"
    if "\\" in name:
        return "a backslash"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if any(part in ("..", ".") for part in name.split("/")):
        return "'..' or '.' as a path part"
    if any(ord(ch) < 32 for ch in name):
        return "control characters"
    return None
