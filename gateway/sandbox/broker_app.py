"""A DPO broker on loopback: the subset of the Altinn 3 Broker API the DPO adapter uses.

Mounted at `/broker`, its routes are `/api/v1/filetransfer...` so the full paths match
reference/api/altinn-broker-v1.json. Field names and status strings are the spec's. Uploads stream
to disk, the one-shot multipart upload's file part included, and downloads of more than a small
size stream from it; nothing holds a large file in memory. Test-only extras:
`GET /broker/_sandbox/stats` counts initialisations and uploads per sendersFileTransferReference;
`/broker/_sandbox/scan` shows and sets the virus scan (broker_options.py).

As the real broker on Digdir's DPO resource (broker_options.py has the lenient older mode): only
system-user tokens are admitted, and the party is the system user's organisation; a caller who is
not the transfer's sender or recipient gets 401 with the real broker's words, as the spec says;
the list holds the caller's sent and received transfers (only received ones when asked by
`recipientStatus`), newest first; an upload is scanned (UploadProcessing) before Published or
Failed; confirming a download once the transfer is no longer Published is a 400.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from gateway.channels.dpo.client import BROKER_READ_SCOPE, BROKER_WRITE_SCOPE
from gateway.clock import Clock
from gateway.sandbox.altinn_problem import download_errors, problem, unauthorised_handler
from gateway.sandbox.auth import ALTINN, AccessTokens, Caller, Unauthorised
from gateway.sandbox.broker_form import FORM_NAMES, MAX_FILE_TRANSFER_SIZE, FormProblem, OneShotForm
from gateway.sandbox.broker_options import BrokerOptions
from gateway.sandbox.broker_store import BrokerStore, FileTransfer, NewTransfer
from gateway.sandbox.catalogue import SandboxCatalogue

log = logging.getLogger(__name__)

PARTY = re.compile(r"^\d{4}:\d{9}$")
INITIALISE_FIELDS = {
    "fileName", "resourceId", "sendersFileTransferReference", "sender", "recipients",
    "propertyList", "checksum", "disableVirusScan",
}
SMALL_DOWNLOAD_BYTES = 1 << 20  # read whole in the handler: FileResponse's worker-thread hops cost more
MD5_HEX = re.compile(r"^[0-9a-fA-F]{32}$")
# The real broker's words for every access refusal (Errors.NoAccessToResource, 401).
NO_ACCESS = ("You must use a bearer token that represents a system user with access to the resource in the "
             "Resource Rights Registry")
NOT_PUBLISHED = ("A file transfer can only be confirmed to be downloaded when it is published. See file transfer "
                 "status.")


def _party(caller: Caller) -> str:
    return f"0192:{caller.party}"


def _no_access(why: str) -> Response:
    return problem(401, "Unauthorized", f"{NO_ACCESS} ({why})")


def _initialise_problem(body: Any, caller: Caller, catalogue: SandboxCatalogue,
                        names: Mapping[str, str] | None = None) -> tuple[int, str] | None:
    """Why the initialise `body` is refused (status, detail), or None; `names` shows fields as the caller sent them."""

    def shown(field: str) -> str:
        return (names or {}).get(field, field)

    if not isinstance(body, dict):
        return 400, "the body must be a JSON object (FileTransferInitalizeExt)"
    unknown = set(body) - INITIALISE_FIELDS
    if unknown:
        return 400, f"unknown field(s): {', '.join(sorted(unknown))}"
    for field in ("fileName", "resourceId", "sender"):
        value = body.get(field)
        if not isinstance(value, str) or not 1 <= len(value) <= 255:
            return 400, f"{shown(field)} is required (1 to 255 characters)"
    if not PARTY.match(body["sender"]):
        return 400, f"{shown('sender')} must look like 0192:<orgnr>"
    recipients = body.get("recipients")
    if not isinstance(recipients, list) or not recipients:
        return 400, f"{shown('recipients')} must list at least one recipient"
    for recipient in recipients:
        if not isinstance(recipient, str) or not PARTY.match(recipient):
            return 400, f"recipient {recipient!r} must look like 0192:<orgnr>"
        if catalogue.find(recipient) is None:
            return 400, f"recipient {recipient} is not an organisation on the sandbox network"
    properties = body.get("propertyList") or {}
    if not isinstance(properties, dict) or len(properties) > 10 or any(
        not isinstance(v, str) or not 1 <= len(k) <= 50 or len(v) > 300 for k, v in properties.items()
    ):
        return 400, (f"{shown('propertyList')} holds at most 10 string pairs (keys up to 50, values up to "
                     "300 characters)")
    reference = body.get("sendersFileTransferReference")
    if reference is not None and (not isinstance(reference, str) or not 1 <= len(reference) <= 4096):
        return 400, f"{shown('sendersFileTransferReference')} must be 1 to 4096 characters"
    checksum = body.get("checksum")
    if checksum is not None and (not isinstance(checksum, str) or not MD5_HEX.match(checksum)):
        return 400, f"{shown('checksum')} must be the file's MD5 digest as 32 hexadecimal digits"
    if body["sender"] != _party(caller):
        return 401, f"{NO_ACCESS} (the access token speaks for {_party(caller)}, not for the sender {body['sender']})"
    return None


def _content_disposition(file_name: str) -> str:
    """The Content-Disposition header FileResponse would send for `file_name`."""
    quoted = quote(file_name)
    if quoted != file_name:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{file_name}"'


def _refusal(status: int, detail: str) -> Response:
    return problem(status, {400: "Bad Request", 401: "Unauthorized"}.get(status, "Forbidden"), detail)


def broker_app(store: BrokerStore, access_tokens: AccessTokens, catalogue: SandboxCatalogue,
               clock: Clock, options: BrokerOptions | None = None) -> Starlette:
    behaviour = options or BrokerOptions()

    def caller_of(request: Request, scopes: tuple[str, ...]) -> Caller:
        caller = access_tokens.caller_of(request, scopes, kind=ALTINN)
        if behaviour.system_users_only and caller.system_user_org is None:
            raise Unauthorised(401, f"{NO_ACCESS} (the token names no system user: ask Maskinporten with an "
                                    "authorization_details claim of type urn:altinn:systemuser)")
        return caller

    def transfer_or_problem(request: Request) -> FileTransfer | Response:
        transfer_id = request.path_params["file_transfer_id"]
        transfer = store.get(transfer_id, clock.now())
        if transfer is None:
            return problem(404, "Not Found", f"the file transfer {transfer_id} was not found")
        return transfer

    def recipient_check(transfer: FileTransfer, caller: Caller) -> Response | None:
        if _party(caller) not in transfer.recipients:
            return _no_access(f"{_party(caller)} is not a recipient of this file transfer")
        return None

    async def initialise(request: Request) -> Response:
        caller = caller_of(request, (BROKER_WRITE_SCOPE,))
        try:
            body = await request.json()
        except ValueError:
            return problem(400, "Bad Request", "the body is not JSON")
        refusal = _initialise_problem(body, caller, catalogue) or _scan_problem(body, behaviour)
        if refusal:
            return _refusal(*refusal)
        transfer_id = str(uuid.uuid4())
        store.create(NewTransfer.from_request(transfer_id, body), body.get("checksum"), clock.now())
        # Per-request lines at DEBUG, as uvicorn's access log is off: at INFO they cost ~5% of the sandbox's CPU.
        log.debug("file transfer %s initialised by %s", transfer_id, caller.orgnr)
        return JSONResponse({"fileTransferId": transfer_id})

    async def upload(request: Request) -> Response:
        caller = caller_of(request, (BROKER_WRITE_SCOPE,))
        found = transfer_or_problem(request)
        if isinstance(found, Response):
            return found
        if found.sender != _party(caller):
            return _no_access("only the sender may upload the file of a file transfer")
        if not store.set_status(found.id, "UploadStarted", clock.now(), expected="Initialized"):
            return problem(409, "Conflict", "A file transfer has already been, or attempted to be, created. "
                           "Create a new file transfer resource to try again")
        target = store.file_path(found.id)
        partial = target.with_suffix(".part")
        digest, size = hashlib.md5(usedforsecurity=False), 0
        try:
            with open(partial, "wb") as handle:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_FILE_TRANSFER_SIZE:
                        raise ValueError("File size exceeds maximum")
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
        except (ValueError, ClientDisconnect) as exc:
            partial.unlink(missing_ok=True)
            store.set_status(found.id, "Failed", clock.now(), text="File upload failed and was aborted")
            return problem(400, "Bad Request", f"the upload failed: {exc or 'the client went away'}")
        except BaseException:
            partial.unlink(missing_ok=True)  # a disk error or a cancelled request leaves no partial file behind
            raise
        checksum = digest.hexdigest()
        if found.checksum and found.checksum.lower() != checksum:
            partial.unlink(missing_ok=True)
            store.set_status(found.id, "Failed", clock.now(), text="Checksum mismatch")
            return problem(400, "Bad Request", "The checksum of uploaded file did not match the checksum "
                           "specified in initialize call")
        os.replace(partial, target)
        store.publish(found.id, size, checksum, found.senders_reference, clock.now(),
                      behaviour.scan_for(found.senders_reference))
        log.debug("file transfer %s published (%d bytes)", found.id, size)
        return JSONResponse({"fileTransferId": found.id})

    async def initialise_and_upload(request: Request) -> Response:
        caller = caller_of(request, (BROKER_WRITE_SCOPE,))
        media_type, options = parse_options_header(request.headers.get("content-type"))
        if media_type != b"multipart/form-data" or not options.get(b"boundary"):
            return problem(415, "Unsupported Media Type", "the body must be multipart/form-data (with a boundary)")
        transfer_id = str(uuid.uuid4())
        target = store.file_path(transfer_id)
        form = OneShotForm(target.with_suffix(".part"))
        try:
            parser = MultipartParser(options[b"boundary"], form.callbacks())
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
            if not form.complete:
                raise FormProblem("the multipart body ends before its closing boundary")
            if not form.file_parts:
                raise FormProblem("FileTransfer is required: the form's file part")
            if not form.file_named:
                raise FormProblem("FileTransfer must be a file part (a filename in its Content-Disposition)")
            body = form.metadata()
        except (FormProblem, FormParserError) as exc:
            form.discard()
            return problem(400, "Bad Request", f"the upload failed: {exc}")
        except ClientDisconnect:
            form.discard()
            return problem(400, "Bad Request", "the upload failed: the client went away")
        except BaseException:
            form.discard()  # a disk error or a cancelled request leaves no partial file behind
            raise
        refusal = _initialise_problem(body, caller, catalogue, FORM_NAMES) or _scan_problem(body, behaviour)
        if refusal:
            form.discard()
            return _refusal(*refusal)
        transfer = NewTransfer.from_request(transfer_id, body)
        checksum = form.digest.hexdigest()
        if body.get("checksum") and body["checksum"].lower() != checksum:
            # As in Altinn: the transfer was initialised, and its upload failed.
            form.discard()
            store.create(transfer, body["checksum"], clock.now())
            store.set_status(transfer_id, "Failed", clock.now(), text="Checksum mismatch")
            return problem(400, "Bad Request", "The checksum of uploaded file did not match the checksum "
                           "specified in initialize call")
        os.replace(form.partial, target)
        store.create_published(transfer, body.get("checksum") or checksum, form.size, clock.now(),
                               behaviour.scan_for(transfer.senders_reference))
        log.debug("file transfer %s initialised and published by %s (%d bytes)", transfer_id, caller.orgnr,
                  form.size)
        return JSONResponse(transfer_id)  # the API answers this call with the bare id

    async def list_transfers(request: Request) -> Response:
        caller = caller_of(request, (BROKER_READ_SCOPE, BROKER_WRITE_SCOPE))
        query = request.query_params
        return JSONResponse(store.list_for(
            _party(caller), query.get("resourceId"), query.get("status"), query.get("recipientStatus"), clock.now()
        ))

    async def overview(request: Request) -> Response:
        caller = caller_of(request, (BROKER_READ_SCOPE, BROKER_WRITE_SCOPE))
        found = transfer_or_problem(request)
        if isinstance(found, Response):
            return found
        if found.sender != _party(caller) and _party(caller) not in found.recipients:
            return _no_access(f"{_party(caller)} is neither sender nor recipient of this file transfer")
        return JSONResponse(found.overview())

    async def download(request: Request) -> Response:
        caller = caller_of(request, (BROKER_READ_SCOPE,))
        found = transfer_or_problem(request)
        if isinstance(found, Response):
            return found
        refusal = recipient_check(found, caller)
        if refusal:
            return refusal
        if found.status not in ("Published", "AllConfirmedDownloaded"):
            return problem(403, "Forbidden", "The requested file transfer's file is not ready for download. "
                           f"See file transfer status ({found.status})")
        if found.recipients[_party(caller)][0] == "Initialized":
            store.set_recipient_status(found.id, _party(caller), "DownloadStarted", clock.now())
        if found.size <= SMALL_DOWNLOAD_BYTES:
            content = store.file_path(found.id).read_bytes()
            return Response(content, media_type="application/octet-stream",
                            headers={"Content-Disposition": _content_disposition(found.file_name)})
        return FileResponse(store.file_path(found.id), media_type="application/octet-stream",
                            filename=found.file_name)

    async def confirm_download(request: Request) -> Response:
        caller = caller_of(request, (BROKER_READ_SCOPE,))
        found = transfer_or_problem(request)
        if isinstance(found, Response):
            return found
        refusal = recipient_check(found, caller)
        if refusal:
            return refusal
        # The real broker's order: only a Published transfer can be confirmed, so a second confirmation
        # by its last recipient (AllConfirmedDownloaded by then) is a 400.
        if found.status != "Published":
            return problem(400, "Bad Request", f"{NOT_PUBLISHED} ({found.status})")
        recipient_status = found.recipients[_party(caller)][0]
        if recipient_status == "Initialized":
            return problem(400, "Bad Request", "Cannot confirm before the files have been downloaded")
        if recipient_status != "DownloadConfirmed":
            store.set_recipient_status(found.id, _party(caller), "DownloadConfirmed", clock.now())
        return Response(status_code=200)

    async def stats(request: Request) -> Response:
        store.advance_scans(clock.now())
        return JSONResponse(store.stats())

    async def scan_settings(request: Request) -> Response:
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                return problem(400, "Bad Request", "the body is not JSON")
            refusal = behaviour.change(body)
            if refusal:
                return problem(400, "Bad Request", refusal)
        elif request.method == "DELETE":
            behaviour.clear_failures()
        return JSONResponse(behaviour.describe())

    return Starlette(
        routes=[
            Route("/api/v1/filetransfer", initialise, methods=["POST"]),
            Route("/api/v1/filetransfer/", initialise, methods=["POST"]),
            Route("/api/v1/filetransfer", list_transfers, methods=["GET"]),
            Route("/api/v1/filetransfer/upload", initialise_and_upload, methods=["POST"]),
            Route("/api/v1/filetransfer/{file_transfer_id}/upload", upload, methods=["POST"]),
            Route("/api/v1/filetransfer/{file_transfer_id}", overview, methods=["GET"]),
            Route("/api/v1/filetransfer/{file_transfer_id}/details", overview, methods=["GET"]),
            Route("/api/v1/filetransfer/{file_transfer_id}/download", download_errors(download), methods=["GET"]),
            Route("/api/v1/filetransfer/{file_transfer_id}/confirmdownload", confirm_download,
                  methods=["POST"]),
            Route("/_sandbox/stats", stats, methods=["GET"]),
            Route("/_sandbox/scan", scan_settings, methods=["GET", "POST", "DELETE"]),
        ],
        exception_handlers={Unauthorised: unauthorised_handler},
    )


def _scan_problem(body: dict[str, Any], options: BrokerOptions) -> tuple[int, str] | None:
    """A transfer without a virus scan needs Altinn's approval, which no sandbox resource has."""
    if body.get("disableVirusScan") is True and options.scan_delay_s is not None:
        return 400, ("In order to use file transfers without virus scan the service resource needs to be approved "
                     "by Altinn. Please contact us @ Slack.")
    return None
