"""Pack a message for the wire: sbd.json, and for messages with documents an encrypted ASiC-E.

The DPO upload is a plain zip `sbd.zip` holding `sbd.json` (never encrypted) and `asic.zip` (CMS
EnvelopedData of the signed ASiC-E). Status messages and receipts travel as `sbd.json` alone.
Everything streams through files; nothing is held whole in memory.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from gateway.formats.asice import AsicDocument, write_asice
from gateway.formats.cms import encrypt_file
from gateway.formats.keys import OrgIdentity
from gateway.formats.sbd import StandardBusinessDocument, to_json

SBD_ENTRY = "sbd.json"
ASIC_ENTRY = "asic.zip"
PACKAGE_NAME = "sbd.zip"


def pack_message(
    sbd: StandardBusinessDocument,
    documents: Sequence[AsicDocument],
    identity: OrgIdentity,
    receiver_certificate: x509.Certificate | None,
    work: Path,
) -> Path:
    """Write `work/sbd.zip` and return its path. Repeatable: a finished package is reused."""
    package = work / PACKAGE_NAME
    if package.exists():
        return package
    work.mkdir(parents=True, exist_ok=True)
    encrypted = work / ASIC_ENTRY
    if documents:
        if receiver_certificate is None:
            raise ValueError("a message with documents needs the receiver's certificate to encrypt to")
        plain = work / "asic.asice.tmp"
        with open(plain, "w+b") as handle:
            write_asice(handle, documents, sbd.sender, sbd.receiver, identity)
        encrypt_file(plain, encrypted, receiver_certificate)
        plain.unlink()
    temp = work / f"{PACKAGE_NAME}.tmp"
    with zipfile.ZipFile(temp, "w", allowZip64=True) as archive:
        archive.writestr(zipfile.ZipInfo(SBD_ENTRY), to_json(sbd), compress_type=zipfile.ZIP_DEFLATED)
        if documents:
            # Already encrypted: compressing it would only cost time.
            archive.write(encrypted, ASIC_ENTRY, compress_type=zipfile.ZIP_STORED)
    # No fsync: a package is a cache. The sender clears the package folder at start-up, so a package
    # torn by a power cut is rebuilt rather than uploaded.
    os.replace(temp, package)
    encrypted.unlink(missing_ok=True)
    return package
