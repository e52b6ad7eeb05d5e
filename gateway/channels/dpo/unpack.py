"""Open a received package: the SBD first (cheap), then decrypt and verify the ASiC-E.

A small package is opened in memory; a large one streams through files in `work`.
"""

from __future__ import annotations

import io
import stat
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from gateway.channels.dpo.package import ASIC_ENTRY, IN_MEMORY_LIMIT, SBD_ENTRY
from gateway.errors import MessageFormatError, SecurityError
from gateway.formats.asice import AsicContents, AsicLimits
from gateway.formats.asice_reader import read_asice
from gateway.formats.cms import decrypt_file, decrypt_stream
from gateway.formats.keys import OrgIdentity, TrustStore
from gateway.formats.sbd import StandardBusinessDocument, from_json
from gateway.formats.ziplimits import ZIP_ERRORS, ZipLimits, check_declared_sizes, zip_error_text

MAX_SBD_BYTES = 1 << 20
# The largest payload any channel carries (DPO and DPF: 1 GB), with room for the encryption.
MAX_ASIC_BYTES = 1_100_000_000
MAX_COMPRESSION_RATIO = 100
# Checked on the declared sizes before anything is extracted; the real bytes are counted as they come.
PACKAGE_LIMITS = ZipLimits(
    max_entries=2,
    max_total_bytes=MAX_SBD_BYTES + MAX_ASIC_BYTES,
    max_ratio=MAX_COMPRESSION_RATIO,
    ratio_floor=1 << 20,
    max_entry_bytes={SBD_ENTRY: MAX_SBD_BYTES, ASIC_ENTRY: MAX_ASIC_BYTES},
)


@dataclass(frozen=True)
class ReceivedPackage:
    sbd: StandardBusinessDocument
    encrypted_asic: Path | bytes | None  # a file in the work folder, or the bytes of a small one


def open_package(download: Path | BinaryIO, work: Path, normalise_retired: bool = False) -> ReceivedPackage:
    """Read `sbd.json` and take out `asic.zip` (still encrypted) from a downloaded package."""
    try:
        with zipfile.ZipFile(download) as archive:
            entries = {info.filename: info for info in archive.infolist()}
            unexpected = sorted(set(entries) - {SBD_ENTRY, ASIC_ENTRY})
            if unexpected:
                raise SecurityError(f"the package holds unexpected entries {unexpected}; only sbd.json and asic.zip")
            if SBD_ENTRY not in entries:
                raise MessageFormatError("the package has no sbd.json")
            for info in entries.values():
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise SecurityError(f"the package entry {info.filename!r} is a link")
                if info.flag_bits & 0x1:
                    raise MessageFormatError(f"the package entry {info.filename!r} is encrypted with a zip password")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise MessageFormatError(
                        f"the package entry {info.filename!r} uses zip compression method {info.compress_type}; "
                        "only stored and deflated are used in eFormidling"
                    )
            check_declared_sizes(archive.infolist(), PACKAGE_LIMITS, "the package")
            if entries[SBD_ENTRY].file_size > MAX_SBD_BYTES:
                raise SecurityError(f"sbd.json is larger than {MAX_SBD_BYTES} bytes")
            with archive.open(SBD_ENTRY) as handle:
                sbd = from_json(handle.read(MAX_SBD_BYTES + 1), normalise_retired=normalise_retired)
            encrypted = _take_asic(archive, entries[ASIC_ENTRY], work) if ASIC_ENTRY in entries else None
    except ZIP_ERRORS as exc:
        raise MessageFormatError(f"the package is not a readable zip: {zip_error_text(exc)}") from exc
    except RecursionError:
        raise MessageFormatError("sbd.json is nested too deeply to be an SBD") from None
    return ReceivedPackage(sbd, encrypted)


def _take_asic(archive: zipfile.ZipFile, info: zipfile.ZipInfo, work: Path) -> Path | bytes:
    """asic.zip's bytes when small, else a copy in `work`. The real bytes count: a header can lie."""
    if info.file_size <= IN_MEMORY_LIMIT:
        with archive.open(info) as source:
            content = source.read(IN_MEMORY_LIMIT + 1)
        if len(content) <= IN_MEMORY_LIMIT:
            _check_expansion(len(content), info)
            return content
    work.mkdir(parents=True, exist_ok=True)
    target = work / ASIC_ENTRY
    _copy_capped(archive, info, target)
    return target


def _check_expansion(written: int, info: zipfile.ZipInfo) -> None:
    if written > MAX_ASIC_BYTES:
        raise SecurityError(f"asic.zip is larger than {MAX_ASIC_BYTES} bytes, more than any channel carries")
    if written > 1 << 20 and written > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        raise SecurityError("asic.zip expands more than 100 times inside the package (a zip bomb?)")


def _copy_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    """Extract an entry counting the real bytes, so a zip bomb cannot fill the disk."""
    written = 0
    with archive.open(info) as source, open(target, "wb") as sink:
        while chunk := source.read(1 << 20):
            written += len(chunk)
            _check_expansion(written, info)
            sink.write(chunk)


def open_payload(
    received: ReceivedPackage,
    work: Path,
    extract_to: Path,
    identity: OrgIdentity,
    trust: TrustStore,
    limits: AsicLimits | None = None,
    at: datetime | None = None,
    durable: bool = False,
) -> AsicContents:
    """Decrypt the ASiC-E (in memory when small), verify it completely and extract its files.

    `at` is the time of receipt on the caller's clock (None: the system clock now). With `durable` the
    extracted files are on disk (fsynced) when this returns.
    """
    received_at = at or datetime.now(UTC)
    if received.encrypted_asic is None:
        raise MessageFormatError("the message carries no asic.zip")
    extract_to.mkdir(parents=True, exist_ok=True)
    if isinstance(received.encrypted_asic, bytes):
        plain_asic = io.BytesIO()
        decrypt_stream(io.BytesIO(received.encrypted_asic), plain_asic, identity.private_key, identity.certificate)
        plain_asic.seek(0)
        return read_asice(plain_asic, extract_to, trust, limits or AsicLimits(), at=received_at, durable=durable)
    work.mkdir(parents=True, exist_ok=True)
    plain = work / "asic.asice"
    try:
        decrypt_file(received.encrypted_asic, plain, identity.private_key, identity.certificate)
        return read_asice(plain, extract_to, trust, limits or AsicLimits(), at=received_at, durable=durable)
    finally:
        plain.unlink(missing_ok=True)
