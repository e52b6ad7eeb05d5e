"""Reading a DPI dokumentpakke: decrypt the CMS, open the ASiC-E, check every file against the XAdES signature.

Used by whoever receives DPI packages (the sandbox's mailbox and print service) and by the tests that read
Digdir's published examples. Documents are streamed to disk and hashed by chunks.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from lxml import etree

from gateway.channels.dpi.business import DpiFormatError
from gateway.channels.dpi.package import MAX_DOKUMENTPAKKE_BYTES, MIMETYPE, SDP_MANIFEST, SDP_NS, SIGNATURES
from gateway.channels.dpi.xades import verify_signatures_xml
from gateway.errors import SecurityError
from gateway.formats import cms
from gateway.formats.ziplimits import ZIP_ERRORS, ZipLimits, check_declared_sizes, check_expansion, zip_error_text
from gateway.xmlsafe import parse_bytes

_CHUNK = 1 << 20
_LIMITS = ZipLimits(max_entries=210, max_total_bytes=2 * MAX_DOKUMENTPAKKE_BYTES, max_ratio=200)
_MAX_SIGNATURES_BYTES = 4 << 20
_MAX_MANIFEST_BYTES = 1 << 20


@dataclass(frozen=True)
class PackageFile:
    name: str
    path: Path
    mime_type: str  # as the manifest names it
    size: int


@dataclass(frozen=True)
class PackageContents:
    files: list[PackageFile]  # the documents, main document first (manifest.xml is not among them)
    main_document: str
    manifest: bytes  # the SDP manifest.xml as it was signed
    signer: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    signing_time: datetime | None


def _documents_in_manifest(manifest: bytes) -> list[tuple[str, str]]:
    root = parse_bytes(manifest, "manifest.xml").getroot()
    if root.tag != f"{{{SDP_NS}}}manifest":
        raise DpiFormatError(f"manifest.xml has the root {root.tag}, not the SDP manifest")
    ns = {"sdp": SDP_NS}
    main = root.findall("sdp:hoveddokument", ns)
    if len(main) != 1:
        raise DpiFormatError(f"manifest.xml names {len(main)} main documents (hoveddokument), not one")
    listed = []
    for element in [*main, *root.findall("sdp:vedlegg", ns), *main[0].findall("sdp:data", ns)]:
        listed.append((element.get("href", ""), element.get("mime", "")))
    return listed


def _copy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> bytes:
    digest, written = hashlib.sha256(), 0
    with archive.open(info) as entry, open(target, "wb") as out:
        while chunk := entry.read(_CHUNK):
            written += len(chunk)
            check_expansion(info, written, _LIMITS, "the package")
            digest.update(chunk)
            out.write(chunk)
    return digest.digest()


def read_asice(source: Path, extract_to: Path, *, at: datetime | None = None) -> PackageContents:
    """Read a decrypted DPI ASiC-E: write its documents into `extract_to` and verify the XAdES signature.

    With `at`, the signer's certificate must also be valid at that time. Whether the signer is trusted (its
    chain) is the caller's question: `chain` holds the certificates the signature carries.
    """
    try:
        with zipfile.ZipFile(source) as archive:
            return _read(archive, extract_to, at)
    except ZIP_ERRORS as exc:
        raise SecurityError(f"the DPI package is not a readable zip: {zip_error_text(exc)}") from None


def _read(archive: zipfile.ZipFile, extract_to: Path, at: datetime | None) -> PackageContents:
    infos = archive.infolist()
    check_declared_sizes(infos, _LIMITS, "the package")
    by_name = {info.filename: info for info in infos}
    # Digdir's current packages start with a stored `mimetype`; the old SDP ones have none, and are read too.
    if "mimetype" in by_name and archive.read("mimetype").strip() != MIMETYPE.encode("ascii"):
        raise SecurityError("the DPI package's mimetype entry is not application/vnd.etsi.asic-e+zip")
    if SIGNATURES not in by_name or by_name[SIGNATURES].file_size > _MAX_SIGNATURES_BYTES:
        raise SecurityError("the DPI package has no META-INF/signatures.xml (or an impossibly large one)")
    if SDP_MANIFEST not in by_name or by_name[SDP_MANIFEST].file_size > _MAX_MANIFEST_BYTES:
        raise DpiFormatError("the DPI package has no manifest.xml (or an impossibly large one)")
    manifest = archive.read(SDP_MANIFEST)
    listed = _documents_in_manifest(manifest)
    digests: dict[str, bytes] = {SDP_MANIFEST: hashlib.sha256(manifest).digest()}
    extract_to.mkdir(parents=True, exist_ok=True)
    files: list[PackageFile] = []
    listed_names = {name for name, _ in listed}
    for info in infos:
        name = info.filename
        if name in ("mimetype", SDP_MANIFEST) or name.startswith("META-INF/") or info.is_dir():
            continue
        if name not in listed_names:
            raise SecurityError(f"the DPI package holds {name!r}, which its manifest does not name")
        if "/" in name or "\\" in name or name in (".", ".."):
            raise SecurityError(f"the DPI package holds {name!r}: a document name with a folder")
        digests[name] = _copy(archive, info, extract_to / name)
    for name, mime in listed:
        if name not in digests:
            raise SecurityError(f"the manifest names {name!r}, which is not in the DPI package")
        files.append(PackageFile(name, extract_to / name, mime, (extract_to / name).stat().st_size))
    verdict = verify_signatures_xml(archive.read(SIGNATURES), digests)
    if at is not None and not verdict.signer.not_valid_before_utc <= at <= verdict.signer.not_valid_after_utc:
        raise SecurityError(
            f"the package's signing certificate ({verdict.signer.subject.rfc4514_string()}) is not valid at "
            f"{at.isoformat()}: it is valid {verdict.signer.not_valid_before_utc:%Y-%m-%d} to "
            f"{verdict.signer.not_valid_after_utc:%Y-%m-%d}")
    return PackageContents(files, listed[0][0], manifest, verdict.signer, verdict.chain, verdict.signing_time)


def read_dokumentpakke(
    source: Path,
    private_key: RSAPrivateKey,
    certificate: x509.Certificate | None,
    extract_to: Path,
    *,
    at: datetime | None = None,
) -> PackageContents:
    """Decrypt a CMS dokumentpakke with the receiver's key (into a temporary file beside `extract_to`) and read it."""
    extract_to.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=extract_to.parent, prefix=".asice-", suffix=".zip") as plain:
        with open(source, "rb") as envelope:
            cms.decrypt_stream(envelope, plain, private_key, certificate)
        plain.flush()
        return read_asice(Path(plain.name), extract_to, at=at)


def manifest_text(manifest: bytes) -> str:
    """The manifest's XML pretty-printed, for a person reading the sandbox's mailbox."""
    return etree.tostring(parse_bytes(manifest, "manifest.xml"), pretty_print=True, encoding="unicode")
