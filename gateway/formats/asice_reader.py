"""Reading an ASiC-E container from a peer: its entries checked against limits and names, its documents
streamed out to disk, its manifest's digests and its CAdES signature verified (see asice.py for writing)."""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

from lxml import etree

from gateway.errors import SecurityError
from gateway.formats import cades
from gateway.formats.asice import (
    ASIC_MANIFEST,
    ASIC_NS,
    CHUNK,
    DS_NS,
    EFM_MANIFEST,
    MIMETYPE,
    ODF_MANIFEST,
    AsicContents,
    AsicFile,
    AsicLimits,
    name_problem,
)
from gateway.formats.keys import TrustStore
from gateway.formats.ziplimits import ZIP_ERRORS, ZipLimits, check_declared_sizes, check_expansion, zip_error_text
from gateway.fsio import archive_safe_names
from gateway.xmlsafe import parse_bytes

# Older writers use the namespace of the first schema published (v1.1.1), or the one the v1.2.1 XSD
# carried before it was corrected ("2918" without the zero). The reference reader takes all three.
_ASIC_NAMESPACES = (ASIC_NS, "http://uri.etsi.org/2918/v1.2.1#", "http://uri.etsi.org/02918/v1.1.1#")

# The standard URIs (RFC 6931), and the variants real writers put in ASiC manifests: the reference
# reads "xmldsig#sha…" as "xmlenc#sha…" and writes "xmlenc#sha384"; others write "xmldsig-more#sha256".
_DIGEST_URIS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": "sha1",
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha256": "sha256",
    "http://www.w3.org/2000/09/xmldsig#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha384": "sha384",
    "http://www.w3.org/2000/09/xmldsig#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
    "http://www.w3.org/2000/09/xmldsig#sha512": "sha512",
}
_MAX_META_ENTRY = 16 << 20
# Deflate cannot expand more than ~1032:1, so entries this small cannot be a bomb whatever their ratio.
_RATIO_FLOOR = 1 << 16


DEFAULT_LIMITS = AsicLimits()


def _zip_limits(limits: AsicLimits) -> ZipLimits:
    return ZipLimits(limits.max_entries, limits.max_total_bytes, limits.max_ratio, ratio_floor=_RATIO_FLOOR,
                     names_differ_in_case=True)


def _check_entries(infos: list[zipfile.ZipInfo], limits: AsicLimits) -> None:
    for info in infos:
        name = info.filename
        problem = name_problem(name)
        if problem:
            raise SecurityError(f"unsafe entry name {name!r} in the container: it has {problem}")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise SecurityError(f"the container entry {name!r} is a symbolic link; links are not allowed")
        if info.flag_bits & 0x1:
            raise SecurityError(f"the container entry {name!r} is encrypted; ASiC-E entries must not be")
    check_declared_sizes(infos, _zip_limits(limits), "the container")


@dataclass
class _Budget:
    limits: AsicLimits
    used: int = 0
    created: list[Path] = field(default_factory=list)


def _copy_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, write: Callable[[bytes], object], budget: _Budget
) -> int:
    """Copy one entry's bytes to `write`, counting real bytes against the limits."""
    written = 0
    with archive.open(info) as entry:
        while chunk := entry.read(CHUNK):
            written += len(chunk)
            budget.used += len(chunk)
            if budget.used > budget.limits.max_total_bytes:
                raise SecurityError(
                    f"total size limit: the container holds more than {budget.limits.max_total_bytes} bytes "
                    "uncompressed"
                )
            check_expansion(info, written, _zip_limits(budget.limits), "the container")
            write(chunk)
    return written


def _read_small(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytes:
    if info.file_size > _MAX_META_ENTRY:
        raise SecurityError(f"{info.filename!r} is larger than the {_MAX_META_ENTRY} bytes allowed for it")
    parts: list[bytes] = []
    _copy_entry(archive, info, parts.append, budget)
    content = b"".join(parts)
    if len(content) > _MAX_META_ENTRY:
        raise SecurityError(f"{info.filename!r} is larger than the {_MAX_META_ENTRY} bytes allowed for it")
    return content


def _find(infos: list[zipfile.ZipInfo], name: str) -> zipfile.ZipInfo | None:
    exact = [info for info in infos if info.filename == name]
    if exact:
        return exact[0]
    folded = [info for info in infos if info.filename.casefold() == name.casefold()]
    return folded[0] if folded else None


def _check_mimetype(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], budget: _Budget) -> None:
    first = infos[0] if infos else None
    if first is None or first.filename != "mimetype":
        raise SecurityError("the container does not start with a 'mimetype' entry; it is not an ASiC-E")
    if first.compress_type != zipfile.ZIP_STORED:
        raise SecurityError("the 'mimetype' entry is compressed; ASiC-E requires it stored")
    content = _read_small(archive, first, budget)
    if content.strip() != MIMETYPE.encode("ascii"):
        raise SecurityError(f"the 'mimetype' entry says {content[:60]!r}, not {MIMETYPE}")


