"""A multipart form read as it streams in, for the sandbox's upload endpoints.

Hand `callbacks()` to a python-multipart MultipartParser. Small fields go into memory (counted and
size-capped); each file part goes chunk by chunk to the handle the subclass opens for it. Starlette's
`request.form()` would spool files to temporary files elsewhere first (through worker threads), to be
copied again, and could apply a size cap only once the whole body was in.

A subclass says which parts are files (`_open_file`), what each chunk of one costs (`_file_data`:
size caps, checksums), and which exception tells the client what is wrong (`_problem`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

from python_multipart.multipart import parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks


class StreamedForm:
    max_fields = 64
    max_field_bytes = 8192

    def __init__(self) -> None:
        self.fields: list[tuple[str, str]] = []
        self.complete = False
        self._handle: BinaryIO | None = None
        self._in_file = False
        self._name = ""
        self._value = bytearray()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}

    # ---- what a subclass decides ------------------------------------------------------------------
    def _open_file(self, name: str, options: dict[bytes, bytes], headers: dict[bytes, bytes]) -> BinaryIO | None:
        """A handle to write the part named `name` to when it is a file part; None for a plain field."""
        return None

    def _file_data(self, chunk: bytes) -> None:
        """Before `chunk` of the current file part is written: count it, check it (raise to refuse)."""

    def _file_end(self) -> None:
        """The current file part is complete (its handle closed)."""

    def _problem(self, words: str) -> Exception:
        """The exception that refuses the form, saying why."""
        return ValueError(words)

    # ---- the parser's callbacks -------------------------------------------------------------------
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
        self._in_file, self._name, self._headers = False, "", {}
        self._value.clear()

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).strip().lower()] = bytes(self._header_value).strip()
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise self._problem("every part of the form needs a name in its Content-Disposition header")
        self._name = options[b"name"].decode("utf-8", "replace")
        self._handle = self._open_file(self._name, options, self._headers)
        self._in_file = self._handle is not None
        if not self._in_file and len(self.fields) >= self.max_fields:
            raise self._problem(f"the form holds more than {self.max_fields} fields")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._in_file:
            assert self._handle is not None
            self._file_data(chunk)
            self._handle.write(chunk)
            return
        self._value.extend(chunk)
        if len(self._value) > self.max_field_bytes:
            raise self._problem(f"the form field {self._name} is longer than {self.max_field_bytes} bytes")

    def _part_end(self) -> None:
        if self._in_file:
            self._close_file()
            self._file_end()
            return
        try:
            self.fields.append((self._name, self._value.decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise self._problem(f"the form field {self._name} is not UTF-8 text") from exc

    def _end(self) -> None:
        self.complete = True

    def _close_file(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
