"""The sandbox correspondence service's upload form (`POST /correspondence/upload`), read as it streams in.

`UploadForm` takes the multipart body chunk by chunk: small fields into memory, each `attachments`
file part straight into its own file (size-capped, MD5 on the way). correspondence_rules.py then
checks the fields as Altinn does.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from python_multipart.multipart import parse_options_header

from gateway.channels.dpv.models import MAX_ATTACHMENT_BYTES

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_ATTACHMENT_SIZE = MAX_ATTACHMENT_BYTES
MAX_FORM_FIELDS = 256
MAX_FORM_FIELD_BYTES = 16384  # above any valid value (a sendersReference is at most 4096)
MAX_FILES = 100
FILE_FIELD = "attachments"


class UploadProblem(Exception):
    """The upload is refused: HTTP `status`, Altinn's error number `code` (0: ours) and the words."""

    def __init__(self, status: int, code: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def bad_request(code: int, detail: str) -> UploadProblem:
    return UploadProblem(400, code, detail)


@dataclass
class UploadedFile:
    """One `attachments` part, already on disk at `path`."""

    path: Path
    file_name: str | None
    content_type: str | None
    size: int = 0
    digest: Any = field(default_factory=lambda: hashlib.md5(usedforsecurity=False))

    @property
    def md5(self) -> str:
        return str(self.digest.hexdigest())


class UploadForm:
    """Hand `callbacks()` to a python-multipart MultipartParser; `discard()` removes every file written."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fields: list[tuple[str, str]] = []
        self.files: list[UploadedFile] = []
        self.complete = False
        self._current: UploadedFile | None = None
        self._handle: BinaryIO | None = None
        self._name = ""
        self._value = bytearray()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}

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
        self._current, self._name, self._headers = None, "", {}
        self._value.clear()

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).strip().lower()] = bytes(self._header_value).strip()
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise bad_request(0, "every part of the form needs a name in its Content-Disposition header")
        self._name = options[b"name"].decode("utf-8", "replace")
        if self._name.lower() == FILE_FIELD:
            if len(self.files) >= MAX_FILES:
                raise bad_request(0, f"the form holds more than {MAX_FILES} attachments")
            file_name = options[b"filename"].decode("utf-8", "replace") if b"filename" in options else None
            content_type = self._headers.get(b"content-type", b"").decode("latin-1") or None
            self._current = UploadedFile(self.folder / f"{uuid.uuid4()}.part", file_name, content_type)
            self.files.append(self._current)
            self._handle = open(self._current.path, "wb")  # noqa: SIM115 - closed in _part_end or discard()
        elif len(self.fields) >= MAX_FORM_FIELDS:
            raise bad_request(0, f"the form holds more than {MAX_FORM_FIELDS} fields")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._current is not None:
            assert self._handle is not None
            self._current.size += len(chunk)
            if self._current.size > MAX_ATTACHMENT_SIZE:
                raise bad_request(2004, "File must have content and has a max file size of 250 MB")
            self._current.digest.update(chunk)
            self._handle.write(chunk)
            return
        self._value.extend(chunk)
        if len(self._value) > MAX_FORM_FIELD_BYTES:
            raise bad_request(0, f"the form field {self._name} is longer than {MAX_FORM_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._current is not None:
            assert self._handle is not None
            self._handle.close()
            self._handle, self._current = None, None
            return
        try:
            self.fields.append((self._name, self._value.decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise bad_request(0, f"the form field {self._name} is not UTF-8 text") from exc

    def _end(self) -> None:
        self.complete = True

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        for uploaded in self.files:
            uploaded.path.unlink(missing_ok=True)
