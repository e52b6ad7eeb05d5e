"""Build drops for tests: folder drops, flat drops, and sidecars in every shape."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from xml.sax.saxutils import escape

VALID_RECEIVER = "910075918"
OUR_ORGNR = "991825827"


def sidecar_xml(
    receiver: str = VALID_RECEIVER,
    documents: list[dict] | None = None,
    extra: str = "",
    message_type: str | None = None,
) -> bytes:
    documents = [{"file": "brev.pdf", "main": True}] if documents is None else documents
    docs = []
    for doc in documents:
        main = ' main="true"' if doc.get("main") else ""
        parts = [f"<file>{escape(doc['file'])}</file>"]
        if "mime" in doc:
            parts.append(f"<mimeType>{doc['mime']}</mimeType>")
        if "size" in doc:
            parts.append(f"<size>{doc['size']}</size>")
        if "sha256" in doc:
            parts.append(f"<sha256>{doc['sha256']}</sha256>")
        docs.append(f"<document{main}>{''.join(parts)}</document>")
    doc_block = f"<documents>{''.join(docs)}</documents>" if docs else ""
    type_block = f"<type>{message_type}</type>" if message_type else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<message xmlns="urn:efm-gateway:message:1">\n'
        f"  <receiver>{receiver}</receiver>\n  {type_block}<title>Test</title>\n  {extra}\n  {doc_block}\n"
        "</message>\n"
    ).encode()


def pdf_bytes(label: str = "x") -> bytes:
    return b"%PDF-1.4\n% " + label.encode() + b"\n%%EOF\n"


def make_folder_drop(
    outbox: Path,
    name: str,
    files: dict[str, bytes] | None = None,
    sidecar: bytes | None = None,
    staging: Path | None = None,
) -> Path:
    """Build the folder beside the outbox and move it in with one rename, as the contract says."""
    files = {"brev.pdf": pdf_bytes(name)} if files is None else files
    staging = staging or outbox.parent / "staging"
    staging.mkdir(exist_ok=True)
    folder = staging / name
    folder.mkdir()
    for file_name, content in files.items():
        (folder / file_name).write_bytes(content)
    (folder / "message.xml").write_bytes(sidecar if sidecar is not None else sidecar_xml())
    target = outbox / name
    os.rename(folder, target)
    return target


def make_flat_drop(
    outbox: Path, name: str, files: dict[str, bytes] | None = None, sidecar: bytes | None = None
) -> None:
    """Documents first, the sidecar last (renamed in)."""
    files = {f"{name}.pdf": pdf_bytes(name)} if files is None else files
    for file_name, content in files.items():
        (outbox / file_name).write_bytes(content)
    if sidecar is None:
        sidecar = sidecar_xml(documents=[{"file": f, "main": i == 0} for i, f in enumerate(files)])
    temp = outbox / f".{name}.xml.tmp"
    temp.write_bytes(sidecar)
    os.rename(temp, outbox / f"{name}.xml")


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def write_config(folder: Path, **intake: object) -> Path:
    settings = {
        "mode": "events",
        "scan_interval_seconds": 0.5,
        "quiet_period_seconds": 0.3,
        "incomplete_timeout_seconds": 3,
    }
    settings.update(intake)
    intake_yaml = "\n".join(f"  {key}: {value}" for key, value in settings.items())
    config = folder / "config.yaml"
    config.write_text(
        f"""organisation:
  orgnr: "{OUR_ORGNR}"
  name: Test kommune
folders:
  create_missing: true
  outbox: var/outbox
  status: var/status
  inbox: var/inbox
  failed: var/failed
  sent: var/sent
  state: var/state
intake:
{intake_yaml}
"""
    )
    return config
