"""The only way efm-gateway parses XML: no DTDs, no entities, no network, no huge trees."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from gateway.errors import MessageFormatError

# Refused before parsing, so no entity is ever expanded, in any of the encodings XML allows.
_DOCTYPE_MARKERS = (b"<!DOCTYPE", "<!DOCTYPE".encode("utf-16-le"), "<!DOCTYPE".encode("utf-16-be"))
_DOCTYPE_REFUSED = (
    "{source}: a DOCTYPE declaration is not allowed (it can hide entity expansion or network access); "
    "remove the <!DOCTYPE …> line"
)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        dtd_validation=False,
        load_dtd=False,
        huge_tree=False,
        remove_comments=False,
    )


def parse_bytes(content: bytes, source: str = "XML") -> etree._ElementTree:
    """Parse XML, refusing any DOCTYPE (and with it every entity trick)."""
    if any(marker in content for marker in _DOCTYPE_MARKERS):
        raise MessageFormatError(_DOCTYPE_REFUSED.format(source=source))
    try:
        tree = etree.ElementTree(etree.fromstring(content, _parser()))
    except etree.XMLSyntaxError as exc:
        raise MessageFormatError(f"{source}: not well-formed XML (line {exc.lineno}): {exc.msg}") from exc
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise MessageFormatError(_DOCTYPE_REFUSED.format(source=source))
    return tree


def load_schema(path: Path) -> etree.XMLSchema:
    """Load an XSD we ship or a reference schema (local includes only, never the network)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(path), parser))
