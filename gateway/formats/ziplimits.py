"""Limits on a zip from a peer, checked on what its central directory declares before a byte is written.

Python's zipfile never yields more than an entry's declared size (and fails on the CRC when the data
is short of it), so refusing oversized declarations up front bounds what extraction can write;
callers still count the real bytes as they copy, in case a reader ever behaves otherwise.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.errors import SecurityError

# The compression methods eFormidling writers use, and the only ones every reader can open.
READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
# Exceptions zipfile (and zlib beneath it) raises on a damaged or cut-off archive.
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError)


@dataclass(frozen=True)
class ZipLimits:
    """What a zip may declare: entries, bytes in all, expansion, and bytes per named entry."""

    max_entries: int
    max_total_bytes: int
    max_ratio: int
    # An entry that expands to no more than this is not ratio-checked: small files compress well.
    ratio_floor: int = 1 << 16
    max_entry_bytes: Mapping[str, int] = field(default_factory=dict)
    # Names that differ only in case are two entries (A.pdf beside a.pdf, from a case-sensitive sender) rather
    # than a duplicate; the reader then writes them under distinct names.
    names_differ_in_case: bool = False


def check_declared_sizes(infos: Sequence[zipfile.ZipInfo], limits: ZipLimits, what: str) -> None:
    """Raise SecurityError when the central directory declares more than `limits` allow.

    `what` names the archive in the message ("the package", "the container").
    """
    if len(infos) > limits.max_entries:
        raise SecurityError(f"too many entries: {what} has {len(infos)}, the limit is {limits.max_entries}")
    seen: set[str] = set()
    declared_total = 0
    for info in infos:
        name = info.filename
        key = name if limits.names_differ_in_case else name.casefold()
        if key in seen:
            raise SecurityError(f"duplicate entry name {name!r} in {what}")
        seen.add(key)
        if info.compress_type not in READABLE_METHODS:
            raise SecurityError(
                f"the entry {name!r} in {what} uses zip compression method {info.compress_type}; "
                "only stored and deflated are read"
            )
        cap = limits.max_entry_bytes.get(name)
        if cap is not None and info.file_size > cap:
            raise SecurityError(
                f"size limit: {name!r} in {what} declares {info.file_size} bytes uncompressed, "
                f"the limit is {cap}"
            )
        check_expansion(info, info.file_size, limits, what)
        declared_total += info.file_size
    if declared_total > limits.max_total_bytes:
        raise SecurityError(
            f"total size limit: {what} declares {declared_total} bytes uncompressed, "
            f"the limit is {limits.max_total_bytes}"
        )


def check_expansion(info: zipfile.ZipInfo, expanded: int, limits: ZipLimits, what: str) -> None:
    """Raise SecurityError when `expanded` bytes of `info` exceed the ratio limit (declared or counted)."""
    if expanded > limits.ratio_floor and expanded > limits.max_ratio * max(info.compress_size, 1):
        raise SecurityError(
            f"compression ratio limit: {info.filename!r} in {what} expands more than {limits.max_ratio} times "
            f"({expanded} bytes from {info.compress_size}; a zip bomb?)"
        )


def zip_error_text(exc: BaseException) -> str:
    """What went wrong reading a zip, never empty: zipfile raises a bare EOFError on a cut-off entry."""
    detail = str(exc).strip()
    if isinstance(exc, EOFError):
        return "an entry's data ends before its declared size (the file is truncated or its sizes are wrong)"
    if isinstance(exc, zlib.error):
        return f"an entry's compressed data is corrupt ({detail or 'zlib gave no detail'})"
    if isinstance(exc, NotImplementedError):
        return f"an entry uses a compression method that cannot be read ({detail or 'unsupported'})"
    return detail or f"{type(exc).__name__} (zipfile gave no detail)"