@dataclass(frozen=True)
class _Reference:
    name: str
    mime_type: str
    digest_name: str
    digest: bytes


def _references(manifest: bytes, data_names: set[str]) -> tuple[str, list[_Reference]]:
    """The signature's name and the data object references of a (signature-checked) ASiC manifest."""
    root = parse_bytes(manifest, source=ASIC_MANIFEST).getroot()
    namespace = etree.QName(root).namespace
    if etree.QName(root).localname != "ASiCManifest" or namespace not in _ASIC_NAMESPACES:
        found = f"in the namespace {namespace}" if namespace else "in no namespace"
        raise SecurityError(
            f"{ASIC_MANIFEST} has the root element {etree.QName(root).localname} {found}; "
            f"an ASiC manifest is ASiCManifest in {' or '.join(_ASIC_NAMESPACES)}"
        )
    signature_refs = root.findall(f"{{{namespace}}}SigReference")
    if len(signature_refs) != 1 or not signature_refs[0].get("URI"):
        raise SecurityError("the ASiC manifest must have exactly one SigReference with a URI")
    references: list[_Reference] = []
    for element in root.findall(f"{{{namespace}}}DataObjectReference"):
        uri = element.get("URI") or ""
        name = uri if uri in data_names else unquote(uri)
        method = element.find(f"{{{DS_NS}}}DigestMethod")
        value = element.find(f"{{{DS_NS}}}DigestValue")
        algorithm = method.get("Algorithm") if method is not None else None
        if algorithm not in _DIGEST_URIS:
            raise SecurityError(f"the ASiC manifest entry for {name!r} uses the unsupported digest {algorithm}")
        try:
            digest = base64.b64decode((value.text or "") if value is not None else "", validate=True)
        except ValueError:
            raise SecurityError(f"the ASiC manifest entry for {name!r} has a malformed digest value") from None
        references.append(
            _Reference(name, element.get("MimeType") or "application/octet-stream", _DIGEST_URIS[algorithm], digest)
        )
    return signature_refs[0].get("URI") or "", references


def _target_path(extract_to: Path, name: str) -> Path:
    root = extract_to.resolve()
    path = root.joinpath(*name.split("/"))
    if not path.resolve().is_relative_to(root):
        raise SecurityError(f"the container entry {name!r} would be written outside the target folder")
    return path


def _extract(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    reference: _Reference,
    extract_to: Path,
    budget: _Budget,
    durable: bool,
    stored_as: str,
) -> AsicFile:
    path = _target_path(extract_to, stored_as)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.new(reference.digest_name)

    def write(chunk: bytes) -> None:
        digest.update(chunk)
        handle.write(chunk)

    with open(path, "xb") as handle:
        budget.created.append(path)
        size = _copy_entry(archive, info, write, budget)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    if digest.digest() != reference.digest:
        raise SecurityError(
            f"{info.filename!r} was changed: its {reference.digest_name.upper()} digest does not match "
            "the signed ASiC manifest"
        )
    return AsicFile(info.filename, path, reference.mime_type, size)


def _checked_content(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, reference: _Reference, budget: _Budget
) -> bytes | None:
    """An entry's bytes, checked against the signed digest, without a file; None when it is too large to keep."""
    digest = hashlib.new(reference.digest_name)
    content = bytearray()

    def keep(chunk: bytes) -> None:
        digest.update(chunk)
        if len(content) <= _MAX_META_ENTRY:
            content.extend(chunk)

    size = _copy_entry(archive, info, keep, budget)
    if digest.digest() != reference.digest:
        raise SecurityError(
            f"{info.filename!r} was changed: its {reference.digest_name.upper()} digest does not match "
            "the signed ASiC manifest"
        )
    return bytes(content) if size <= _MAX_META_ENTRY else None


