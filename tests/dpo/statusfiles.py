"""Read status files and inbox folders as the archive system would."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from gateway.contract.sidecar import schema as sidecar_schema
from gateway.contract.status import schema as status_schema

NS = {"s": "urn:efm-gateway:status:1", "m": "urn:efm-gateway:message:1"}


def status_of(folder: Path, message_id: str) -> etree._Element | None:
    """The status file of our message `message_id`, parsed; None when there is none yet.

    Status files are replaced atomically, so one that does not parse is never "not yet": it is a broken
    file the archive system would choke on, and the test fails.
    """
    matches = [p for p in folder.glob(f"*.{message_id}.xml") if not p.name.startswith("in.")]
    if not matches:
        return None
    return parse_status_file(matches[0])


def parse_status_file(path: Path) -> etree._Element | None:
    """The root of the status file at `path`; None when it is not there (purged, or not written yet)."""
    try:
        return etree.parse(str(path)).getroot()
    except OSError:
        if not path.exists():
            return None
        raise
    except etree.XMLSyntaxError as exc:
        raise AssertionError(f"the status file {path} does not parse: {exc}") from None


def history(folder: Path, message_id: str) -> list[str]:
    root = status_of(folder, message_id)
    if root is None:
        return []
    return [v.text for v in root.findall("s:history/s:status/s:value", NS)]


def current(folder: Path, message_id: str) -> str | None:
    root = status_of(folder, message_id)
    return None if root is None else root.findtext("s:current", namespaces=NS)


def valid_status_file(path: Path) -> bool:
    return status_schema().validate(etree.parse(str(path)))


def inbox_message(folder: Path) -> etree._Element:
    tree = etree.parse(str(folder / "message.xml"))
    assert sidecar_schema().validate(tree), sidecar_schema().error_log
    return tree.getroot()


def message_ids_of_status_files(folder: Path) -> list[str]:
    return [p.name.split(".")[-2] for p in folder.glob("*.xml") if not p.name.startswith((".", "in."))]
