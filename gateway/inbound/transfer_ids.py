"""A channel's transfer ids, as the receiver uses them: opaque strings it names files after.

The channel says what its ids look like, never the receiver; but an id becomes part of a file name
(the download's work folder, the package kept in quarantine/) and of log lines, so it is checked for
what would break those (nothing, control characters, a length no file name holds) and escaped into
one file-name part that can never leave its folder: every character but letters, digits, `_` and `-`
becomes `%XX` (so `..`, `/` and a leading dot cannot occur), and the escaping reads back.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MAX_TRANSFER_ID_CHARS = 200  # escaped, and with a messageId and an extension beside it, within 255 bytes
_KEPT_AS_IS = re.compile(r"[A-Za-z0-9_-]+")


def transfer_id_problem(transfer_id: str) -> str | None:
    """Why `transfer_id` cannot be taken (a log line's words), or None when it can."""
    if not transfer_id:
        return "it is empty"
    if not transfer_id.isprintable():
        return "it holds control characters"
    if len(file_part(transfer_id)) > MAX_TRANSFER_ID_CHARS:
        return "it is too long for a file name"
    return None


def file_part(transfer_id: str) -> str:
    """`transfer_id` as one part of a file name: unchanged when it is letters, digits, `_` and `-` (a UUID),
    else with every other character's UTF-8 bytes as `%XX`."""
    if _KEPT_AS_IS.fullmatch(transfer_id):
        return transfer_id
    return "".join(
        piece if _KEPT_AS_IS.fullmatch(piece) else "".join(f"%{byte:02X}" for byte in piece.encode("utf-8"))
        for piece in re.split(r"([A-Za-z0-9_-]+)", transfer_id) if piece
    )


def from_file_part(part: str) -> str:
    """The transfer id `file_part` made `part` of."""
    return unquote(part, errors="strict")


__all__ = ["MAX_TRANSFER_ID_CHARS", "file_part", "from_file_part", "transfer_id_problem"]
