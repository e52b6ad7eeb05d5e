"""HTTP client for the Altinn 3 Broker API (the DPO transport), production or sandbox alike.

`base_url` is the API root: `https://platform.altinn.no/broker/api/v1` in production,
`<sandbox>/broker/api/v1` on loopback. Uploads and downloads stream in chunks. Errors: network,
429 and 5xx are RetryableChannelError; other 4xx PermanentChannelError with Altinn's own words.
A transfer is made in two steps (initialise, then upload: the caller can journal the id in between)
or, where a duplicate is harmless, in one multipart request (`initialise_and_upload`).

What the real broker does that shapes this client: a 401 means the token's system user has no
access (to the resource, or to this transfer), so a new token is tried at most once and the refusal
then says so; the list holds the caller's own sent transfers too unless it asks by `recipientStatus`;
an upload is virus-scanned (UploadProcessing) before it is Published or Failed; and confirming a
download a second time is a 400 (the transfer is no longer Published).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from gateway.errors import PermanentChannelError, RetryableChannelError, SecurityError
from gateway.tokens import (
    TokenSource,
    bearer_request,
    check_response,
    server_words,
    translated_http_errors,
    worth_a_new_token,
)

BROKER_WRITE_SCOPE = "altinn:broker.write"  # senders: initialise and upload
BROKER_READ_SCOPE = "altinn:broker.read"  # recipients: list, download, confirm
DPO_RESOURCE_ID = "eformidling-dpo-meldingsutveksling"
CHUNK_SIZE = 1 << 16
# The two recipient states of a transfer still ours to take: new, and downloaded before a crash or a
# failure cut off its confirmation (the broker moves a recipient to DownloadStarted on download).
INCOMING_RECIPIENT_STATES = ("Initialized", "DownloadStarted")
PROCESSING_STATES = frozenset({"UploadStarted", "UploadProcessing"})


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK_SIZE):
        yield chunk


def md5_hex(source: Path | bytes) -> str:
    """The broker's checksum of a file: MD5, lowercase hex (read in chunks)."""
    digest = hashlib.md5(usedforsecurity=False)
    if isinstance(source, bytes):
        digest.update(source)
    else:
        with open(source, "rb") as handle:
            for chunk in _chunks(handle):  # type: ignore[arg-type]
                digest.update(chunk)
    return digest.hexdigest()


def refused_access(response: httpx.Response, what: str) -> PermanentChannelError:
    """The error for a 401 that a new token did not cure: the token's system user lacks access."""
    return PermanentChannelError(
        f"{what}: the broker refused access (HTTP 401: {server_words(response)}); the access token's system user "
        "has no access to this resource or transfer: check channels.dpo.system_user_org and the system user's "
        "rights in Altinn"
    )


