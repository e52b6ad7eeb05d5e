"""The sandbox broker's one-shot upload form (`POST /filetransfer/upload`), read as it streams in."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from python_multipart.multipart import parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

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


class OneShotForm:
    """Reads a one-shot upload's multipart body as it streams in: the small fields into memory, the
    `FileTransfer` part straight into `partial` (size-capped, MD5 on the way), like the plain upload.

    Hand `callbacks()` to a python-multipart MultipartParser. Starlette's `request.form()` would
    spool the file to a temporary file elsewhere first (through worker threads), to be copied again,
    and could only apply the size cap once the whole body was in.
    """

    def __init__(self, partial: Path) -> None:
        self.partial = partial
        self.fields: list[tuple[str, str]] = []
        self.file_parts = 0
        self.file_named = False  # a file part carries a filename in its Content-Disposition
        self.size = 0
        self.digest = hashlib.md5(usedforsecurity=False)
        self.complete = False
        self._handle: BinaryIO | None = None
        self._in_file = False
        self._name = ""
        self._value = bytearray()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._in_file, self._name, self._disposition = False, "", b""
        self._value.clear()

    def _header_end(self) -> None:
        if bytes(self._header_name).strip().lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise FormProblem("every part of the form needs a name in its Content-Disposition header")
        self._name = options[b"name"].decode("utf-8", "replace")
        if self._name.lower() == FORM_FILE:
            self.file_parts += 1
            if self.file_parts > 1:
                raise FormProblem("the form holds more than one FileTransfer part")
            self.file_named = b"filename" in options
            self._in_file = True
            self._handle = open(self.partial, "wb")  # noqa: SIM115 - closed in _part_end or discard()
        elif len(self.fields) >= MAX_FORM_FIELDS:
            raise FormProblem(f"the form holds more than {MAX_FORM_FIELDS} fields")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._in_file:
            assert self._handle is not None
            self.size += len(chunk)
            if self.size > MAX_FILE_TRANSFER_SIZE:
                raise FormProblem("File size exceeds maximum")
            self.digest.update(chunk)
            self._handle.write(chunk)
            return
        self._value.extend(chunk)
        if len(self._value) > MAX_FORM_FIELD_BYTES:
            raise FormProblem(f"the form field {self._name} is longer than {MAX_FORM_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._in_file:
            assert self._handle is not None
            self._handle.close()
            self._handle = None
            return
        try:
            self.fields.append((self._name, self._value.decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise FormProblem(f"the form field {self._name} is not UTF-8 text") from exc

    def _end(self) -> None:
        self.complete = True

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
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