def _check_metadata_entries(
    infos: list[zipfile.ZipInfo], manifest: zipfile.ZipInfo, signature: zipfile.ZipInfo
) -> None:
    """Refuse any file under META-INF/ that nothing signs: only the signed manifest's own files may be there."""
    allowed = {manifest.filename, signature.filename}
    for info in infos:
        name = info.filename
        if not name.upper().startswith("META-INF/") or name in allowed or name.casefold() == ODF_MANIFEST.casefold():
            continue
        if info.is_dir() and info.file_size == 0:
            continue
        raise SecurityError(
            f"extra file {name!r} in META-INF/: nothing signs it; only {ASIC_MANIFEST}, the signature it names "
            f"({signature.filename}) and {ODF_MANIFEST} may be there"
        )


def _main_document(manifest: bytes | None) -> str | None:
    if manifest is None:
        return None
    root = parse_bytes(manifest, source=EFM_MANIFEST).getroot()
    main = root.find("{*}hoveddokument")
    return main.get("href") if main is not None else None


def read_asice(
    source: Path | BinaryIO,
    extract_to: Path,
    trust: TrustStore,
    limits: AsicLimits = DEFAULT_LIMITS,
    *,
    at: datetime,
    durable: bool = False,
) -> AsicContents:
    """Verify an ASiC-E completely and extract its data files into `extract_to`.

    `at` is when the message was received, on the caller's clock: the signer's chain must be valid then.

    On any failure the files extracted so far are removed again and SecurityError names the rule.
    With `durable`, each extracted file is fsynced before it is counted as written.
    """
    try:
        with zipfile.ZipFile(source) as archive:
            budget = _Budget(limits)
            try:
                return _read(archive, extract_to, trust, budget, at, durable)
            except BaseException:
                for path in reversed(budget.created):
                    path.unlink(missing_ok=True)
                raise
    except ZIP_ERRORS as exc:
        raise SecurityError(f"the container is not a readable zip file: {zip_error_text(exc)}") from None


def _read(
    archive: zipfile.ZipFile, extract_to: Path, trust: TrustStore, budget: _Budget, at: datetime, durable: bool
) -> AsicContents:
    infos = archive.infolist()
    _check_entries(infos, budget.limits)
    _check_mimetype(archive, infos, budget)
    manifests = [info for info in infos if info.filename.casefold() == ASIC_MANIFEST.casefold()]
    if not manifests:
        raise SecurityError("the container has no META-INF/ASiCManifest.xml; it is not a signed ASiC-E")
    manifest = _read_small(archive, manifests[0], budget)
    data_infos = [
        info
        for info in infos
        if not info.is_dir() and info.filename != "mimetype" and not info.filename.upper().startswith("META-INF/")
    ]
    signature_name, references = _references(manifest, {info.filename for info in data_infos})
    signature_info = _find(infos, signature_name)
    if signature_info is None:
        raise SecurityError(f"the signature {signature_name!r} named in the ASiC manifest is missing")
    _check_metadata_entries(infos, manifests[0], signature_info)
    verdict = cades.check_detached(_read_small(archive, signature_info, budget), manifest, trust, at)

    by_name: dict[str, _Reference] = {}
    for reference in references:
        if reference.name in by_name:
            raise SecurityError(f"the ASiC manifest lists {reference.name!r} twice")
        by_name[reference.name] = reference
    present = {info.filename for info in data_infos}
    for info in data_infos:
        if info.filename not in by_name:
            raise SecurityError(f"extra file {info.filename!r}: it is in the container but not in the signed manifest")
    for name in by_name:
        if name not in present:
            raise SecurityError(f"missing file {name!r}: the signed manifest lists it but the container lacks it")

    extract_to.mkdir(parents=True, exist_ok=True)
    main_document = None
    files = []
    # Names the archive's file system may refuse (aux.pdf, a:b.pdf, "rapport.", A.pdf beside a.pdf) are written
    # under safe ones; each AsicFile keeps the sender's name beside the path.
    stored_as = archive_safe_names([info.filename for info in data_infos if info.filename != EFM_MANIFEST])
    for info in data_infos:
        if info.filename == EFM_MANIFEST:
            main_document = _main_document(_checked_content(archive, info, by_name[info.filename], budget))
        else:
            files.append(_extract(archive, info, by_name[info.filename], extract_to, budget, durable,
                                  stored_as[info.filename]))
    files.sort(key=lambda item: item.name != main_document)
    return AsicContents(files, verdict.certificate, main_document, verdict.warnings)
