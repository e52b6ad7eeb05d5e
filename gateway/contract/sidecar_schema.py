"""The whole sidecar's schema: sidecar.xsd for the message's own elements, and each channel's options.xsd for
its options block (`<dpv>`, `<dpf>`, ...), which the channels bring (gateway/channels/<name>/)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

from gateway.channels.registry import KINDS
from gateway.xmlsafe import load_schema

NAMESPACE = "urn:efm-gateway:message:1"
SCHEMA_PATH = Path(__file__).with_name("sidecar.xsd")


@cache
def own_schema() -> etree.XMLSchema:
    """sidecar.xsd: the message without the channels' options blocks."""
    return load_schema(SCHEMA_PATH)


@dataclass(frozen=True)
class SchemaError:
    message: str  # in libxml2's words, as describe_schema_error reads them
    line: int | None


class SidecarSchema:
    """The whole sidecar's schema: sidecar.xsd for the message, each channel's options.xsd for its block.
    Used as lxml's XMLSchema is: `validate(tree)`, then `error_log`."""

    def __init__(self) -> None:
        self.error_log: list[SchemaError] = []

    def validate(self, tree: etree._ElementTree | etree._Element) -> bool:
        root = tree.getroot() if isinstance(tree, etree._ElementTree) else tree
        errors: list[SchemaError] = []
        seen: set[str] = set()
        blocks = channel_options()
        for child in root:
            name = etree.QName(child).localname if isinstance(child.tag, str) else ""
            if name not in blocks or etree.QName(child).namespace != NAMESPACE:
                continue
            if name in seen:  # as sidecar.xsd refuses its own elements given twice
                errors.append(SchemaError(f"Element '{child.tag}': This element is not expected.", child.sourceline))
                continue
            seen.add(name)
            validator = _options_schema(blocks[name][1].schema)
            if not validator.validate(child):
                errors.extend(SchemaError(error.message, error.line) for error in validator.error_log)
        validator = own_schema()
        if not validator.validate(etree.ElementTree(_without_options(root))):
            errors.extend(SchemaError(error.message, error.line) for error in validator.error_log)
        self.error_log = sorted(errors, key=lambda error: error.line or 0)
        return not errors


@cache
def schema() -> SidecarSchema:
    return SidecarSchema()


def channel_options() -> dict[str, tuple[str, Any]]:
    """The options blocks the channels take, by element name: (channel key, its SidecarOptions)."""
    return {kind.options.element: (key, kind.options) for key, kind in KINDS.items() if kind.options is not None}


@cache
def _options_schema(path: Path) -> etree.XMLSchema:
    return load_schema(path)


def _without_options(root: etree._Element) -> etree._Element:
    """A copy of `root` without the channels' options blocks (line numbers kept)."""
    names = {f"{{{NAMESPACE}}}{element}" for element in channel_options()}
    own = copy.deepcopy(root)
    for child in [child for child in own if child.tag in names]:
        own.remove(child)
    return own
