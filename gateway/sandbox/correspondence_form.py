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
from typing import Any, BinaryIO

from gateway.channels.dpv.models import MAX_ATTACHMENT_BYTES
from gateway.sandbox.streamed_form import StreamedForm

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


class UploadForm(StreamedForm):
    """Hand `callbacks()` to a python-multipart MultipartParser; `discard()` removes every file written."""

    max_fields = MAX_FORM_FIELDS
    max_field_bytes = MAX_FORM_FIELD_BYTES

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.files: list[UploadedFile] = []
        self._current: UploadedFile | None = None

    def _open_file(self, name: str, options: dict[bytes, bytes], headers: dict[bytes, bytes]) -> BinaryIO | None:
        if name.lower() != FILE_FIELD:
            return None
        if len(self.files) >= MAX_FILES:
            raise bad_request(0, f"the form holds more than {MAX_FILES} attachments")
        file_name = options[b"filename"].decode("utf-8", "replace") if b"filename" in options else None
        content_type = headers.get(b"content-type", b"").decode("latin-1") or None
        self._current = UploadedFile(self.folder / f"{uuid.uuid4()}.part", file_name, content_type)
        self.files.append(self._current)
        return open(self._current.path, "wb")  # closed at the part's end or in discard()

    def _file_data(self, chunk: bytes) -> None:
        assert self._current is not None
        self._current.size += len(chunk)
        if self._current.size > MAX_ATTACHMENT_SIZE:
            raise bad_request(2004, "File must have content and has a max file size of 250 MB")
        self._current.digest.update(chunk)

    def _file_end(self) -> None:
        self._current = None

    def _problem(self, words: str) -> Exception:
        return bad_request(0, words)

    def discard(self) -> None:
        self._close_file()
        for uploaded in self.files:
            uploaded.path.unlink(missing_ok=True)