class BrokerClient:
    """`tokens` carry altinn:broker.read (list, get, download, confirm) and `write_tokens` altinn:broker.write
    (initialise, upload); one source may carry both."""

    def __init__(self, base_url: str, tokens: TokenSource, http: httpx.Client,
                 write_tokens: TokenSource | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.write_tokens = write_tokens or tokens
        self.http = http

    def _call(self, what: str, method: str, path: str, write: bool = False, **kwargs: Any) -> httpx.Response:
        tokens = self.write_tokens if write else self.tokens
        response = bearer_request(self.http, tokens, what, method, f"{self.base_url}{path}", **kwargs)
        if response.status_code == 401:
            raise refused_access(response, what)
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
            what, "POST", "/filetransfer", write=True, json=body, headers={"Accept": "application/json"}
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
                what, "POST", "/filetransfer/upload", write=True, data=fields,
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
            token = self.write_tokens()
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
            if size is not None:
                headers["Content-Length"] = str(size)
            with translated_http_errors(what):
                response = self.http.post(url, content=_chunks(handle), headers=headers)
            if response.status_code == 401:
                if attempt == 0 and rewindable and worth_a_new_token(self.write_tokens, token):
                    handle.seek(start)
                    continue
                raise refused_access(response, what)
            check_response(response, what)
            return

    def list_incoming(self, resource_id: str) -> list[str]:
        """Ids of published transfers on `resource_id` that wait for us as recipient.

        Asked by recipient state, which the broker answers from our recipient rows only: without it the
        list holds our own sent transfers too, which we may not download, and they would crowd incoming
        ones out of the 100 the broker returns. Downloaded-but-unconfirmed ones come first (a crash
        or a failure left them), then new ones.
        """
        ids: list[str] = []
        for recipient_status in reversed(INCOMING_RECIPIENT_STATES):
            what = f"listing broker file transfers on {resource_id} waiting for us ({recipient_status})"
            response = self._call(
                what, "GET", "/filetransfer",
                params={"resourceId": resource_id, "status": "Published", "recipientStatus": recipient_status},
                headers={"Accept": "application/json"},
            )
            try:
                ids += [str(entry) for entry in response.json()]
            except (ValueError, TypeError) as exc:
                raise PermanentChannelError(f"{what}: the broker's answer is not a list of ids") from exc
        return list(dict.fromkeys(ids))

    def wait_while_processing(self, file_transfer_id: str, timeout_s: float,
                              first_pause_s: float = 0.2) -> dict[str, Any]:
        """The transfer's overview once the broker has finished with its upload (the virus scan), or
        as it stands after `timeout_s`. The first look after `first_pause_s` (no scan is over at once: a
        look straight after the upload is a request for nothing), then growing to a second apart."""
        deadline = time.monotonic() + timeout_s
        pause = first_pause_s
        time.sleep(min(pause, timeout_s))
        pause = min(pause * 1.5, 1.0)
        while True:
            try:
                overview = self.overview(file_transfer_id)
            except RetryableChannelError as exc:
                # One look that failed on the way is no news about the scan: look again while there is
                # time; the upload is done and must not be repeated for it. A broker that asks us to wait
                # (429, 503, Retry-After) is not asked again here: the send is tried again once its wait is
                # over, and that try looks at the transfer instead of uploading again.
                left = deadline - time.monotonic()
                if left <= 0 or exc.throttled or exc.retry_after is not None:
                    raise
                time.sleep(min(pause, left))
                pause = min(pause * 1.5, 1.0)
                continue
            left = deadline - time.monotonic()
            if overview.get("fileTransferStatus") not in PROCESSING_STATES or left <= 0:
                return overview
            time.sleep(min(pause, left))
            pause = min(pause * 1.5, 1.0)

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
            token = self.tokens()
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/octet-stream"}
            with translated_http_errors(what), self.http.stream("GET", url, headers=headers) as response:
                if response.status_code == 401:
                    response.read()
                    if attempt == 0 and worth_a_new_token(self.tokens, token):
                        continue
                    raise refused_access(response, what)
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

    def confirm_download(self, file_transfer_id: str, recipient: str | None = None) -> None:
        """Tell the broker we have the file. Confirming twice is fine (a retry after a crash).

        The real broker answers a second confirmation with 400 (the transfer is AllConfirmedDownloaded,
        no longer Published): then the overview decides, and our confirmation standing there is success.
        `recipient` (`0192:<orgnr>`) names our row; without it any confirmed transfer counts.
        """
        what = f"confirming the download of broker file transfer {file_transfer_id}"
        response = bearer_request(self.http, self.tokens, what, "POST",
                                  f"{self.base_url}/filetransfer/{file_transfer_id}/confirmdownload")
        if response.status_code == 401:
            raise refused_access(response, what)
        if response.status_code == 400 and self._confirmed(file_transfer_id, recipient):
            return
        check_response(response, what)

    def _confirmed(self, file_transfer_id: str, recipient: str | None) -> bool:
        try:
            overview = self.overview(file_transfer_id)
        except PermanentChannelError:
            return False
        if overview.get("fileTransferStatus") in ("AllConfirmedDownloaded", "Purged") and recipient is None:
            return True
        return any(
            row.get("currentRecipientFileTransferStatusCode") == "DownloadConfirmed"
            and (recipient is None or row.get("recipient") == recipient)
            for row in overview.get("recipients") or []
        )
