"""The sandbox broker's one-shot upload form (`POST /filetransfer/upload`), read as it streams in."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, BinaryIO

from gateway.sandbox.streamed_form import StreamedForm

MAX_FILE_TRANSFER_SIZE = 1 << 30  # DPO's limit: 1 GB
# The one-shot upload's form: field names as the API spells them (ASP.NET binds them ignoring case),
# by lower-case name, with the JSON names of initialise that `_initialise_problem` checks.
FORM_FIELDS = {
    "metadata.filename": ("Metadata.FileName", "fileName"),
    "metadata.resourceid": ("Metadata.ResourceId", "resourceId"),
    "metadata.sendersfiletransferreference": ("Metadata.SendersFileTransferReference",
                                              "sendersFileTransferReference"),
    "metadata.sender": ("Metadata.Sender", "sender"),
    "metadata.checksum": ("Metadata.Checksum", "checksum"),
    "metadata.disablevirusscan": ("Metadata.DisableVirusScan", "disableVirusScan"),
}
FORM_NAMES = {json_name: form_name for form_name, json_name in FORM_FIELDS.values()} | {
    "recipients": "Metadata.Recipients", "propertyList": "Metadata.PropertyList",
}
FORM_RECIPIENT = re.compile(r"^metadata\.recipients(\[\d+\])?$")  # repeated (form style) or indexed
FORM_PROPERTY = re.compile(r"^metadata\.propertylist\[(.+)\]$", re.IGNORECASE)  # ASP.NET dictionary binding
FORM_FILE = "filetransfer"
MAX_FORM_FIELDS = 64
MAX_FORM_FIELD_BYTES = 8192  # well above any valid value (a sendersFileTransferReference is at most 4096)


class FormProblem(Exception):
    """The one-shot upload's form cannot be read; the text says why (a 400)."""


class OneShotForm(StreamedForm):
    """Reads a one-shot upload's multipart body as it streams in: the small fields into memory, the
    `FileTransfer` part straight into `partial` (size-capped, MD5 on the way), like the plain upload."""

    max_fields = MAX_FORM_FIELDS
    max_field_bytes = MAX_FORM_FIELD_BYTES

    def __init__(self, partial: Path) -> None:
        super().__init__()
        self.partial = partial
        self.file_parts = 0
        self.file_named = False  # a file part carries a filename in its Content-Disposition
        self.size = 0
        self.digest = hashlib.md5(usedforsecurity=False)

    def _open_file(self, name: str, options: dict[bytes, bytes], headers: dict[bytes, bytes]) -> BinaryIO | None:
        if name.lower() != FORM_FILE:
            return None
        self.file_parts += 1
        if self.file_parts > 1:
            raise FormProblem("the form holds more than one FileTransfer part")
        self.file_named = b"filename" in options
        return open(self.partial, "wb")  # closed at the part's end or in discard()

    def _file_data(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > MAX_FILE_TRANSFER_SIZE:
            raise FormProblem("File size exceeds maximum")
        self.digest.update(chunk)

    def _problem(self, words: str) -> Exception:
        return FormProblem(words)

    def discard(self) -> None:
        self._close_file()
        self.partial.unlink(missing_ok=True)

    def metadata(self) -> dict[str, Any]:
        """The fields under the JSON names of initialise, for `_initialise_problem` to check."""
        body: dict[str, Any] = {}
        unknown = []
        for name, value in self.fields:
            lower = name.lower()
            if FORM_RECIPIENT.match(lower):
                body.setdefault("recipients", []).append(value)
            elif match := FORM_PROPERTY.match(name):
                body.setdefault("propertyList", {})[match.group(1)] = value
            elif lower in FORM_FIELDS:
                form_name, json_name = FORM_FIELDS[lower]
                if json_name in body:
                    raise FormProblem(f"the form gives {form_name} more than once")
                body[json_name] = value
            else:
                unknown.append(name)
        if unknown:
            raise FormProblem(f"unknown field(s): {', '.join(sorted(unknown))}")
        scan = body.get("disableVirusScan")
        if scan is not None:
            if scan.lower() not in ("true", "false"):
                raise FormProblem(f"Metadata.DisableVirusScan must be true or false, not {scan!r}")
            body["disableVirusScan"] = scan.lower() == "true"
        return body
