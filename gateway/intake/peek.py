"""Peek into outbox files without trusting them: which files a sidecar lists, its root element,
whether it may declare sizes. Only regular files of bounded size are read (see fsio.open_regular)."""

from __future__ import annotations

import os
from pathlib import Path

from lxml import etree

from gateway.contract.sidecar import MAX_SIDECAR_BYTES
from gateway.fsio import UnreadableFile, open_regular, read_regular_file


def may_declare_sizes(sidecar: Path) -> bool:
    """False when the sidecar's bytes hold no <size> element (so no parse is needed).

    A wrong False (say, a UTF-16 sidecar) only makes the drop wait out the quiet period. Anything but
    a regular file of bounded size is never read here (validation explains it).
    """
    try:
        return b"size" in read_regular_file(sidecar, MAX_SIDECAR_BYTES)
    except UnreadableFile:
        return False


def root_tag(path: Path) -> str | None:
    """The root element's tag, reading only the start of the file; None when it cannot be read."""
    try:
        fd = open_regular(path)
    except UnreadableFile:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            for _event, element in etree.iterparse(
                handle, events=("start",), resolve_entities=False, no_network=True, load_dtd=False
            ):
                return element.tag
    except (OSError, etree.XMLSyntaxError):
        return None
    return None


def read_listed_files(path: Path) -> list[tuple[str, int | None]] | None:
    """Cheaply read which files a sidecar lists. None when the file is not a readable sidecar."""
    from gateway.contract.sidecar import read_sidecar

    try:
        content = read_regular_file(path, MAX_SIDECAR_BYTES)
    except UnreadableFile:
        return None
    sidecar, _problems = read_sidecar(content, source=path.name)
    if sidecar is None:
        return None
    listed = [(doc.file, doc.size) for doc in sidecar.documents]
    if sidecar.arkivmelding_file:
        listed.append((sidecar.arkivmelding_file, None))
    return listed
