"""HTTP client for the Altinn 3 Broker API (the DPO transport), production or sandbox alike.

`base_url` is the API root: `https://platform.altinn.no/broker/api/v1` in production,
`<sandbox>/broker/api/v1` on loopback. Uploads and downloads stream in chunks. Errors: network,
429 and 5xx are RetryableChannelError; other 4xx PermanentChannelError with Altinn's own words.
A transfer is made in two steps (initialise, then upload: the caller can journal the id in between)
or, where a duplicate is harmless, in one multipart request (`initialise_and_upload`).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from gateway.errors import PermanentChannelError, SecurityError
from gateway.tokens import TokenClient, TokenSource, bearer_request, check_response, translated_http_errors

BROKER_WRITE_SCOPE = "altinn:broker.write"  # senders: initialise and upload
BROKER_READ_SCOPE = "altinn:broker.read"  # recipients: list, download, confirm
DPO_RESOURCE_ID = "eformidling-dpo-meldingsutveksling"
CHUNK_SIZE = 1 << 16


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK_SIZE):
        yield chunk


class BrokerClient:
    def __init__(self, base_url: str, tokens: TokenClient | TokenSource, http: httpx.Client) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.http = http

    def _call(self, what: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = bearer_request(self.http, self.tokens, what, method, f"{self.base_url}{path}", **kwargs)
        return check_response(response, what)

    def initialise(
        self,
        resource_id: str,
        sender: str,
        recipient: str,
        file_name: str,
        senders_reference: str,
        properties: dict[str, str] | None = None,
        checksum: str | None = None,
    ) -> str:
        """Create a file transfer; returns its fileTransferId. Parties as `0192:<orgnr>`."""
        body = {
            "fileName": file_name,
            "resourceId": resource_id,
            "sendersFileTransferReference": senders_reference,
            "sender": sender,
            "recipients": [recipient],
            "propertyList": properties or {},
            "checksum": checksum,
            "disableVirusScan": None,
        }
        what = f"initialising a broker file transfer for {senders_reference}"
        response = self._call(
            what, "POST", "/filetransfer", json=body, headers={"Accept": "application/json"}
        )
        try:
            return str(response.json()["fileTransferId"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentChannelError(f"{what}: the broker's answer holds no fileTransferId") from exc

    def initialise_and_upload(
        self,
        resource_id: str,
        sender: str,
        recipient: str,
        file_name: str,
        senders_reference: str,
        source: Path | bytes,
        properties: dict[str, str] | None = None,
        checksum: str | None = None,
    ) -> str:
        """Create a file transfer and upload its file in one multipart request; returns its fileTransferId.

        No id exists before the file is sent, so an interrupted call can leave a published transfer
        the caller never heard of: only for packages where a duplicate is harmless. A file streams
        from disk; on a 401 the request is sent once more, from the start, with a fresh token.
        """
        fields: dict[str, str | list[str]] = {
            "Metadata.FileName": file_name,
            "Metadata.ResourceId": resource_id,
            "Metadata.SendersFileTransferReference": senders_reference,
            "Metadata.Sender": sender,
            "Metadata.Recipients": [recipient],  # form style: one field per recipient
        }
        # ASP.NET Core (the broker) binds a dictionary from `Name[key]` fields.
        for key, value in (properties or {}).items():
            fields[f"Metadata.PropertyList[{key}]"] = value
        if checksum is not None:
            fields["Metadata.Checksum"] = checksum
        what = f"initialising and uploading a broker file transfer for {senders_reference}"
        with contextlib.ExitStack() as stack:
            # httpx rewinds a file part each time it renders the body, so the 401 retry resends it whole.
            content = stack.enter_context(open(source, "rb")) if isinstance(source, Path) else source
            response = self._call(
                what, "POST", "/filetransfer/upload", data=fields,
                files={"FileTransfer": (file_name, content, "application/octet-stream")},
                headers={"Accept": "application/json"},
            )
        try:
            answer = response.json()
        except ValueError as exc:
            raise PermanentChannelError(f"{what}: the broker's answer is not JSON") from exc
        # The API answers with the id as a bare JSON string; the object shape of upload is taken too.
        if isinstance(answer, dict):
            answer = answer.get("fileTransferId")
        if not isinstance(answer, str) or not answer:
            raise PermanentChannelError(f"{what}: the broker's answer holds no fileTransferId")
        return answer

    def upload(self, file_transfer_id: str, source: BinaryIO | Path | bytes) -> None:
        """Stream the file's bytes as the transfer's content.

        On a 401 the body is sent once more with a fresh token, from the start, when the source
        can be rewound (a Path, or a seekable stream); otherwise the 401 is a permanent error.
        """
        what = f"uploading the file of broker file transfer {file_transfer_id}"
        if isinstance(source, Path):
            with open(source, "rb") as handle:
                self._upload_stream(file_transfer_id, handle, what, source.stat().st_size)
        elif isinstance(source, bytes):
            self._upload_stream(file_transfer_id, io.BytesIO(source), what, len(source))
        else:
            self._upload_stream(file_transfer_id, source, what, None)

    def _upload_stream(self, file_transfer_id: str, handle: BinaryIO, what: str, size: int | None) -> None:
        url = f"{self.base_url}/filetransfer/{file_transfer_id}/upload"
        rewindable = handle.seekable()
        start = handle.tell() if rewindable else 0
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self.tokens()}", "Content-Type": "application/octet-stream"}
            if size is not None:
                headers["Content-Length"] = str(size)
            with translated_http_errors(what):
                response = self.http.post(url, content=_chunks(handle), headers=headers)
            retry = attempt == 0 and rewindable and isinstance(self.tokens, TokenClient)
            if response.status_code == 401 and retry:
                assert isinstance(self.tokens, TokenClient)
                self.tokens.invalidate()
                handle.seek(start)
                continue
            check_response(response, what)
            return

    def list_published(self, resource_id: str) -> list[str]:
        """Ids of published transfers for us as recipient, on `resource_id`."""
        what = f"listing published broker file transfers on {resource_id}"
        response = self._call(what, "GET", "/filetransfer",
                              params={"resourceId": resource_id, "status": "Published"},
                              headers={"Accept": "application/json"})
        try:
            return [str(entry) for entry in response.json()]
        except (ValueError, TypeError) as exc:
            raise PermanentChannelError(f"{what}: the broker's answer is not a list of ids") from exc

    def overview(self, file_transfer_id: str) -> dict[str, Any]:
        what = f"reading broker file transfer {file_transfer_id}"
        response = self._call(what, "GET", f"/filetransfer/{file_transfer_id}",
                              headers={"Accept": "application/json"})
        try:
            overview: dict[str, Any] = response.json()
        except ValueError as exc:
            raise PermanentChannelError(f"{what}: the broker's answer is not JSON") from exc
        return overview

    def download(self, file_transfer_id: str, target: BinaryIO, max_bytes: int | None = None) -> int:
        """Stream the transfer's file into `target`; returns the number of bytes written.

        A file larger than `max_bytes` is refused (SecurityError) as soon as it passes the limit.
        """
        what = f"downloading broker file transfer {file_transfer_id}"
        url = f"{self.base_url}/filetransfer/{file_transfer_id}/download"
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self.tokens()}", "Accept": "application/octet-stream"}
            with translated_http_errors(what), self.http.stream("GET", url, headers=headers) as response:
                if response.status_code == 401 and attempt == 0 and isinstance(self.tokens, TokenClient):
                    self.tokens.invalidate()
                    continue
                if not response.is_success:
                    response.read()
                    check_response(response, what)
                written = 0
                for chunk in response.iter_bytes(CHUNK_SIZE):
                    written += len(chunk)
                    if max_bytes is not None and written > max_bytes:
                        raise SecurityError(
                            f"broker file transfer {file_transfer_id} is larger than {max_bytes} bytes, "
                            "more than the channel carries; it was not downloaded"
                        )
                    target.write(chunk)
                return written
        raise PermanentChannelError(f"{what}: the broker refused the access token twice")

    def confirm_download(self, file_transfer_id: str) -> None:
        """Tell the broker we have the file. Confirming twice is fine (a retry after a crash)."""
        what = f"confirming the download of broker file transfer {file_transfer_id}"
        response = bearer_request(self.http, self.tokens, what, "POST",
                                  f"{self.base_url}/filetransfer/{file_transfer_id}/confirmdownload")
        if response.status_code == 409:
            return
        check_response(response, what)
