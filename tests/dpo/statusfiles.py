"""Read status files and inbox folders as the archive system would."""

from __future__ import annotations

from collections.abc import Callable, Iterable
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


def all_reached(folder: Path, message_ids: Iterable[str], status: str) -> Callable[[], bool]:
    """A condition for wait(): every message's status history holds `status`.

    For hundreds of messages: each look lists the folder once (status_of() lists it per message, which made one
    look at 500 messages cost most of a second of CPU, every tenth of a second, taken from the gateways under
    test), and a message found there is not read again, since a status file's history only grows. A test still
    checks all of them once more when the wait is over.
    """
    waiting = set(message_ids)

    def condition() -> bool:
        paths = {p.name.split(".")[-2]: p for p in folder.glob("*.xml") if not p.name.startswith((".", "in."))}
        for message_id in sorted(waiting):
            root = parse_status_file(paths[message_id]) if message_id in paths else None
            if root is None or status not in [v.text for v in root.findall("s:history/s:status/s:value", NS)]:
                return False
            waiting.discard(message_id)
        return True

    return condition


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
