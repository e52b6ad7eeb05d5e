"""Small helpers for a channel's sidecar options block: its children's text, read as the sidecar reads its
own elements, and written back in the block's namespace."""

from __future__ import annotations

from lxml import etree


def child_text(block: etree._Element, name: str) -> str | None:
    """The stripped text of `block`'s child `name` (its whole content, comments aside), or None without one."""
    child = block.find(f"{{{etree.QName(block).namespace}}}{name}" if etree.QName(block).namespace else name)
    if child is None:
        return None
    text = str(child.xpath("string()"))
    return text.strip() if text.strip() or child.text is not None else None


def put_child(block: etree._Element, name: str, value: object) -> None:
    """`<name>value</name>` inside `block`, in its namespace; nothing for None."""
    if value is None:
        return
    namespace = etree.QName(block).namespace
    etree.SubElement(block, f"{{{namespace}}}{name}" if namespace else name).text = str(value)
