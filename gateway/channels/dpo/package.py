"""Pack a message for the wire: sbd.json, and for messages with documents an encrypted ASiC-E.

The DPO upload is a plain zip `sbd.zip` holding `sbd.json` (never encrypted) and `asic.zip` (CMS
EnvelopedData of the signed ASiC-E). Status messages and receipts travel as `sbd.json` alone.
A small message is packed in memory: no file is created for it, which matters at hundreds of
messages a second. A large one streams through files in `work`; memory stays flat with its size.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from cryptography import x509

from gateway.formats.asice import AsicDocument, write_asice
from gateway.formats.cms import encrypt_file, encrypt_stream
from gateway.formats.keys import OrgIdentity
from gateway.formats.sbd import StandardBusinessDocument, to_json

SBD_ENTRY = "sbd.json"
ASIC_ENTRY = "asic.zip"
PACKAGE_NAME = "sbd.zip"
# Up to this many bytes of documents a package is built in memory; a few senders at once stay small.
IN_MEMORY_LIMIT = 4 << 20


def pack_message(
    sbd: StandardBusinessDocument,
    documents: Sequence[AsicDocument],
    identity: OrgIdentity,
    receiver_certificate: x509.Certificate | None,
    work: Path,
) -> Path | bytes:
    """The package: its bytes for a small message, else the path of `work/sbd.zip`.

    Repeatable: a finished package file is reused.
    """
    if documents and receiver_certificate is None:
        raise ValueError("a message with documents needs the receiver's certificate to encrypt to")
    if sum(document.size() for document in documents) <= IN_MEMORY_LIMIT:
        return pack_in_memory(sbd, documents, identity, receiver_certificate)
    package = work / PACKAGE_NAME
    if package.exists():
        return package
    work.mkdir(parents=True, exist_ok=True)
    encrypted = work / ASIC_ENTRY
    if documents:
        assert receiver_certificate is not None
        plain = work / "asic.asice.tmp"
        with open(plain, "w+b") as handle:
            write_asice(handle, documents, sbd.sender, sbd.receiver, identity)
        encrypt_file(plain, encrypted, receiver_certificate)
        plain.unlink()
    temp = work / f"{PACKAGE_NAME}.tmp"
    with open(temp, "wb") as target:
        _write_package(target, sbd, encrypted if documents else None)
    # No fsync: a package is a cache. The sender clears the package folder at start-up, so a package
    # torn by a power cut is rebuilt rather than uploaded.
    os.replace(temp, package)
    encrypted.unlink(missing_ok=True)
    return package


def pack_in_memory(
    sbd: StandardBusinessDocument,
    documents: Sequence[AsicDocument],
    identity: OrgIdentity,
    receiver_certificate: x509.Certificate | None,
) -> bytes:
    """The whole package as bytes: for status messages and messages under IN_MEMORY_LIMIT."""
    encrypted: bytes | None = None
    if documents:
        assert receiver_certificate is not None
        plain = io.BytesIO()
        write_asice(plain, documents, sbd.sender, sbd.receiver, identity)
        plain.seek(0)
        envelope = io.BytesIO()
        encrypt_stream(plain, envelope, receiver_certificate)
        encrypted = envelope.getvalue()
    package = io.BytesIO()
    _write_package(package, sbd, encrypted)
    return package.getvalue()


def _write_package(target: BinaryIO, sbd: StandardBusinessDocument, encrypted_asic: Path | bytes | None) -> None:
    with zipfile.ZipFile(target, "w", allowZip64=True) as archive:
        archive.writestr(zipfile.ZipInfo(SBD_ENTRY), to_json(sbd), compress_type=zipfile.ZIP_DEFLATED)
        # Already encrypted: compressing it would only cost time.
        if isinstance(encrypted_asic, Path):
            archive.write(encrypted_asic, ASIC_ENTRY, compress_type=zipfile.ZIP_STORED)
        elif encrypted_asic is not None:
            archive.writestr(zipfile.ZipInfo(ASIC_ENTRY), encrypted_asic, compress_type=zipfile.ZIP_STORED)
